"""Emergency records, referrals and the workforce on SQLite and PostgreSQL: a P1 task closes only
with its 处置记录; the form of the visit where the elder fell states the event in Chinese; a need
is referred and moved forward; volunteers' hours and visitors' workload; a supervisor assigns."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select

from core import forms, referrals, workforce
from core.escalation import escalate_grade
from core.ports import Grade
from core.reports import visit_report
from core.task_actions import ActionRefused, Actor, CloseDetails, perform
from data import repo
from data.models import EmergencyRecord, Referral, Task, TaskEvent, Visit, VisitTurn
from tanfang.cli import cli
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 2)  # 10:02 in Henan
CODE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*\b")  # an internal code: urgent, called_120, urgent_fall


def _fall(s, settings):
    """A phone check-in where the elder said she fell: the visit, her words, the P1 task."""
    boss = make_visitor(s, name="林主任", role="supervisor", village=None)
    grid = make_visitor(s, name="马丽", phone="13837800101", supervisor_id=boss.id)
    vol = make_visitor(s, name="赵小雨", role="volunteer", phone="15137800103")
    elder = make_elder(s, name="王玉珍", responsible_visitor_id=grid.id)
    visit = Visit(elder_id=elder.id, seq=1, method="phone", visit_date=NOW.date(), started_at=NOW, status="complete",
                  risk="urgent", suggested_care="结束：urgent")
    s.add(visit)
    s.flush()
    s.add(VisitTurn(visit_id=visit.id, seq=1, at=NOW, speaker="elder", text="我早上摔了一跤，起不来", risk="urgent",
                    intent="urgent_fall", reasons=["规则:摔倒", "意图:urgent_fall(1.00)"]))
    [task] = escalate_grade(s, settings, elder=elder, visit=visit, grade=Grade("urgent", "health", ("摔倒",)),
                            text="我早上摔了一跤，起不来", now=NOW)
    return {"boss": boss.id, "grid": grid.id, "vol": vol.id, "elder": elder.id, "visit": visit.id, "task": task.id}


def _v(vid):
    return Actor("visitor", vid, "wecom")


def test_an_urgent_task_closes_only_with_its_emergency_record(db, settings):
    with db.session() as s:
        ids = _fall(s, settings)
        perform(s, task_id=ids["task"], action="accept", actor=_v(ids["grid"]), now=NOW + dt.timedelta(minutes=3))
        with pytest.raises(ActionRefused, match="处置记录"):
            perform(s, task_id=ids["task"], action="close", actor=_v(ids["grid"]), description="已处理",
                    satisfaction="satisfied", now=NOW + dt.timedelta(minutes=40))
        assert s.get(Task, ids["task"]).state == "acknowledged"
        r = perform(s, task_id=ids["task"], action="close", actor=_v(ids["grid"]),
                    description="拨打120，联系了儿子，救护车送县医院", satisfaction="satisfied",
                    now=NOW + dt.timedelta(minutes=40))
        assert "处置记录" in r.message
    with db.session() as s:
        rec = s.scalars(select(EmergencyRecord)).one()
        assert [a["key"] for a in rec.actions] == ["called_120", "family_reached", "escorted_hospital"]
        assert (rec.handler_name, rec.task_id, rec.recorded_by) == ("马丽", ids["task"], f"visitor:{ids['grid']}")


def test_the_form_of_a_fall_states_the_event_in_chinese(db, settings, tmp_path):
    with db.session() as s:
        ids = _fall(s, settings)
        perform(s, task_id=ids["task"], action="accept", actor=_v(ids["grid"]), now=NOW + dt.timedelta(minutes=3))
        perform(s, task_id=ids["task"], action="close", actor=_v(ids["grid"]), description="扶起老人，联系了儿子",
                satisfaction="satisfied", details=CloseDetails(handling=[
                    {"key": "called_120", "at": "2026-11-03T02:06"}, "family_reached", "escorted_hospital"]),
                now=NOW + dt.timedelta(minutes=40))
        view = forms.build_view(s, ids["visit"], settings)
    said, told, task, record = view.emergency
    assert said == "老人10:02说：「我早上摔了一跤，起不来」（定级：紧急；摔倒）"
    assert told.startswith("已通知：紧急联系人王建国（儿子） 短信 10:02") and "探访员马丽 短信 10:02" in told
    assert task == f"任务：#{ids['task']} 紧急处置（P1 紧急），负责人马丽，10:02派出，10:05确认，状态：已完成"
    assert record == "处置记录（11月3日 10:42，马丽）：拨打120急救（10:06）、联系上家属、送医或陪同就医；说明：扶起老人，联系了儿子"
    assert not CODE.findall(" ".join(view.emergency))  # no intent names, no English states
    pdf = forms.write_pdf([view], tmp_path / "fall.pdf")
    text = "".join(p.extract_text() for p in PdfReader(str(pdf)).pages).replace("\n", "")
    assert "紧急事件及处置" in text and "我早上摔了一跤，起不来" in text and "拨打120急救" in text
    ws = load_workbook(forms.write_xlsx([view], tmp_path / "fall.xlsx")).active
    assert any(r[0].value == "紧急事件及处置" and "处置记录" in r[1].value for r in ws.iter_rows())


def test_cli_tasks_done_asks_an_urgent_task_for_its_record_and_the_report_counts_it(db, settings, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], env=env)  # noqa: E731
    with db.session() as s:
        ids = _fall(s, settings)
    refused = run("tasks", "done", ids["task"], "--outcome", "已处理")
    assert refused.exit_code == 1 and "处置记录" in refused.output
    done = run("tasks", "done", ids["task"], "--outcome", "老人已送医", "--handled", "called_120@10:05",
               "--handled", "联系上家属", "--provider", ids["grid"], "--minutes", "50")
    assert done.exit_code == 0 and "处置记录已存档" in done.output, done.output
    with db.session() as s:
        rec = s.scalars(select(EmergencyRecord)).one()
        assert rec.actions == [{"key": "called_120", "at": "2026-11-03T02:05"}, {"key": "family_reached", "at": None}]
        assert s.get(Task, ids["task"]).service_minutes == 50
        rec.handled_at = NOW  # the report counts records by the month they were filed in
        total = visit_report(s, "2026-11", as_of=NOW + dt.timedelta(days=1), settings=settings)["total"]
    assert total["emergency_records"] == 1


def test_a_need_is_referred_from_its_task_and_moves_forward_only(db, settings):
    with db.session() as s:
        ids = _fall(s, settings)
        with pytest.raises(ActionRefused, match="兰考县社会工作服务站"):
            perform(s, task_id=ids["task"], action="refer", actor=_v(ids["grid"]), settings=settings,
                    referral_type="social_worker", provider="随便一家", description="需要陪伴", now=NOW)
        with pytest.raises(ActionRefused, match="不是您的任务"):
            perform(s, task_id=ids["task"], action="refer", actor=_v(ids["vol"]), settings=settings,
                    referral_type="social_worker", provider="兰考县社会工作服务站", now=NOW)  # not her task
        with pytest.raises(ActionRefused, match="转介类型"):
            perform(s, task_id=ids["task"], action="refer", actor=_v(ids["grid"]), settings=settings,
                    referral_type="lawyer", provider="某律所", description="要打官司", now=NOW)
        r = perform(s, task_id=ids["task"], action="refer", actor=_v(ids["grid"]), settings=settings,
                    referral_type="社会工作者", provider="兰考县社会工作服务站", description="摔倒后需要康复和陪伴",
                    now=NOW + dt.timedelta(minutes=50))
        assert "转介编号 #1" in r.message and r.state == "open"
        ref = s.get(Referral, 1)
        assert (ref.kind, ref.status, ref.visit_id, ref.submitted_by) == (
            "social_worker", "submitted", ids["visit"], f"visitor:{ids['grid']}")
        assert s.scalars(select(TaskEvent).where(TaskEvent.action == "referred")).one().task_id == ids["task"]
        referrals.update(s, ref, status="accepted", by="周敏", now=NOW + dt.timedelta(days=1))
        with pytest.raises(referrals.ReferralError, match="不能改为「已提交」"):
            referrals.update(s, ref, status="submitted", by="周敏")
        referrals.update(s, ref, status="已服务", by="周敏", note="每周上门两次", now=NOW + dt.timedelta(days=5))
        view = forms.build_view(s, ids["visit"], settings)
    assert view.referrals == ["转介 #1：社会工作者 — 兰考县社会工作服务站；需求：摔倒后需要康复和陪伴；状态：已服务（2026-11-08 周敏）"]


def test_the_report_counts_referrals_by_type_and_those_open_too_long(db, settings):
    as_of = dt.datetime(2026, 11, 28, 4, 0)
    with db.session() as s:
        ids = _fall(s, settings)
        elder = s.get(Task, ids["task"]).elder
        for kind, provider, days_ago, status in (("social_worker", "兰考县社会工作服务站", 3, "submitted"),
                                                 ("benefits_office", "城关镇社会救助经办窗口", 5, "closed"),
                                                 ("benefits_office", "兰考县残疾人联合会", 40, "accepted")):
            ref = referrals.create(s, settings, elder=elder, kind=kind, provider=provider, need="需要帮助",
                                   by="cli:test", now=as_of - dt.timedelta(days=days_ago))
            if status != "submitted":
                referrals.update(s, ref, status=status, by="cli:test", now=as_of - dt.timedelta(days=1))
        total = visit_report(s, "2026-11", as_of=as_of, settings=settings)["total"]
        late = referrals.list_referrals(s, open_over_days=30, as_of=as_of)
    assert total["referrals_by_type"] == {"救助和福利经办机构": 1, "社会工作者": 1}  # the 40-day one is October's
    assert total["referrals_open_late"] == 1 and [r.provider for r in late] == ["兰考县残疾人联合会"]


def test_the_plans_role_names_are_accepted():
    assert [repo.visitor_role(x) for x in ("网格员", "社工", "志愿者", "村医", "物业", "家庭医生", "社会工作者")] == [
        "grid_worker", "social_worker", "volunteer", "family_doctor", "property_staff", "family_doctor",
        "social_worker"]


def _closed(s, settings, ids, *, vid, minutes=None, arrive=True, day=3):
    """A concern task of the elder, held and closed by ``vid`` on November ``day``."""
    start = dt.datetime(2026, 11, day, 1, 0)
    [task] = escalate_grade(s, settings, elder=s.get(Task, ids["task"]).elder, visit=None,
                            grade=Grade("concern", f"d{day}{vid}{minutes}"[:16], ()), text="腿疼", now=start)
    task.assignee_id = vid
    if arrive:
        perform(s, task_id=task.id, action="arrived", actor=_v(vid), now=start + dt.timedelta(minutes=10))
    perform(s, task_id=task.id, action="close", actor=_v(vid), description="陪老人去卫生院", satisfaction="satisfied",
            details=CloseDetails(minutes=minutes), now=start + dt.timedelta(minutes=55))
    return task


def test_volunteer_hours_come_from_closed_tasks(db, settings, tmp_path):
    with db.session() as s:
        ids = _fall(s, settings)
        _closed(s, settings, ids, vid=ids["vol"])  # arrival -> done: 45 minutes
        _closed(s, settings, ids, vid=ids["vol"], minutes=90, day=4)  # entered
        _closed(s, settings, ids, vid=ids["vol"], arrive=False, day=5)  # no duration: listed, not guessed
        _closed(s, settings, ids, vid=ids["grid"], day=6)  # not a volunteer
        rep = workforce.timebank(s, settings, "2026-11")
        october = workforce.timebank(s, settings, "2026-10")
    [row] = rep["rows"]
    assert (row["name"], row["tasks"], row["minutes"], row["hours"]) == ("赵小雨", 3, 135, 2.25)
    assert row["without_duration"] == 1
    assert october["rows"][0]["tasks"] == 0
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    out = tmp_path / "timebank.xlsx"
    r = CliRunner().invoke(cli, ["report", "timebank", "--month", "2026-11", "--xlsx", str(out), "--json"], env=env)
    assert r.exit_code == 0 and json.loads(r.output)["total"]["minutes"] == 135, r.output
    cells = [[c.value for c in row] for row in load_workbook(out).active.iter_rows()]
    assert cells[1][:4] == ["姓名", "角色", "地区", "完成任务"] and cells[2][0] == "赵小雨" and cells[-1][0] == "合计"


def test_workload_per_visitor(db, settings):
    with db.session() as s:
        ids = _fall(s, settings)  # an open P1 for 马丽
        _closed(s, settings, ids, vid=ids["grid"])
        [concern] = escalate_grade(s, settings, elder=s.get(Task, ids["task"]).elder, visit=None,
                                   grade=Grade("concern", "economy", ()), text="钱不够用", now=NOW)
        concern.assignee_id = ids["grid"]
        rows = {r["name"]: r for r in workforce.workload(s, settings, as_of=NOW + dt.timedelta(days=3))}
    grid = rows["马丽"]
    assert (grid["open_p1"], grid["open_p2"], grid["overdue"]) == (1, 1, 2)
    assert (grid["closed_this_month"], grid["minutes_this_month"]) == (1, 45)
    assert grid["workforce"] == "网格员" and rows["赵小雨"]["workforce"] == "志愿者"


def test_a_supervisor_assigns_a_task_from_the_cli(db, settings, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], env=env)  # noqa: E731
    with db.session() as s:
        ids = _fall(s, settings)
    stranger = run("tasks", "assign", ids["task"], "--to", "赵小雨", "--by", ids["vol"])
    assert stranger.exit_code == 1 and "不是您的任务" in stranger.output
    r = run("tasks", "assign", ids["task"], "--to", "赵小雨", "--by", "林主任")
    assert r.exit_code == 0 and "已指派给 赵小雨" in r.output, r.output
    back = run("tasks", "assign", ids["task"], "--to", ids["grid"], "--admin")
    assert back.exit_code == 0, back.output
    with db.session() as s:
        task = s.get(Task, ids["task"])
        notes = [e.note for e in task.events if e.action == "reassigned"]
    assert task.assignee_id == ids["grid"] and len(notes) == 2 and "主管指派" in notes[0]


def test_cli_referrals_import_the_samples_and_list_them(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var")}
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], env=env)  # noqa: E731
    assert run("elders", "import", "data/samples/roster_sample.csv").exit_code == 0
    r = run("referrals", "import", "data/samples/referrals.csv")
    assert r.exit_code == 0 and "3条转介" in r.output, r.output
    rows = json.loads(run("referrals", "list", "--json").output)
    assert [x["status"] for x in rows] == ["已接收", "已服务", "已提交"]
    assert run("referrals", "update", rows[2]["id"], "--status", "accepted", "--by", "周敏").exit_code == 0
    bad = run("referrals", "update", rows[2]["id"], "--status", "submitted")
    assert bad.exit_code == 1 and "不能改为" in bad.output
    added = run("referrals", "add", "--elder", "410225196402011004", "--type", "service_provider",
                "--provider", "城关镇卫生院", "--need", "每月上门量血压")
    assert added.exit_code == 0 and "城关镇卫生院" in added.output
    assert len(json.loads(run("referrals", "list", "--open", "--json").output)) == 4  # 已服务 is still open
