"""Task lifecycle on SQLite and PostgreSQL: allowed moves, history, care record, ordering."""

from __future__ import annotations

import datetime as dt

import pytest

from core.tasks import TaskStateError, close_task, create_task, open_tasks_for, reassign, transition
from data.models import CareService, Task
from tests.helpers import make_elder, make_visitor

NOW = dt.datetime(2026, 11, 3, 2, 0)


def test_lifecycle_history_and_care_record(db):
    with db.session() as s:
        elder = make_elder(s)
        v1 = make_visitor(s)
        v2 = make_visitor(s, name="张社工", role="social_worker")
        task = create_task(s, elder_id=elder.id, kind="concern", priority=2, title="血压偏高，请家庭医生跟进",
                           dimension="health", assignee_id=v1.id, deadline=NOW + dt.timedelta(hours=48), now=NOW)
        transition(s, task, "acknowledged", actor=f"visitor:{v1.id}", now=NOW + dt.timedelta(minutes=3))
        reassign(s, task, v2.id, actor="staff:主管", note="换人", now=NOW + dt.timedelta(minutes=5))
        transition(s, task, "in_progress", actor=f"visitor:{v2.id}", now=NOW + dt.timedelta(minutes=6))
        task, care = close_task(s, task, actor=f"visitor:{v2.id}", outcome="已上门测量血压",
                                description="上门测量血压并送药", satisfaction="satisfied", provider_id=v2.id,
                                in_person=True, now=NOW + dt.timedelta(hours=3))
        task_id, elder_id = task.id, elder.id
        # a second task closed: care seq continues for the same elder
        t2 = create_task(s, elder_id=elder.id, kind="visit", priority=3, title="上门", now=NOW)
        _, care2 = close_task(s, t2, actor="system", outcome="已探访", now=NOW)
        assert (care.seq, care2.seq) == (1, 2)
    with db.session() as s:
        task = s.get(Task, task_id)
        assert task.state == "done" and task.outcome == "已上门测量血压"
        assert task.closed_at == NOW + dt.timedelta(hours=3)
        assert task.assignee_id == v2.id
        assert [e.action for e in task.events] == ["created", "acknowledged", "reassigned", "started", "done"]
        assert [(e.from_state, e.to_state) for e in task.events][1] == ("open", "acknowledged")
        care = s.query(CareService).filter_by(elder_id=elder_id, seq=1).one()
        assert care.task_id == task_id and care.in_person and care.provider_name == "张社工"
        assert care.satisfaction == "satisfied" and care.service_date == dt.date(2026, 11, 3)


@pytest.mark.parametrize("path", [("done", "in_progress"), ("cancelled", "open"), ("in_progress", "acknowledged")])
def test_forbidden_moves_raise_chinese_error(db, path):
    with db.session() as s:
        elder = make_elder(s)
        task = create_task(s, elder_id=elder.id, kind="callback", priority=3, title="回拨", now=NOW)
        first, second = path
        transition(s, task, first, actor="system", now=NOW)
        with pytest.raises(TaskStateError, match="不能改为"):
            transition(s, task, second, actor="system", now=NOW)
        assert task.state == first


def test_close_twice_and_bad_input_refused(db):
    with db.session() as s:
        elder = make_elder(s)
        task = create_task(s, elder_id=elder.id, kind="visit", priority=3, title="上门", now=NOW)
        with pytest.raises(ValueError, match="处理结果"):
            close_task(s, task, actor="system", outcome=" ")
        with pytest.raises(ValueError, match="满意度"):
            close_task(s, task, actor="system", outcome="ok", satisfaction="great")
        assert task.state == "open"
        close_task(s, task, actor="system", outcome="ok", record_care=False)
        with pytest.raises(TaskStateError):
            close_task(s, task, actor="system", outcome="again")
        with pytest.raises(ValueError):
            create_task(s, elder_id=elder.id, kind="nonsense", priority=2, title="x")
        with pytest.raises(TaskStateError):
            reassign(s, task, None, actor="system")
        assert s.query(CareService).count() == 0


def test_open_tasks_for_orders_by_priority_then_deadline(db):
    with db.session() as s:
        elder = make_elder(s)
        v = make_visitor(s)
        other = make_visitor(s, name="别人")
        mk = lambda p, h, **kw: create_task(s, elder_id=elder.id, kind="visit", priority=p, title=f"p{p} {h}",
                                            assignee_id=kw.get("who", v.id),
                                            deadline=None if h is None else NOW + dt.timedelta(hours=h), now=NOW)
        a = mk(3, 1)
        b = mk(2, None)
        c = mk(2, 5)
        d = mk(1, 9)
        e = mk(2, 2)
        mk(1, 1, who=other.id)
        done = mk(1, 0)
        transition(s, done, "done", actor="system", now=NOW)
        ids = [t.id for t in open_tasks_for(s, visitor_id=v.id)]
        assert ids == [d.id, e.id, c.id, b.id, a.id]


# ---- CLI ------------------------------------------------------------------------------------
def _cli_env(tmp_path):
    return {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}


def test_tasks_cli(tmp_path):
    import json

    from click.testing import CliRunner

    from tanfang.cli import cli
    from data.db import Database

    env = _cli_env(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'var' / 'tanfang.db'}")
    db.upgrade()
    with db.session() as s:
        elder = make_elder(s)
        v = make_visitor(s)
        urgent = create_task(s, elder_id=elder.id, kind="urgent", priority=1, title="紧急：摔倒", assignee_id=v.id,
                             ack_deadline=NOW, now=NOW)
        routine = create_task(s, elder_id=elder.id, kind="visit", priority=3, title="上门", now=NOW)
        done = create_task(s, elder_id=elder.id, kind="callback", priority=3, title="回拨", now=NOW)
        transition(s, done, "done", actor="system", now=NOW)
        ids = (urgent.id, routine.id, done.id)
    db.dispose()
    run = lambda *args: CliRunner().invoke(cli, list(args), env=env)
    res = run("tasks", "list", "--json")
    assert res.exit_code == 0, res.output
    assert [t["id"] for t in json.loads(res.output)] == [ids[0], ids[1], ids[2]]
    res = run("tasks", "list", "--open", "--elder", "1", "--json")
    assert [t["id"] for t in json.loads(res.output)] == [ids[0], ids[1]]
    assert "紧急：摔倒" in run("tasks", "list").output
    res = run("tasks", "ack", str(ids[0]), "--by", "visitor:1")
    assert res.exit_code == 0 and "已确认" in res.output
    res = run("tasks", "done", str(ids[0]), "--outcome", "已送医", "--in-person", "--satisfaction", "satisfied")
    assert res.exit_code == 0 and "关爱服务记录第 1 次" in res.output
    shown = json.loads(run("tasks", "show", str(ids[0]), "--json").output)
    assert shown["state"] == "done" and [e["action"] for e in shown["events"]] == ["created", "acknowledged", "done"]
    assert "历史" in run("tasks", "show", str(ids[0])).output
    bad = run("tasks", "done", str(ids[0]), "--outcome", "again")
    assert bad.exit_code == 1 and "不能改为" in bad.output
    missing = run("tasks", "show", "999")
    assert missing.exit_code == 1 and "没有编号为 999 的任务" in missing.output
