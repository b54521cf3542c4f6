
import pytest

from core.settings import SettingsError, load_settings


def test_defaults_from_repo_config_resolve_paths_against_the_file():
    s = load_settings(env={})
    assert s.app.name == "探访"
    assert s.voice.vosk_model.is_absolute()
    assert s.voice.vosk_model.name == "vosk-model-small-cn-0.22"
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("tanfang.db")
    assert s.scheduler.quiet_hours == "21:00-08:00"


def test_environment_overrides_shortcuts_and_nested_keys(tmp_path):
    s = load_settings(env={
        "TANFANG_DATABASE_URL": "postgresql+psycopg://u:p@127.0.0.1/x",
        "TANFANG_OUTPUT_DIR": str(tmp_path / "o"),
        "TANFANG_VOICE__END_OF_UTTERANCE_SILENCE": "1.5",
        "TANFANG_SCHEDULER__NO_ANSWER__RETRY_MINUTES": "[5, 15]",
    })
    assert s.database_url == "postgresql+psycopg://u:p@127.0.0.1/x"
    assert s.app.output_dir == tmp_path / "o"
    assert s.voice.end_of_utterance_silence == 1.5
    assert s.scheduler.no_answer.retry_minutes == [5, 15]


def test_other_config_file_via_TANFANG_CONFIG(tmp_path):
    cfg = tmp_path / "alt.yml"
    cfg.write_text("app:\n  name: 测试\n  data_dir: d\n", encoding="utf-8")
    s = load_settings(env={"TANFANG_CONFIG": str(cfg)})
    assert s.app.name == "测试"
    assert s.app.data_dir == tmp_path / "d"


def test_secrets_only_from_environment_and_never_printed(tmp_path):
    cfg = tmp_path / "bad.yml"
    cfg.write_text("twilio:\n  auth_token: abc\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="twilio.auth_token"):
        load_settings(env={"TANFANG_CONFIG": str(cfg)})
    s = load_settings(env={"TANFANG_TWILIO_AUTH_TOKEN": "s3cret"})
    assert s.secrets.twilio_auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in s.model_dump_json()


def test_unknown_key_and_missing_file_give_one_line_reason(tmp_path):
    cfg = tmp_path / "typo.yml"
    cfg.write_text("voice:\n  vosk_modle: x\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"voice\.vosk_modle"):
        load_settings(env={"TANFANG_CONFIG": str(cfg)})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(env={"TANFANG_CONFIG": str(tmp_path / "nope.yml")})


def test_a_call_lease_shorter_than_the_heartbeat_is_refused():
    # the lease would lapse under a live call and the sweep would settle it mid-conversation
    with pytest.raises(SettingsError, match="lease_seconds"):
        load_settings(env={"TANFANG_TOPOLOGY__LEASE_SECONDS": "10", "TANFANG_TOPOLOGY__HEARTBEAT_SECONDS": "10"})
    s = load_settings(env={"TANFANG_TOPOLOGY__LEASE_SECONDS": "30", "TANFANG_TOPOLOGY__HEARTBEAT_SECONDS": "10"})
    assert s.topology.lease_seconds == 30


@pytest.mark.parametrize("env_name, value", [
    pytest.param("TANFANG_TELEGRAM__MAX_VOICE_BYTES", "-1", id="telegram-voice-bytes"),
    pytest.param("TANFANG_TELEGRAM__CHECKIN_REPLY_MINUTES", "0", id="telegram-reply-window"),
    pytest.param("TANFANG_TOPOLOGY__MAX_CONCURRENT_CALLS", "0", id="no-call-slots"),
    pytest.param("TANFANG_TOPOLOGY__TICK_SECONDS", "0", id="scheduler-tick"),
    pytest.param("TANFANG_ALERTS__FLAP_EVENTS", "1", id="first-alarm-quietened"),
    pytest.param("TANFANG_SCHEDULER__NO_ANSWER__RETRY_MINUTES", "[10, 0]", id="retry-at-once"),
    pytest.param("TANFANG_SCHEDULER__NO_ANSWER__MAX_ATTEMPTS_PER_DAY", "0", id="never-called"),
    pytest.param("TANFANG_WEB__PORT", "70000", id="no-such-port"),
])
def test_a_number_out_of_range_is_refused_at_load_naming_the_key(env_name, value):
    # each of these would silently stop calls, alarms or messages instead of failing at start
    with pytest.raises(SettingsError, match=env_name.rsplit("__", 1)[-1].lower()):
        load_settings(env={env_name: value})
