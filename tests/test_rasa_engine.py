"""RasaDialogEngine against the real Rasa server with the real trained dialogs/ model.

The server is started once per session (tests.rasa_fixtures); the first run on a machine trains
the model (minutes), later runs reuse the cached model.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml

from core.ports import DialogEngine, DialogReply, Grade, ParseResult
from dialogs.engine import DialogUnavailable, RasaDialogEngine
from dialogs.runtime import DIALOGS_DIR, EmbeddedRasa, action_server_up, rasa_status
from sim.net import free_port

pytest_plugins = ["tests.rasa_fixtures"]




def training_examples() -> dict[str, list[str]]:
    """intent -> its NLU examples (entity annotations removed) from dialogs/data/."""
    examples: dict[str, list[str]] = {}
    for path in sorted((DIALOGS_DIR / "data").rglob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for item in doc.get("nlu") or []:
            if "intent" not in item or not isinstance(item.get("examples"), str):
                continue
            for line in item["examples"].splitlines():
                line = line.strip()
                if line.startswith("- "):
                    text = re.sub(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})", r"\1", line[2:].strip())
                    examples.setdefault(item["intent"], []).append(text)
    return examples


def domain_slots() -> set[str]:
    path = DIALOGS_DIR / "domain.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return set((doc or {}).get("slots", {}) or {})


# ---- without a server -------------------------------------------------------------------------


async def test_unreachable_server_raises_dialog_unavailable():
    engine = RasaDialogEngine(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert isinstance(engine, DialogEngine)
    with pytest.raises(DialogUnavailable, match="unreachable"):
        await engine.parse("你好")
    with pytest.raises(DialogUnavailable):
        await engine.send("c-1", "我头疼", {})
    await engine.aclose()


def test_reply_reads_end_outcome_and_expected_answer():
    engine = RasaDialogEngine("http://127.0.0.1:1")
    tracker = {"slots": {"requested_slot": "health_status", "elder_name": "王秀英"},
               "active_loop": {"name": "checkin_form"}, "latest_message": {"text": "/greet"}}
    reply = engine._reply("/greet", [{"text": "您好"}, {"text": "身体怎么样？"}], tracker, user_turn=False)
    assert reply.messages == ["您好", "身体怎么样？"]
    assert reply.expects == "health_status" and not reply.ended and reply.parse is None
    assert reply.slots["elder_name"] == "王秀英"

    ended = engine._reply("/greet", [{"text": "再见"}, {"custom": {"ended": True, "outcome": "complete"}}],
                          {"slots": {}, "active_loop": {}}, user_turn=False)
    assert ended.ended and ended.outcome == "complete" and ended.messages == ["再见"] and ended.expects is None

    nested = engine._reply("/greet", [{"custom": {"custom": {"ended": True, "outcome": "handover"}}}],
                           {"slots": {}}, user_turn=False)
    assert nested.ended and nested.outcome == "handover"

    by_slot = engine._reply("/greet", [], {"slots": {"checkin_outcome": "reschedule", "requested_slot": "x"},
                                            "active_loop": {"name": "f"}}, user_turn=False)
    assert by_slot.ended and by_slot.outcome == "reschedule" and by_slot.expects is None

    custom_expects = engine._reply("/greet", [{"custom": {"expects": "yes_no", "text": "对吗？"}}],
                                   {"slots": {}}, user_turn=False)
    assert custom_expects.expects == "yes_no" and custom_expects.messages == ["对吗？"]


# ---- against the real server --------------------------------------------------------------------


@pytest.fixture
async def engine(rasa_server):
    eng = RasaDialogEngine(rasa_server.url, timeout=rasa_server.settings.rasa.parse_timeout, token=rasa_server.token)
    yield eng
    await eng.aclose()


@pytest.mark.rasa
async def test_model_understands_its_training_examples(engine):
    examples = training_examples()
    assert len(examples) >= 3, "dialogs/data has NLU intents"
    sample = [(intent, texts[0]) for intent, texts in sorted(examples.items())]
    wrong = []
    for intent, text in sample:
        parse = await engine.parse(text)
        assert isinstance(parse, ParseResult) and parse.text == text
        assert 0.0 <= parse.confidence <= 1.0
        if parse.intent != intent:
            wrong.append((text, intent, parse.intent))
    assert len(wrong) <= len(sample) // 10, f"misclassified training examples: {wrong}"


@pytest.mark.rasa
async def test_start_greets_and_sets_metadata_slots(engine):
    cid = f"test-{uuid.uuid4().hex[:8]}"
    slots = domain_slots()
    metadata = {"elder_name": "王秀英", "not_a_slot": "x"}
    reply = await engine.start(cid, metadata)
    assert isinstance(reply, DialogReply)
    assert reply.messages, "the bot opens the conversation"
    assert all(isinstance(m, str) and m for m in reply.messages)
    assert reply.parse is None and reply.grade == Grade()
    for key in ("elder_name",):
        if key in slots:
            assert reply.slots.get(key) == metadata[key]
    assert "not_a_slot" not in reply.slots


@pytest.mark.rasa
async def test_send_round_trip_reads_the_tracker_and_grades_the_turn(engine):
    cid = f"test-{uuid.uuid4().hex[:8]}"
    await engine.start(cid, {"elder_name": "李大爷"})
    examples = training_examples()
    intent, text = next((i, t[0]) for i, t in sorted(examples.items()) if i not in {"greet"})
    reply = await engine.send(cid, text)
    assert reply.parse is not None and reply.parse.text == text
    assert reply.parse.intent == intent
    assert isinstance(reply.grade, Grade) and reply.grade.risk in {"none", "concern", "urgent"}
    assert isinstance(reply.slots, dict)
    # The conversation is kept by Rasa: the tracker now holds both turns.
    tracker = await engine._request("GET", f"/conversations/{cid}/tracker")
    user_texts = [e.get("text") for e in tracker["events"] if e.get("event") == "user"]
    assert user_texts[-1] == text and len(user_texts) >= 2


@pytest.mark.rasa
async def test_server_error_is_dialog_unavailable(engine):
    with pytest.raises(DialogUnavailable, match="HTTP 4"):
        await engine._request("POST", "/conversations/x/tracker/events", json=[{"event": "no-such-event"}])


@pytest.mark.rasa
def test_running_servers_are_reused_and_left_running(rasa_server):
    again = EmbeddedRasa(rasa_server.settings, log=lambda m: None)
    with again:
        assert again.started == [] and again.url == rasa_server.url
    # The running server holds the model of the current content (loaded into it if dialogs/ changed).
    assert rasa_status(rasa_server.url, token=rasa_server.token)["model_file"].endswith(again.model.name)
    assert action_server_up(rasa_server.action_url, token=rasa_server.token)
    assert Path(rasa_server.settings.app.data_dir / "logs" / "rasa-server.log").is_file()


@pytest.mark.rasa
def test_external_url_starts_nothing(rasa_server, settings):
    settings.rasa.url = rasa_server.url
    settings.rasa.port = free_port()  # nothing there: it must not be used
    with EmbeddedRasa(settings) as ext:
        assert ext.url == rasa_server.url and ext.started == []
    assert rasa_status(rasa_server.url, token=rasa_server.token) is not None
