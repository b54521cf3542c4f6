"""Running Rasa for the app: its own Python 3.10 environment, cached training, embedded servers.

Rasa 3.6 does not install on Python 3.11, so it lives in a separate virtualenv created on first
use under ``<rasa.cache_dir>/rasa-env/<sha256(requirements-rasa.txt)[:12]>/`` (a file
``.complete`` marks a finished install). Trained models are cached under
``<rasa.cache_dir>/rasa-models/<content hash>.tar.gz`` where the hash covers everything Rasa
trains on (config.yml, domain, data/**) plus the requirements file — so an unchanged project is
never trained twice, on a laptop or in CI.

:class:`EmbeddedRasa` starts ``rasa run`` (in the Rasa environment, through
``dialogs/rasa_launcher.py``) and the action server (``python -m dialogs.action_server``: rasa-sdk
behind a token check, in this app's environment). Both listen on the loopback, require the shared
token of ``dialogs.auth``, get only the environment they need (not the app's secrets) and end with
the process that started them. Servers already on the configured ports are reused only when they
prove they serve this deployment (our token, our database); it stops what it started. With
``rasa.url`` set it starts nothing and uses that external server.

:class:`EmbeddedRasa` starts ``rasa run`` (in the Rasa environment) and the action server
(``python -m rasa_sdk`` in this app's environment), reusing servers that already answer on the
configured ports, and stops what it started. With ``rasa.url`` set it starts nothing and uses
that external server.

Scaled out (docs/deploy.md), each Rasa server is started with an ``endpoints.yml`` generated
from the settings (:func:`endpoints_config`): a SQL tracker store on PostgreSQL
(``rasa.tracker_store_url``; the password reaches Rasa through its environment, never the file)
so a conversation outlives the server that held it and memory stays bounded, and a
``RedisLockStore`` (``rasa.lock_store_url``) so that several servers process one conversation's
turns one at a time, in order.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import yaml

from core.settings import REPO_ROOT, Settings
from data.files import open_private, private_dir
from dialogs.auth import TOKEN_ENV, bearer, identity, shared_token
from dialogs.rasa_launcher import PARENT_ENV

DIALOGS_DIR = REPO_ROOT / "dialogs"
REQUIREMENTS = DIALOGS_DIR / "requirements-rasa.txt"
ACTIONS_MODULE = "dialogs.actions"

# What Rasa trains on, relative to the project folder. Anything else (actions/, tests/, eval/,
# python files, caches) does not change the model and is left out of the hash.
_TRAINED_FILES = ("config.yml",)
_TRAINED_TREES = ("domain.yml", "domain", "data")
_SKIP_SUFFIXES = (".py", ".pyc")


class RasaRuntimeError(Exception):
    """Rasa could not be installed, trained or started; the message says what is missing."""


# ---- the Rasa environment -------------------------------------------------------------------


def _python_version(exe: str | Path) -> tuple[int, int] | None:
    """(major, minor) of an interpreter that really runs, else None (pyenv shims may not)."""
    try:
        out = subprocess.run(
            [str(exe), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        major, minor = out.stdout.strip().split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def _pyenv_candidates(minor: str) -> list[Path]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if not root.is_dir():
        return []
    found = [p / "bin" / "python" for p in root.iterdir() if p.name.startswith(minor + ".")]
    return sorted((p for p in found if p.exists()), reverse=True)


def find_python(settings: Settings) -> Path:
    """The interpreter for Rasa's environment: ``rasa.python`` (a name on PATH or a path), else
    pyenv's 3.10.x. Only an interpreter that actually runs and is < 3.11 is accepted."""
    wanted = settings.rasa.python
    tried: list[str] = []
    candidates: list[str | Path] = []
    if os.sep in wanted:
        candidates.append(Path(wanted).expanduser())
    else:
        on_path = shutil.which(wanted)
        if on_path:
            candidates.append(on_path)
    minor = "3.10"
    if wanted.startswith("python3."):
        minor = wanted[len("python"):]
    candidates.extend(_pyenv_candidates(minor))
    for cand in candidates:
        version = _python_version(cand)
        tried.append(f"{cand} ({'%d.%d' % version if version else 'does not run'})")
        if version and (3, 8) <= version < (3, 11):
            return Path(cand)
    raise RasaRuntimeError(
        f"Rasa 3.6 需要 Python 3.8–3.10, 未找到可用的解释器 (rasa.python = {wanted!r}; tried: "
        f"{', '.join(tried) or 'nothing on PATH, no ~/.pyenv/versions/' + minor + '.*'}). "
        "Install python3.10 (apt install python3.10-venv, or pyenv install 3.10) "
        "or set rasa.python / TANFANG_RASA__PYTHON to its path."
    )


