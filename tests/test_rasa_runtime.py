"""dialogs.runtime without a Rasa server: content hashing, environment discovery, reuse, errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from dialogs import runtime
from dialogs.runtime import (
    EmbeddedRasa,
    RasaRuntimeError,
    content_hash,
    ensure_rasa_env,
    env_dir,
    find_python,
    trained_files,
)
from sim.net import free_port




REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path) -> Path:
    """A small Rasa project with the files Rasa trains on and the ones it does not."""
    p = tmp_path / "proj"
    (p / "data").mkdir(parents=True)
    (p / "actions").mkdir()
    (p / "tests").mkdir()
    (p / "eval").mkdir()
    (p / "config.yml").write_text("recipe: default.v1\nlanguage: zh\n", encoding="utf-8")
    (p / "domain.yml").write_text('version: "3.1"\nintents: [greet]\n', encoding="utf-8")
    (p / "data" / "nlu.yml").write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - 你好\n',
                                        encoding="utf-8")
    (p / "data" / "rules.yml").write_text('version: "3.1"\nrules: []\n', encoding="utf-8")
    (p / "actions" / "actions.py").write_text("X = 1\n", encoding="utf-8")
    (p / "tests" / "test_stories.yml").write_text("stories: []\n", encoding="utf-8")
    (p / "eval" / "cases.yml").write_text("- a\n", encoding="utf-8")
    (p / "endpoints.yml").write_text("action_endpoint:\n  url: http://localhost:5055/webhook\n", encoding="utf-8")
    (p / "requirements-rasa.txt").write_text("rasa==3.6.21\n", encoding="utf-8")
    return p


def _hash(p: Path) -> str:
    return content_hash(p, p / "requirements-rasa.txt")


def test_hash_is_stable_and_covers_only_what_rasa_trains_on(project):
    first = _hash(project)
    assert first == _hash(project)
    names = [f.relative_to(project).as_posix() for f in trained_files(project)]
    assert names == ["config.yml", "data/nlu.yml", "data/rules.yml", "domain.yml"]
    # Actions, Rasa tests, evaluation cases, endpoints, python files and caches do not change the model.
    (project / "actions" / "actions.py").write_text("X = 2\n", encoding="utf-8")
    (project / "tests" / "test_stories.yml").write_text("stories: [changed]\n", encoding="utf-8")
    (project / "eval" / "cases.yml").write_text("- b\n", encoding="utf-8")
    (project / "endpoints.yml").write_text("{}\n", encoding="utf-8")
    (project / "data" / "helper.py").write_text("pass\n", encoding="utf-8")
    (project / "data" / "__pycache__").mkdir()
    (project / "data" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert _hash(project) == first


@pytest.mark.parametrize("change", [
    lambda p: (p / "data" / "nlu.yml").write_text(
        (p / "data" / "nlu.yml").read_text(encoding="utf-8") + "    - 您好\n", encoding="utf-8"),
    lambda p: (p / "data" / "stories.yml").write_text('version: "3.1"\nstories: []\n', encoding="utf-8"),
    lambda p: (p / "config.yml").write_text("recipe: default.v1\nlanguage: en\n", encoding="utf-8"),
    lambda p: (p / "domain.yml").write_text('version: "3.1"\nintents: [greet, bye]\n', encoding="utf-8"),
    lambda p: (p / "requirements-rasa.txt").write_text("rasa==3.6.20\n", encoding="utf-8"),
    lambda p: (p / "data" / "nlu.yml").rename(p / "data" / "nlu2.yml"),
], ids=["nlu-example", "new-data-file", "config", "domain", "requirements", "renamed"])
def test_hash_changes_when_training_content_changes(project, change):
    before = _hash(project)
    change(project)
    assert _hash(project) != before


def test_domain_folder_is_hashed(project):
    (project / "domain.yml").unlink()
    (project / "domain").mkdir()
    (project / "domain" / "intents.yml").write_text("intents: [greet]\n", encoding="utf-8")
    before = _hash(project)
    (project / "domain" / "responses.yml").write_text("responses: {}\n", encoding="utf-8")
    assert _hash(project) != before


def test_incomplete_project_is_a_clear_error(project):
    (project / "config.yml").unlink()
    with pytest.raises(RasaRuntimeError, match="config.yml"):
        _hash(project)


def test_env_dir_layout_is_keyed_by_the_requirements(settings, tmp_path):
    settings.rasa.cache_dir = tmp_path / "cache"
    req = REPO / "dialogs" / "requirements-rasa.txt"
    key = hashlib.sha256(req.read_bytes()).hexdigest()[:12]
    assert env_dir(settings) == tmp_path / "cache" / "rasa-env" / key
    missing = tmp_path / "nope.txt"
    with pytest.raises(RasaRuntimeError, match="requirements file not found"):
        env_dir(settings, missing)


def _fake_python(path: Path, version: str | None) -> Path:
    """An executable that behaves like an interpreter of ``version`` (None: a broken shim)."""
    body = f'#!/bin/sh\necho "{version}"\n' if version else '#!/bin/sh\necho "pyenv: python3.10: command not found" >&2\nexit 127\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_find_python_rejects_broken_shims_and_wrong_versions(settings, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    _fake_python(bindir / "python3.10", None)  # a pyenv shim with no version selected
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))  # empty: no pyenv versions
    settings.rasa.python = "python3.10"
    with pytest.raises(RasaRuntimeError) as err:
        find_python(settings)
    message = str(err.value)
    assert "rasa.python" in message and "does not run" in message and "3.10" in message

    settings.rasa.python = str(_fake_python(tmp_path / "py311", "3.11"))
    with pytest.raises(RasaRuntimeError, match=r"\(3\.11\)"):
        find_python(settings)


def test_find_python_falls_back_to_pyenv(settings, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    _fake_python(bindir / "python3.10", None)
    good = _fake_python(tmp_path / "pyenv" / "versions" / "3.10.13" / "bin" / "python", "3.10")
    _fake_python(tmp_path / "pyenv" / "versions" / "3.11.7" / "bin" / "python", "3.11")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    settings.rasa.python = "python3.10"
    assert find_python(settings) == good


def test_ensure_env_reuses_a_complete_env_and_reports_a_missing_python(settings, tmp_path, monkeypatch):
    settings.rasa.cache_dir = tmp_path / "cache"
    env = env_dir(settings)
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "rasa").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    settings.rasa.python = str(tmp_path / "no-such-python")
    # Not complete yet: an install is needed, and there is no interpreter to make it with.
    with pytest.raises(RasaRuntimeError, match="no-such-python"):
        ensure_rasa_env(settings, log=lambda m: None)
    assert (env / "bin" / "rasa").exists(), "nothing is removed before an interpreter is found"
    (env / ".complete").write_text("done\n")
    assert ensure_rasa_env(settings, log=lambda m: None) == env  # reused: no python needed


def test_train_reuses_the_cached_model_without_rasa(settings, project, tmp_path):
    settings.rasa.cache_dir = tmp_path / "cache"
    req = project / "requirements-rasa.txt"
    model = runtime.model_path(settings, project, req)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    assert runtime.train(settings, project, req, log=lambda m: None) == (model, False)


def test_external_url_that_does_not_answer_is_a_clear_error(settings):
    settings.rasa.url = f"http://127.0.0.1:{free_port()}"
    settings.rasa.parse_timeout = 1
    rasa = EmbeddedRasa(settings)
    with pytest.raises(RasaRuntimeError, match="external Rasa server"):
        rasa.start()
    assert rasa.started == [] and rasa.url == settings.rasa.url


def test_endpoints_point_at_the_configured_action_port(settings, project):
    settings.rasa.action_port = 5999
    path = EmbeddedRasa(settings, project=project)._endpoints_file()
    text = path.read_text(encoding="utf-8")
    assert "http://127.0.0.1:5999/webhook" in text and "5055" not in text
    assert str(settings.app.data_dir) in str(path)
    # the Rasa server sends the shared token from its environment; the file holds no secret
    assert "Authorization: Bearer ${TANFANG_RASA_TOKEN}" in text


def test_real_python310_is_found_when_installed(settings):
    if not (shutil.which("python3.10") or list(Path.home().glob(".pyenv/versions/3.10.*"))):
        pytest.skip("no Python 3.10 on this machine")
    assert runtime._python_version(find_python(settings)) == (3, 10)


def test_ensure_env_really_creates_a_venv_and_refuses_one_without_rasa(settings, tmp_path):
    """The real install path with the real 3.10 interpreter, offline: an empty requirements file
    installs nothing, so the environment is not marked complete and the error says why."""
    if not (shutil.which("python3.10") or list(Path.home().glob(".pyenv/versions/3.10.*"))):
        pytest.skip("no Python 3.10 on this machine")
    settings.rasa.cache_dir = tmp_path / "cache"
    req = tmp_path / "requirements-rasa.txt"
    req.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(RasaRuntimeError, match="bin/rasa missing"):
        ensure_rasa_env(settings, req, log=lambda m: None)
    env = env_dir(settings, req)
    assert runtime._python_version(env / "bin" / "python") == (3, 10)
    assert not (env / ".complete").exists()
