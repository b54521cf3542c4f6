"""Roster parsing, validation, import and export — on SQLite and PostgreSQL (``db`` fixture)."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from data import idcard, roster
from data.models import Base, Elder, FamilyMember, HouseholdMember

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
SAMPLE = SAMPLES / "roster_sample.csv"


def sample_rows() -> list[list[str]]:
    with open(SAMPLE, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def write_rows(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def table_counts(db) -> dict[str, int]:
    with db.session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def do_import(db, path, **kw):
    parsed = roster.parse_file(path, **kw)
    assert parsed.errors == []
    with db.session() as s:
        return roster.import_records(s, parsed.records)


def test_sample_is_complete_and_valid():
    parsed = roster.parse_file(SAMPLE)
    assert parsed.errors == [] and parsed.encoding == "utf-8-sig"
    recs = parsed.records
    assert 25 <= len(recs) <= 40
    for attr in roster.CATEGORY_HEADERS:  # all six categories
        assert any(r.elder[attr] for r in recs), attr
    assert sum(1 for r in recs if sum(r.elder[a] for a in roster.CATEGORY_HEADERS) > 1) >= 3
    ages = [idcard.age_on(r.elder["id_number"], dt.date(2026, 11, 28)) for r in recs]
    assert min(ages) >= 62 and max(ages) <= 95 and max(ages) - min(ages) > 25
    assert all(r.contacts for r in recs) and any(len(r.contacts) == 2 for r in recs)
    assert all(r.household for r in recs) and any(len(r.household) >= 3 for r in recs)
    assert any(r.family for r in recs) and any(r.elder["consent_share_family"] for r in recs)
    assert any(r.elder["phone"] is None for r in recs)  # some elders have no phone of their own
    assert any(len(r.assistance) == 2 for r in recs)
    assert {r.elder["preferred_channel"] for r in recs} == {"phone", "telegram", "in_person"}


def test_round_trip_csv_and_xlsx(db, tmp_path):
    original = roster.parse_file(SAMPLE).records
    res = do_import(db, SAMPLE)
    assert (res.created, res.updated) == (30, 0)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(HouseholdMember)) == sum(len(r.household) for r in original)
        assert roster.records_from_db(s)  # stored rows re-validate
        csv_path = tmp_path / "export.csv"
        xlsx_path = tmp_path / "export.xlsx"
        assert roster.export_file(s, csv_path) == 30
        assert roster.export_file(s, xlsx_path) == 30
    for path in (csv_path, xlsx_path):
        again = roster.parse_file(path)
        assert again.errors == []
        assert [r.comparable() for r in again.records] == [r.comparable() for r in original], path.suffix
    # the XLSX stores ID numbers as text cells (no 4.10225E+17)
    ws = openpyxl.load_workbook(xlsx_path).active
    id_col = [c.value for c in ws[1]].index("公民身份号码") + 1
    assert isinstance(ws.cell(2, id_col).value, str) and len(ws.cell(2, id_col).value) == 18
    # importing the export again changes nothing but counts as updates
    before = table_counts(db)
    res = do_import(db, csv_path)
    assert (res.created, res.updated) == (0, 30)
    assert table_counts(db) == before


def test_reimport_updates_by_id_number(db, tmp_path):
    do_import(db, SAMPLE)
    rows = sample_rows()
    h = rows[0]
    r = rows[2]  # elder on spreadsheet row 3
    idn = r[h.index("公民身份号码")]
    r[h.index("联系电话")] = "13700001111"
    r[h.index("紧急联系人")] = "新联系人"
    r[h.index("紧急联系人电话")] = "13700002222"
    for c in roster.household_headers(2):
        r[h.index(c)] = ""
    r[h.index("家庭月收入(元)")] = "3000"
    with db.session() as s:
        elder = s.scalar(select(Elder).where(Elder.id_number_hash == idn))
        elder.telegram_chat_id = 4242  # not a roster column: must survive re-import
        elder_id = elder.id
    res = do_import(db, write_rows(tmp_path / "v2.csv", [h, r]))
    assert (res.created, res.updated) == (0, 1)
    with db.session() as s:
        e = s.get(Elder, elder_id)
        assert e.phone == "+8613700001111" and e.telegram_chat_id == 4242
        assert [(c.name, c.phone) for c in e.emergency_contacts][0] == ("新联系人", "+8613700002222")
        assert len(e.household_members) == 1
        assert e.living_conditions.household_monthly_income == Decimal("3000.00")
        assert s.scalar(select(func.count()).select_from(Elder)) == 30


def test_family_member_telegram_link_survives_reimport(db):
    do_import(db, SAMPLE)
    with db.session() as s:
        fm = s.scalars(select(FamilyMember).order_by(FamilyMember.id)).first()
        fm.telegram_user_id = 777
        name, elder_id = fm.name, fm.elder_id
    do_import(db, SAMPLE)
    with db.session() as s:
        fm = s.scalar(select(FamilyMember).where(FamilyMember.elder_id == elder_id, FamilyMember.name == name))
        assert fm.telegram_user_id == 777


def _errors(path) -> list[str]:
    return [str(e) for e in roster.parse_file(path).errors]


def test_wrong_checksum_exact_row(tmp_path):
    rows = sample_rows()
    col = rows[0].index("公民身份号码")
    good = rows[4][col]  # spreadsheet row 5
    wrong = "0" if good[-1] != "0" else "1"
    rows[4][col] = good[:-1] + wrong
    assert _errors(write_rows(tmp_path / "bad.csv", rows)) == [f"第5行 公民身份号码: 校验码错误（应为{good[-1]}）"]


def test_missing_required_column_is_one_error(tmp_path):
    rows = sample_rows()
    col = rows[0].index("紧急联系人电话")
    rows = [r[:col] + r[col + 1:] for r in rows]
    assert _errors(write_rows(tmp_path / "bad.csv", rows)) == ["第1行 紧急联系人电话: 缺少必填列"]


def test_duplicate_id_in_file(tmp_path):
    rows = sample_rows()
    col = rows[0].index("公民身份号码")
    sex = rows[0].index("性别")
    rows[8][col] = rows[2][col]
    rows[8][sex] = rows[2][sex]
    assert _errors(write_rows(tmp_path / "bad.csv", rows)) == ["第9行 公民身份号码: 与第3行重复"]


def test_gbk_file_with_errors_and_valid(db, tmp_path):
    rows = sample_rows()
    good = write_rows(tmp_path / "gbk.csv", rows, encoding="gbk")
    assert roster.parse_file(good).encoding == "gb18030"
    h = rows[0]
    rows[6][h.index("紧急联系人电话")] = "2234567"
    rows[11][h.index("是否独居")] = "可能"
    errs = _errors(write_rows(tmp_path / "gbk_bad.csv", rows, encoding="gbk"))
    assert errs == ["第7行 紧急联系人电话: 固定电话请加区号（如0371-1234567）",
                    "第12行 是否独居: 应为 是/否（实为“可能”）"]
    res = do_import(db, good)
    assert res.created == 30
    with db.session() as s:
        names = set(s.scalars(select(Elder.name)))
    assert names == {r.elder["name"] for r in roster.parse_file(SAMPLE).records}


def test_row_rules(tmp_path):
    h = roster.headers(2)
    idn = idcard.make_id("410225", dt.date(1940, 5, 6), 21, "F")

    def row(**over):
        base = {"县(市、区)": "兰考县", "乡镇(街道)": "城关镇", "村(居)": "幸福村", "姓名": "测试", "公民身份号码": idn,
                "紧急联系人": "甲", "紧急联系人电话": "13800000000", "是否独居": "√"}
        base.update(over)
        return [base.get(c, "") for c in h]

    rows = [h, row(),  # 2: valid, flag √
            row(**{"性别": "男"}),  # 3
            row(**{"公民身份号码": "", "姓名": ""}),  # 4
            row(**{"是否独居": "否"}),  # 5: no category
            row(**{"首选联系时间": "9点"}),  # 6
            row(**{"帮扶单位": "外星人"}),  # 7
            row(**{"公民身份号码": "4.10225E+17"}),  # 8
            row(**{"家庭成员1公民身份号码": idn[:-1] + ("0" if idn[-1] != "0" else "1")}),  # 9
            row(**{"紧急联系人": "", "紧急联系人电话": ""}),  # 10
            ]
    # rows 3.. reuse the same ID: the duplicate check only applies to otherwise valid rows
    parsed = roster.parse_file(write_rows(tmp_path / "r.csv", rows))
    got = {(e.row, e.column): e.reason for e in parsed.errors}
    assert got[(3, "性别")] == "与公民身份号码不符（号码显示为女）"
    assert got[(4, "姓名")] == "不能为空" and got[(4, "公民身份号码")] == "不能为空"
    assert (5, "服务对象类别") in got
    assert got[(6, "首选联系时间")].startswith("应为 时:分-时:分")
    assert got[(7, "帮扶单位")].startswith("“外星人”不是表中的帮扶单位类型")
    assert "科学计数法" in got[(8, "公民身份号码")]
    assert got[(9, "家庭成员1公民身份号码")].startswith("校验码错误")
    assert got[(10, "紧急联系人")].startswith("不能为空")
    assert len(parsed.records) == 1 and parsed.records[0].elder["living_alone"] is True
    assert parsed.records[0].elder["sex"] == "F" and parsed.records[0].elder["birth_date"] == dt.date(1940, 5, 6)


@pytest.mark.parametrize("text,value", [("是", True), ("Y", True), ("1", True), ("√", True), ("否", False),
                                        ("N", False), ("0", False), ("", None)])
def test_flags(text, value):
    assert roster.parse_flag(text) is value


def test_xlsx_numeric_cells(tmp_path):
    """Office software may store phones as numbers; short numeric cells still import."""
    rows = sample_rows()[:3]
    wb = openpyxl.Workbook()
    ws = wb.active
    ph = rows[0].index("紧急联系人电话")
    for r in rows:
        ws.append([int(v) if i == ph and v.isdigit() else v for i, v in enumerate(r)])
    wb.save(tmp_path / "n.xlsx")
    parsed = roster.parse_file(tmp_path / "n.xlsx")
    assert parsed.errors == [] and len(parsed.records) == 2
    assert parsed.records[0].contacts[0]["phone"] == "+86" + rows[1][ph]  # stored in E.164


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(roster.RosterError, match="不支持"):
        roster.parse_file(write_rows(tmp_path / "a.xls", [["x"]]))
    with pytest.raises(roster.RosterError, match="文件不存在"):
        roster.parse_file(tmp_path / "none.csv")
