"""What people read is Chinese and in their time (issue #17.8): the dashboard, the printed form
(PDF and XLSX), a visitor's task card and ``tanfang tasks`` show no internal code (intent names,
grade reasons, outcomes, states) and no UTC time. An urgent answer goes the real way: graded
reasons → ``escalate_grade`` → a P1 task; the check-in ends with outcome ``urgent``."""

from __future__ import annotations

import datetime as dt
import io
import re
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import select

from bot.cards import task_card
from core import labels
from core.checkin import CheckInService
from core.escalation import escalate_grade
from core.ports import Grade
from data.models import Elder, Task, Visit
from tests.dashboard_support import build_users, logged_in

# internal codes a person must never see (ASCII intent names, outcomes, states, risks, reason tags)
CODE = re.compile(r"(?<![A-Za-z_])(urgent_[a-z_]+|report_[a-z_]+|answer_[a-z_]+|complete|incomplete|handover|"
                  r"reschedule|wrong_person|in_progress|acknowledged|urgent|concern|cancelled|visitor:\d+|None)"
                  r"(?![A-Za-z_])|规则:|意图:|回答:|UTC")
SAID_AT = dt.datetime(2026, 11, 28, 1, 15)  # 09:15 in Shanghai; the task is due 2 h later: 11:15 (03:15 UTC)
LEGACY_TITLE = "紧急：刘长山 — 规则:摔倒、意图:urgent_fall(1.00)"  # how titles were written before


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)


def visible(html: str) -> str:
    p = _Text()
    p.feed(html)
    return " ".join(p.parts)


def codes(text: str) -> list[str]:
    return [m.group(0) for m in CODE.finditer(text)]


@pytest.fixture
def urgent(sqlite_app):
    app = sqlite_app
    with app.db.session() as s:
        ids = build_users(s)
        elder = s.get(Elder, ids["e"])  # 刘长山, 兰考县/谷营镇/东村
        visit = Visit(elder_id=elder.id, seq=3, method="phone", visit_date=SAID_AT.date(), status="in_progress",
                      started_at=SAID_AT)
        s.add(visit)
        s.flush()
        grade = Grade("urgent", "health", ("规则:摔倒", "意图:urgent_fall(1.00)"))
        [task] = escalate_grade(s, app.settings, elder=elder, visit=visit, grade=grade, text="我在院里摔倒了，起不来",
                                now=SAID_AT)
        s.add(Task(elder_id=elder.id, kind="urgent", priority=1, state="acknowledged", title=LEGACY_TITLE,
                   deadline=task.deadline, created_at=SAID_AT))
        ids.update(visit=visit.id, task=task.id)
    CheckInService(app, dialog=None).finish(ids["visit"], outcome="urgent")  # writes 结束：urgent
    return app, ids


def test_the_stored_values_stay_internal(urgent):
    app, ids = urgent
    with app.db.session() as s:
        assert s.get(Visit, ids["visit"]).suggested_care == "结束：urgent"  # the database keeps the code
        task = s.get(Task, ids["task"])
        assert task.deadline == dt.datetime(2026, 11, 28, 3, 15) and task.title == "紧急：刘长山 — 摔倒"


def test_dashboard_pages(urgent):
    app, ids = urgent
    c = logged_in(app, "lankao")
    home = visible(c.get("/dashboard/?month=2026-11").text)
    assert "刘长山" in home and "摔倒" in home and "11-28 11:15" in home
    assert "03:15" not in home and codes(home) == []
    page = visible(c.get(f"/dashboard/elders/{ids['e']}").text)
    assert "期限 2026-11-28 11:15" in page and "未完成" in page
    assert "03:15" not in page and codes(page) == []


def test_printed_form_pdf_and_xlsx(urgent):
    app, ids = urgent
    c = logged_in(app, "lankao")
    pdf = "".join(p.extract_text() for p in PdfReader(io.BytesIO(
        c.get(f"/dashboard/export/form/{ids['visit']}.pdf").content)).pages).replace("\n", "")
    assert "结束：紧急情况" in pdf and codes(pdf) == []
    ws = load_workbook(io.BytesIO(c.get(f"/dashboard/export/form/{ids['visit']}.xlsx").content)).active
    cells = " ".join(str(v) for row in ws.iter_rows(values_only=True) for v in row if v is not None)
    assert "结束：紧急情况" in cells and codes(cells) == []


def test_task_card_of_the_visitor(urgent):
    app, ids = urgent
    with app.db.session() as s:
        for task in s.scalars(select(Task).where(Task.elder_id == ids["e"], Task.kind == "urgent")):
            text, _buttons = task_card(app.settings, task)
            assert "摔倒" in text and codes(text) == [], text
            if task.deadline == dt.datetime(2026, 11, 28, 3, 15):
                assert "11月28日 11:15" in text and "03:15" not in text


def test_tasks_cli_prints_local_times_and_words(urgent, tmp_path):
    app, ids = urgent
    from tanfang.cli import cli

    env = {"TANFANG_DATA_DIR": str(tmp_path / "var"), "TANFANG_DATABASE_URL": app.db.url}
    runner = CliRunner(env=env)
    listed = runner.invoke(cli, ["tasks", "list", "--elder", str(ids["e"])])
    shown = runner.invoke(cli, ["tasks", "show", str(ids["task"])])
    for res in (listed, shown):
        assert res.exit_code == 0, res.output
        assert "2026-11-28 11:15" in res.output and "03:15" not in res.output
        assert codes(res.output) == [], res.output
    assert "创建 新建→待处理" in shown.output and "系统" in shown.output


REASONS_IN_WORDS = {  # a reason as the record keeps it -> as a person reads it
    "规则:摔倒": "摔倒",
    "意图:urgent_gas_leak(0.91)": "燃气泄漏",
    "意图:report_lonely(0.55)": "孤独",
    "回答:mobility=worse": "行动及反应：较差",
}


@pytest.mark.parametrize("raw, shown", REASONS_IN_WORDS.items())
def test_reasons_in_words(raw, shown):
    assert labels.reason(raw) == shown


def test_every_dialog_intent_and_outcome_has_words():
    import yaml

    from tests.conftest import REPO

    domain = yaml.safe_load((REPO / "dialogs" / "domain.yml").read_text(encoding="utf-8"))
    assert set(domain["intents"]) <= set(labels.INTENT_LABELS)
    assert set(domain["slots"]["checkin_outcome"]["values"]) <= set(labels.OUTCOME_LABELS)
    assert labels.label("outcome", "something_new") == "其他"  # an unknown code never leaks
