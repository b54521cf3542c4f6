"""core.task_actions on SQLite and PostgreSQL: what a task allows, who may act, the care record,
and the supervisor of an escalated P1 task who accepts it or assigns it to someone."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from core.escalation import escalate_grade, escalate_overdue
from core.escalation.overdue import wait_after
from core.ports import Grade
from core.task_actions import ActionRefused, Actor, allowed_actions, assign_candidates, card_actions, perform
from data.models import AuditLog, CareService, Task
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 0)


def _setup(s, settings):
    """A county supervisor above a township lead above the village grid worker; a P1 task."""
    boss = make_visitor(s, name="林主任", role="supervisor", village=None)
    boss.township = None  # the county level
    lead = make_visitor(s, name="周组长", role="supervisor", village=None, supervisor_id=boss.id)
    grid = make_visitor(s, name="马丽", supervisor_id=lead.id, phone="13837800101")
    vol = make_visitor(s, name="赵小雨", role="volunteer")
    other = make_visitor(s, name="外村网格", village="别的村")
    elder = make_elder(s, responsible_visitor_id=grid.id)
    [task] = escalate_grade(s, settings, elder=elder, visit=None, grade=Grade("urgent", "health", ("摔倒",)),
                            text="摔了一跤起不来", now=NOW)
    return {"boss": boss.id, "lead": lead.id, "grid": grid.id, "vol": vol.id, "other": other.id, "task": task.id}


def _v(vid, channel="wecom"):
    return Actor("visitor", vid, channel)


def test_assignee_walks_the_task_to_a_care_record(db, settings):
    with db.session() as s:
        ids = _setup(s, settings)
        task = s.get(Task, ids["task"])
        assert card_actions(task) == ["accept", "called", "arrived", "close", "reassign", "refer"]
        assert allowed_actions(s, task, _v(ids["grid"])) == ["accept", "called", "arrived", "close", "reassign", "refer"]
        r = perform(s, task_id=ids["task"], action="accept", actor=_v(ids["grid"]), now=NOW)
        assert r.state == "acknowledged" and "已接单" in r.message
        assert card_actions(task) == ["called", "arrived", "close", "reassign", "refer"]
        perform(s, task_id=ids["task"], action="arrived", actor=_v(ids["grid"]), now=NOW)
        r = perform(s, task_id=ids["task"], action="close", actor=_v(ids["grid"]), description="已上门，扶起老人，送医检查",
                    satisfaction="satisfied", now=NOW)
        assert r.state == "done" and r.care_seq == 1
    with db.session() as s:
        task = s.get(Task, ids["task"])
        assert [e.action for e in task.events] == ["created", "acknowledged", "started", "done"]
        assert {e.actor for e in task.events[1:]} == {f"visitor:{ids['grid']}"}
        care = s.scalars(select(CareService)).one()
        assert (care.satisfaction, care.in_person, care.provider_id, care.task_id) == (
            "satisfied", True, ids["grid"], ids["task"])
        assert care.description == "已上门，扶起老人，送医检查"
        assert s.scalar(select(AuditLog).where(AuditLog.entity == "task", AuditLog.detail == "wecom: close")) is not None
        assert allowed_actions(s, task, _v(ids["grid"])) == []  # done: nothing left


def test_a_stranger_and_a_wrong_state_are_refused_and_change_nothing(db, settings):
    with db.session() as s:
        ids = _setup(s, settings)
        with pytest.raises(ActionRefused, match="不是您的任务"):
            perform(s, task_id=ids["task"], action="accept", actor=_v(ids["other"]), now=NOW)
        with pytest.raises(ActionRefused, match="只有主管"):
            perform(s, task_id=ids["task"], action="assign", actor=_v(ids["grid"]), target_id=ids["vol"], now=NOW)
        with pytest.raises(ActionRefused, match="满意度"):
            perform(s, task_id=ids["task"], action="close", actor=_v(ids["grid"]), description="已处理", now=NOW)
        with pytest.raises(ActionRefused, match="没有这个任务"):
            perform(s, task_id=999, action="accept", actor=_v(ids["grid"]), now=NOW)
        perform(s, task_id=ids["task"], action="accept", actor=_v(ids["grid"]), now=NOW)
        with pytest.raises(ActionRefused, match="已确认"):
            perform(s, task_id=ids["task"], action="accept", actor=_v(ids["grid"]), now=NOW)
    with db.session() as s:
        task = s.get(Task, ids["task"])
        assert task.state == "acknowledged" and task.assignee_id == ids["grid"]
        assert [e.action for e in task.events] == ["created", "acknowledged"]


def test_supervisor_of_an_escalated_p1_assigns_it_to_someone(db, settings):
    with db.session() as s:
        ids = _setup(s, settings)
        late = NOW + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes + 1)
        escalate_overdue(s, settings, now=late)  # nobody accepted: level 1 -> the township lead
        escalate_overdue(s, settings, now=late + wait_after(settings.escalation, 1))
        task = s.get(Task, ids["task"])
        assert task.escalation_level == 2
        for sup in ("lead", "boss"):  # the whole chain above the assignee may act
            assert allowed_actions(s, task, _v(ids[sup])) == ["accept", "called", "arrived", "close", "reassign", "assign", "refer"]
        assert [v.name for v in assign_candidates(s, task)] == ["赵小雨"]
        r = perform(s, task_id=ids["task"], action="assign", actor=_v(ids["boss"]), target_id=ids["vol"],
                    settings=settings, now=late)
        assert r.handed_to == [ids["vol"]] and "赵小雨" in r.message
        assert task.assignee_id == ids["vol"] and task.escalation_level == 0
        assert task.ack_deadline == late + dt.timedelta(minutes=settings.escalation.ack_deadline_minutes)
        # the volunteer now holds it; the old assignee no longer may act, the volunteer may accept
        assert allowed_actions(s, task, _v(ids["grid"])) == []
        assert perform(s, task_id=ids["task"], action="accept", actor=_v(ids["vol"]), now=late).state == "acknowledged"


def test_reassign_hands_over_to_the_supervisor_and_admin_may_act(db, settings):
    with db.session() as s:
        ids = _setup(s, settings)
        r = perform(s, task_id=ids["task"], action="reassign", actor=_v(ids["grid"], "telegram"), now=NOW)
        assert r.handed_to == [ids["lead"]] and "周组长" in r.message
        task = s.get(Task, ids["task"])
        assert task.assignee_id == ids["lead"] and "telegram 转派" in task.events[-1].note
        admin = Actor("staff", "admin", "dashboard", admin=True)
        assert "assign" in allowed_actions(s, task, admin)
        perform(s, task_id=ids["task"], action="assign", actor=admin, target_id=ids["grid"], now=NOW)
        assert task.assignee_id == ids["grid"] and task.events[-1].actor == "staff:admin"
