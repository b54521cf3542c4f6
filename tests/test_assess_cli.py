"""``tanfang assess``: one object per text, against the real Rasa server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tanfang.cli import cli
from dialogs.runtime import port_answers
from sim.net import free_port

pytest_plugins = ["tests.rasa_fixtures"]



KEYS = {"text", "intent", "confidence", "entities", "risk", "dimension", "reasons"}


def test_empty_text_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["assess", "--json", "你好", "  "],
                                env={"TANFANG_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1 and "empty TEXT" in result.output


def test_unreachable_external_rasa_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["assess", "你好"], env={
        "TANFANG_DATA_DIR": str(tmp_path), "TANFANG_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "TANFANG_RASA__PARSE_TIMEOUT": "1"})
    assert result.exit_code == 1
    assert "external Rasa server" in result.output and "Traceback" not in result.output


@pytest.mark.rasa
def test_assess_json_is_one_object_per_text(rasa_server):
    texts = ["我昨天摔了一跤，腿疼得站不起来", "挺好的，吃得下睡得着", "这个月钱不够用了"]
    result = CliRunner().invoke(cli, ["assess", "--json", *texts], env=rasa_server.env)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["text"] for r in rows] == texts
    for row in rows:
        assert set(row) == KEYS
        assert isinstance(row["intent"], str) and 0 <= row["confidence"] <= 1
        assert row["risk"] in {"none", "concern", "urgent"} and isinstance(row["reasons"], list)
    fall, fine, money = rows
    assert fall["risk"] == "urgent" and fall["dimension"] in {"health", "safety"} and fall["reasons"]
    assert fine["risk"] == "none"
    assert money["risk"] in {"concern", "urgent"} and money["dimension"] == "economy"


@pytest.mark.rasa
def test_assess_table(rasa_server):
    result = CliRunner().invoke(cli, ["assess", "我头疼"], env=rasa_server.env)
    assert result.exit_code == 0, result.output
    assert "我头疼" in result.output and "风险" in result.output


@pytest.mark.rasa
@pytest.mark.slow
def test_assess_starts_and_stops_embedded_rasa(rasa_server, tmp_path):
    """No server on the configured ports: assess starts Rasa + actions, answers, stops them."""
    port, action_port = free_port(), free_port()
    from tests.rasa_fixtures import rasa_test_env

    env = rasa_test_env(tmp_path, port, action_port)
    result = CliRunner().invoke(cli, ["assess", "--json", "你好"], env=env)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    assert json.loads(result.stdout.splitlines()[0])["text"] == "你好"
    assert not port_answers(f"http://127.0.0.1:{port}/")  # both servers were stopped
    assert not port_answers(f"http://127.0.0.1:{action_port}/health")
    assert (tmp_path / "var" / "logs" / "rasa-server.log").is_file()