def requirements_hash(requirements: Path = REQUIREMENTS) -> str:
    if not requirements.is_file():
        raise RasaRuntimeError(f"Rasa requirements file not found: {requirements}")
    return hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]


def env_dir(settings: Settings, requirements: Path = REQUIREMENTS) -> Path:
    return settings.rasa.cache_dir / "rasa-env" / requirements_hash(requirements)


def env_ready(settings: Settings, requirements: Path = REQUIREMENTS) -> bool:
    env = env_dir(settings, requirements)
    return (env / ".complete").is_file() and (env / "bin" / "rasa").exists()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two `tanfang` commands never install/train twice)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_rasa_env(settings: Settings, requirements: Path = REQUIREMENTS, log=print) -> Path:
    """The Rasa virtualenv, created and installed on first use (several minutes); reused after."""
    env = env_dir(settings, requirements)
    if env_ready(settings, requirements):
        return env
    with _file_lock(env.with_name(env.name + ".lock")):
        if env_ready(settings, requirements):  # another process finished it meanwhile
            return env
        python = find_python(settings)
        if env.exists():
            shutil.rmtree(env)  # an interrupted install: start clean
        log(f"创建 Rasa 环境 creating the Rasa environment in {env} with {python} (several minutes)")
        steps = [
            [str(python), "-m", "venv", str(env)],
            [str(env / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
        ]
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise RasaRuntimeError(
                    f"installing the Rasa environment failed at `{' '.join(cmd[:3])} ...`: "
                    + " | ".join(tail)
                )
        if not (env / "bin" / "rasa").exists():
            raise RasaRuntimeError(f"{env}/bin/rasa missing after installing {requirements}")
        (env / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return env


# ---- training ---------------------------------------------------------------------------------


def trained_files(project: Path = DIALOGS_DIR) -> list[Path]:
    """Every file Rasa trains on, sorted (config.yml, domain.yml or domain/**, data/**)."""
    files: list[Path] = []
    for name in _TRAINED_FILES:
        if (project / name).is_file():
            files.append(project / name)
    for name in _TRAINED_TREES:
        root = project / name
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            for p in root.rglob("*"):
                rel = p.relative_to(project)
                if (p.is_file() and not p.name.endswith(_SKIP_SUFFIXES)
                        and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts)):
                    files.append(p)
    return sorted(files, key=lambda p: p.relative_to(project).as_posix())


def content_hash(project: Path = DIALOGS_DIR, requirements: Path = REQUIREMENTS) -> str:
    """Hash of the project content Rasa trains on plus the Rasa requirements (pinned versions)."""
    files = trained_files(project)
    missing = [n for n in ("config.yml",) if not (project / n).is_file()]
    if not (project / "domain.yml").exists() and not (project / "domain").is_dir():
        missing.append("domain.yml")
    if missing:
        raise RasaRuntimeError(f"the Rasa project {project} has no {', '.join(missing)}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(project).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    h.update(b"requirements\0" + (requirements.read_bytes() if requirements.is_file() else b""))
    return h.hexdigest()[:16]


def models_dir(settings: Settings) -> Path:
    return settings.rasa.cache_dir / "rasa-models"


def model_path(settings: Settings, project: Path = DIALOGS_DIR, requirements: Path = REQUIREMENTS) -> Path:
    return models_dir(settings) / f"{content_hash(project, requirements)}.tar.gz"


def logs_dir(settings: Settings) -> Path:
    return private_dir(settings.app.data_dir / "logs")  # 0700, in the 0700 data folder


TRACKER_PASSWORD_ENV = "TANFANG_RASA_TRACKER_PASSWORD"
LOCK_PASSWORD_ENV = "TANFANG_RASA_LOCK_PASSWORD"


def sql_tracker_store(url: str) -> dict:
    """``postgresql://user:pw@host:5432/db`` -> Rasa's ``tracker_store`` section (type SQL)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    backend = u.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        raise RasaRuntimeError(f"rasa.tracker_store_url must be postgresql:// (or sqlite:///), not {backend}")
    out: dict = {"type": "SQL", "dialect": "postgresql" if backend == "postgresql" else "sqlite",
                 "db": u.database or "rasa"}
    if u.host:
        out["url"] = u.host  # Rasa passes the endpoint's url to SQLTrackerStore as its host
    if u.port:
        out["port"] = u.port
    if u.username:
        out["username"] = u.username
    if u.password:
        out["password"] = "${%s}" % TRACKER_PASSWORD_ENV  # Rasa substitutes ${VAR} from its environment
    if u.query:
        out["query"] = dict(u.query)
    return out


def redis_lock_store(url: str) -> dict:
    """``redis://:pw@host:6379/1`` -> Rasa's ``lock_store`` section (type redis)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("redis", "rediss"):
        raise RasaRuntimeError(f"rasa.lock_store_url must be redis://host:port/db, not {url!r}")
    out: dict = {"type": "redis", "url": u.hostname or "localhost", "port": u.port or 6379,
                 "db": int((u.path or "/1").strip("/") or 1), "key_prefix": "tanfang", "use_ssl": u.scheme == "rediss"}
    if u.password:
        out["password"] = "${%s}" % LOCK_PASSWORD_ENV
    return out


def endpoints_config(settings: Settings, action_url: str | None, base: dict | None = None) -> dict:
    """The endpoints.yml of a Rasa server of this deployment (pure: settings in, mapping out)."""
    data = dict(base or {})
    if action_url:
        data["action_endpoint"] = {"url": f"{action_url}/webhook"}
    else:
        data.pop("action_endpoint", None)
    if settings.rasa.tracker_store_url:
        data["tracker_store"] = sql_tracker_store(settings.rasa.tracker_store_url)
    if settings.rasa.lock_store_url:
        data["lock_store"] = redis_lock_store(settings.rasa.lock_store_url)
    return data


def _store_passwords(settings: Settings) -> dict[str, str]:
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url

    env = {}
    if settings.rasa.tracker_store_url and make_url(settings.rasa.tracker_store_url).password:
        env[TRACKER_PASSWORD_ENV] = make_url(settings.rasa.tracker_store_url).password
    if settings.rasa.lock_store_url and urlsplit(settings.rasa.lock_store_url).password:
        env[LOCK_PASSWORD_ENV] = urlsplit(settings.rasa.lock_store_url).password
    return env


# What a child process gets from our environment: enough to run, none of the app's secrets.
_PASS_THROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


def _base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in _PASS_THROUGH if name in os.environ}


def _rasa_env_vars(settings: Settings, token: str | None = None) -> dict[str, str]:
    """Rasa's environment: the basics, Rasa's own switches, and (to serve) the shared token and
    who its parent is. Not the app's environment: no Twilio or Telegram token, no database URL
    (the passwords of the tracker and lock stores, when scaled out, reach it here, never in a file)."""
    env = _base_env()
    env.update(_store_passwords(settings))
    env.update({
        "RASA_TELEMETRY_ENABLED": "false",
        # Rasa's training cache goes next to the models, never into the repository.
        "RASA_CACHE_DIRECTORY": str(settings.rasa.cache_dir / "rasa-train-cache"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    })
    if token:
        env.update({TOKEN_ENV: token, PARENT_ENV: str(os.getpid())})
    return env


def _action_env_vars(settings: Settings, token: str) -> dict[str, str]:
    """The action server's environment: where to write (the database of this deployment) and the
    key its personal numbers are sealed with, the shared token, its parent; nothing else of the
    app's (no Twilio or Telegram secrets)."""
    env = _base_env()
    for name, secret in (("TANFANG_DATA_KEY", settings.secrets.data_key),
                         ("TANFANG_DATA_KEY_OLD", settings.secrets.data_key_old)):
        if secret is not None:
            env[name] = secret.get_secret_value()
    env.update({
        "TANFANG_DATABASE_URL": settings.database_url,
        "TANFANG_DATA_DIR": str(settings.app.data_dir),
        "TANFANG_OUTPUT_DIR": str(settings.app.output_dir),
        TOKEN_ENV: token,
        PARENT_ENV: str(os.getpid()),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    })
    if settings.config_path:
        env["TANFANG_CONFIG"] = str(settings.config_path)
    return env


def _die_with_parent() -> None:  # pragma: no cover — runs in the child between fork and exec
    """``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel ends the child when its parent dies, even by
    ``kill -9`` (the child's own watchdog covers systems without prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def train(settings: Settings, project: Path = DIALOGS_DIR, requirements: Path = REQUIREMENTS,
          force: bool = False, log=print) -> tuple[Path, bool]:
    """The trained model for the current content; trains only when it is not cached (or force).

    Returns ``(model file, trained_now)``.
    """
    target = model_path(settings, project, requirements)
    if target.is_file() and not force:
        return target, False
    env = ensure_rasa_env(settings, requirements, log=log)
    with _file_lock(target.with_name(target.name + ".lock")):
        if target.is_file() and not force:
            return target, False
        domain = project / "domain.yml" if (project / "domain.yml").exists() else project / "domain"
        logfile = logs_dir(settings) / "rasa-train.log"
        log(f"训练 Rasa 模型 training the Rasa model {target.name} (a few minutes; log {logfile})")
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            name = target.name[: -len(".tar.gz")]
            cmd = [
                str(env / "bin" / "rasa"), "train",
                "--config", str(project / "config.yml"),
                "--domain", str(domain),
                "--data", str(project / "data"),
                "--out", tmp, "--fixed-model-name", name,
            ]
            with open_private(logfile, "ab") as out:
                out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
                out.flush()
                done = subprocess.run(cmd, cwd=str(project), stdout=out, stderr=subprocess.STDOUT,
                                      env=_rasa_env_vars(settings))
            produced = Path(tmp) / target.name
            if done.returncode != 0 or not produced.is_file():
                raise RasaRuntimeError(
                    f"rasa train failed (exit {done.returncode}); see {logfile}: "
                    + _tail(logfile)
                )
            if content_hash(project, requirements) != name:
                # Files were edited while Rasa read them: the model may not match its name.
                raise RasaRuntimeError(f"{project} changed during training; run `tanfang rasa train` again")
            os.replace(produced, target)  # atomic: a half-written model is never used
    return target, True


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# ---- serving ----------------------------------------------------------------------------------


def _get(url: str, timeout: float = 2.0, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout, **kwargs)
    except httpx.HTTPError:
        return None


def _get_json(url: str, timeout: float, **kwargs) -> dict | None:
    """The JSON of a 200 answer; None when nothing answers, refuses (401...) or sends no JSON."""
    resp = _get(url, timeout, **kwargs)
    if resp is None or resp.status_code != 200:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def rasa_status(url: str, timeout: float = 2.0, token: str | None = None) -> dict | None:
    """``/status`` of a Rasa server (``model_file`` etc.), or None when nothing answers or the
    server does not accept ``token``."""
    return _get_json(url.rstrip("/") + "/status", timeout, params={"token": token} if token else None)


def port_answers(url: str, timeout: float = 2.0) -> bool:
    """Something answers HTTP at ``url`` (whoever it is)."""
    return _get(url, timeout) is not None


def action_server_identity(url: str, token: str | None, timeout: float = 2.0) -> dict | None:
    """The action server's ``/health`` (its deployment's identity), or None when nothing answers
    or it does not accept ``token``."""
    headers = {"Authorization": bearer(token)} if token else None
    return _get_json(url.rstrip("/") + "/health", timeout, headers=headers)


def action_server_up(url: str, timeout: float = 2.0, token: str | None = None) -> bool:
    return action_server_identity(url, token, timeout) is not None


def _model_loaded(status: dict | None) -> bool:
    return bool(status and status.get("model_file") and status.get("model_id"))


@dataclass
class EmbeddedRasa:
    """Rasa + the action server for this app. ``with EmbeddedRasa(settings) as rasa: rasa.url``.

    Also an async context manager (the blocking start runs in a thread). Both servers bind to the
    loopback (``rasa.host``, ``rasa.action_host``) and require the shared token
    (``dialogs.auth``); they end with the process that started them (``prctl`` death signal and
    a watchdog of their own). A server already answering on ``rasa.port`` / ``rasa.action_port`` is
    reused — and left running — only when it proves it serves this deployment: it accepts our
    token, and the action server writes to our database; anything else on the port is an error,
    never a silent reuse. With ``settings.rasa.url`` set nothing is started.
    """

    settings: Settings
    project: Path = DIALOGS_DIR
    requirements: Path = REQUIREMENTS
    actions_module: str | None = ACTIONS_MODULE
    startup_timeout: float = 300.0
    log: object = print
    model: Path | None = None
    started: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)
    _files: list = field(default_factory=list, repr=False)

    @property
    def external(self) -> bool:
        return bool(self.settings.rasa.url)

    @property
    def url(self) -> str:
        if self.external:
            return self.settings.rasa.url.rstrip("/")
        return f"http://{self.settings.rasa.host}:{self.settings.rasa.port}"

    @property
    def action_url(self) -> str:
        return f"http://{self.settings.rasa.action_host}:{self.settings.rasa.action_port}"

    @property
    def token(self) -> str:
        return shared_token(self.settings)

    # -- lifecycle --

    def start(self) -> "EmbeddedRasa":
        if self.external:
            if not _model_loaded(rasa_status(self.url, timeout=self.settings.rasa.parse_timeout, token=self.token)):
                raise RasaRuntimeError(f"the external Rasa server {self.url} does not answer /status with a model "
                                       f"(down, or it does not accept {TOKEN_ENV})")
            return self
        try:
            self._start_actions()
            self._start_rasa()
        except BaseException:
            self.stop()
            raise
        return self

    def _ours(self, who: dict | None) -> bool:
        return who is not None and all(who.get(k) == v for k, v in identity(self.settings).items())

    def _start_actions(self) -> None:
        if not self.actions_module:
            return
        s = self.settings
        who = action_server_identity(self.action_url, self.token)
        if self._ours(who):
            return  # the same deployment's server (another process of it, or a test's earlier start)
        if who is not None or port_answers(self.action_url + "/health"):
            raise RasaRuntimeError(
                f"端口 {s.rasa.action_port} 上的动作服务不属于本部署 (the action server on {self.action_url} does not "
                f"serve this deployment: another token or another database); stop it or set rasa.action_port")
        cmd = [sys.executable, "-m", "dialogs.action_server", "--actions", self.actions_module,
               "--host", s.rasa.action_host, "--port", str(s.rasa.action_port)]
        self._spawn("actions", cmd, _action_env_vars(s, self.token), cwd=REPO_ROOT)
        self._wait("action server", lambda: self._ours(action_server_identity(self.action_url, self.token)),
                   self._procs[-1], 60)
        self.started.append("actions")

    def _endpoints_file(self) -> Path:
        """dialogs/endpoints.yml with this server's action endpoint (sending the shared token
        ``${TANFANG_RASA_TOKEN}``: Rasa reads it from its environment, the file holds no secret), tracker
        and lock stores (one file per port: several servers may share a data folder)."""
        src = self.project / "endpoints.yml"
        base = {}
        if src.is_file():
            base = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        data = endpoints_config(self.settings, self.action_url if self.actions_module else None, base)
        if self.actions_module:
            data["action_endpoint"]["headers"] = {"Authorization": bearer("${%s}" % TOKEN_ENV)}
        out = logs_dir(self.settings).parent / f"rasa-endpoints-{self.settings.rasa.port}.yml"
        out.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return out

    def _start_rasa(self) -> None:
        s = self.settings
        if self.model is None:
            self.model, _ = train(s, self.project, self.requirements, log=self.log)
        status = rasa_status(self.url, token=self.token)
        if status is not None:
            if Path(str(status.get("model_file", ""))).name != self.model.name:
                self._load_model(self.model)
            return
        if port_answers(self.url + "/"):
            raise RasaRuntimeError(f"端口 {s.rasa.port} 上的 Rasa 不接受本部署的令牌 (the Rasa server on {self.url} "
                                   f"does not accept this deployment's token); stop it or set rasa.port")
        env_path = ensure_rasa_env(s, self.requirements, log=self.log)
        cmd = [
            str(env_path / "bin" / "python"), str(DIALOGS_DIR / "rasa_launcher.py"), "run", "--enable-api",
            "-m", str(self.model), "-i", s.rasa.host, "--port", str(s.rasa.port),
            "--endpoints", str(self._endpoints_file()),
        ]
        self._spawn("server", cmd, _rasa_env_vars(s, self.token), cwd=self.project)
        self._wait("Rasa server", lambda: _model_loaded(rasa_status(self.url, token=self.token)), self._procs[-1],
                   self.startup_timeout)
        self.started.append("server")

    def _load_model(self, model: Path) -> None:
        """A reused server runs another model: replace it with the current one."""
        self.log(f"Rasa on {self.url} runs another model; loading {model.name}")
        try:
            resp = httpx.put(self.url + "/model", params={"token": self.token}, json={"model_file": str(model)},
                             timeout=self.startup_timeout)
        except httpx.HTTPError as exc:
            raise RasaRuntimeError(f"could not load {model.name} into {self.url}: {exc}") from exc
        if resp.status_code != 204:
            raise RasaRuntimeError(f"could not load {model.name} into {self.url}: HTTP {resp.status_code} {resp.text[:200]}")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        logfile = logs_dir(self.settings) / f"rasa-{name}.log"
        fh = open_private(logfile, "ab")
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        fh.flush()
        self._files.append(fh)
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        proc.logfile = logfile  # type: ignore[attr-defined]
        self._procs.append(proc)

    def _wait(self, what: str, ready, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                raise RasaRuntimeError(
                    f"{what} exited with code {proc.returncode}; see {proc.logfile}: {_tail(proc.logfile)}"
                )
            time.sleep(0.5)
        raise RasaRuntimeError(f"{what} not ready after {timeout:.0f}s; see {proc.logfile}")

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self._procs.clear()
        self.started.clear()
        for fh in self._files:
            fh.close()
        self._files.clear()

    def wait(self) -> int | None:
        """Block until a started server exits (``tanfang rasa serve``); its exit code."""
        while True:
            for proc in self._procs:
                if proc.poll() is not None:
                    return proc.returncode
            time.sleep(1)

    def __enter__(self) -> "EmbeddedRasa":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> "EmbeddedRasa":
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


def status_report(settings: Settings, project: Path = DIALOGS_DIR, requirements: Path = REQUIREMENTS) -> dict:
    """What ``tanfang rasa status`` shows: environment, model cache, servers."""
    report: dict = {"external_url": settings.rasa.url or None}
    try:
        report["env_dir"] = str(env_dir(settings, requirements))
        report["env_ready"] = env_ready(settings, requirements)
    except RasaRuntimeError as exc:
        report["env_dir"], report["env_ready"], report["env_error"] = None, False, str(exc)
    try:
        model = model_path(settings, project, requirements)
        report["model"] = str(model)
        report["model_trained"] = model.is_file()
    except RasaRuntimeError as exc:
        report["model"], report["model_trained"], report["model_error"] = None, False, str(exc)
    url = settings.rasa.url.rstrip("/") if settings.rasa.url else f"http://{settings.rasa.host}:{settings.rasa.port}"
    token = shared_token(settings)
    status = rasa_status(url, token=token)
    report["server_url"] = url
    report["server_up"] = status is not None
    report["server_answers"] = status is not None or port_answers(url + "/")
    report["server_model"] = Path(status["model_file"]).name if status and status.get("model_file") else None
    report["server_model_current"] = bool(
        report["server_model"] and report.get("model") and report["server_model"] == Path(report["model"]).name
    )
    action_url = f"http://{settings.rasa.action_host}:{settings.rasa.action_port}"
    report["action_server_url"] = action_url
    who = None if settings.rasa.url else action_server_identity(action_url, token)
    report["action_server_up"] = None if settings.rasa.url else who is not None
    report["action_server_ours"] = None if settings.rasa.url else bool(
        who and all(who.get(k) == v for k, v in identity(settings).items()))
    report["token_configured"] = settings.secrets.rasa_token is not None
    return report
