"""A fresh machine gets the Vosk model by itself: downloaded from a loopback HTTP server standing in
for the published URL (and a mirror), checked against the pinned sha256, unpacked where
``voice.vosk_model`` says. No internet: the zip is made here."""

from __future__ import annotations

import hashlib
import io
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from voice.model_fetch import ModelFetchError, candidate_urls, fetch_model, is_model

NAME = "vosk-model-small-cn-0.22"


def _zip(folder: str = NAME) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{folder}/conf/mfcc.conf", "--sample-frequency=16000\n")
        zf.writestr(f"{folder}/conf/model.conf", "--min-active=200\n")
        zf.writestr(f"{folder}/am/final.mdl", b"\0" * 4096)
        zf.writestr(f"{folder}/README", "test model\n")
    return buf.getvalue()


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over tmp/www: (base URL, folder, requests seen)."""
    www = tmp_path / "www"
    (www / "vosk" / "models").mkdir(parents=True)
    (www / "mirror").mkdir()
    seen: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            seen.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www, seen
    finally:
        server.shutdown()


def test_candidate_urls_try_the_mirror_first():
    url = "https://alphacephei.com/vosk/models/vosk-model-cn-0.22.zip"
    assert candidate_urls(url) == [url]
    assert candidate_urls(url, "http://files.example/vosk/") == ["http://files.example/vosk/vosk-model-cn-0.22.zip", url]


def test_downloads_checks_and_unpacks_the_model(served, tmp_path):
    base, www, seen = served
    data = _zip()
    (www / "vosk" / "models" / f"{NAME}.zip").write_bytes(data)
    target = tmp_path / "models" / NAME
    result = fetch_model(target, f"{base}/vosk/models/{NAME}.zip", hashlib.sha256(data).hexdigest(), log=lambda m: None)
    assert result["fetched"] and is_model(target)
    assert (target / "am" / "final.mdl").stat().st_size == 4096
    assert [p.name for p in target.parent.iterdir()] == [NAME]  # no download or temp folder left behind
    again = fetch_model(target, f"{base}/vosk/models/{NAME}.zip", hashlib.sha256(data).hexdigest(), log=lambda m: None)
    assert again == {"model": str(target), "fetched": False}


def test_mirror_is_used_and_a_missing_mirror_copy_falls_back(served, tmp_path):
    base, www, seen = served
    data = _zip()
    sha = hashlib.sha256(data).hexdigest()
    (www / "mirror" / f"{NAME}.zip").write_bytes(data)
    target = tmp_path / "a" / NAME
    result = fetch_model(target, f"{base}/vosk/models/{NAME}.zip", sha, mirror=f"{base}/mirror", log=lambda m: None)
    assert result["url"] == f"{base}/mirror/{NAME}.zip"
    (www / "mirror" / f"{NAME}.zip").unlink()
    (www / "vosk" / "models" / f"{NAME}.zip").write_bytes(data)
    target = tmp_path / "b" / NAME
    result = fetch_model(target, f"{base}/vosk/models/{NAME}.zip", sha, mirror=f"{base}/mirror", log=lambda m: None)
    assert result["url"] == f"{base}/vosk/models/{NAME}.zip" and is_model(target)


def test_a_wrong_hash_installs_nothing(served, tmp_path):
    base, www, _ = served
    (www / "vosk" / "models" / f"{NAME}.zip").write_bytes(_zip())
    target = tmp_path / "models" / NAME
    with pytest.raises(ModelFetchError, match="sha256"):
        fetch_model(target, f"{base}/vosk/models/{NAME}.zip", "0" * 64, log=lambda m: None)
    assert not target.exists() and list(target.parent.iterdir()) == []
    with pytest.raises(ModelFetchError, match="HTTP 404"):
        fetch_model(target, f"{base}/vosk/models/nothing.zip", "0" * 64, log=lambda m: None)
    with pytest.raises(ModelFetchError, match="pinned"):
        fetch_model(target, f"{base}/vosk/models/{NAME}.zip", "", log=lambda m: None)


def test_cli_fetches_what_the_settings_name(served, tmp_path, monkeypatch):
    from tanfang.cli import cli

    base, www, _ = served
    data = _zip()
    (www / "vosk" / "models" / f"{NAME}.zip").write_bytes(data)
    target = tmp_path / "m" / NAME
    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_VOICE__VOSK_MODEL": str(target),
           "TANFANG_VOICE__MODEL_URL": f"{base}/vosk/models/{NAME}.zip",
           "TANFANG_VOICE__MODEL_SHA256": hashlib.sha256(data).hexdigest()}
    result = CliRunner().invoke(cli, ["model", "fetch", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert '"fetched": true' in result.output and is_model(target)
    env["TANFANG_VOICE__VOSK_MODEL"] = str(tmp_path / "n" / NAME)
    env["TANFANG_VOICE__MODEL_SHA256"] = "1" * 64
    result = CliRunner().invoke(cli, ["model", "fetch"], env=env)
    assert result.exit_code != 0 and "sha256" in result.output
