"""``tanfang elders ...`` and ``tanfang visitors ...`` through click, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tanfang.cli import cli
from data import roster
from data.models import AuditLog, Elder, Visitor
from tests.test_roster import SAMPLE, SAMPLES, sample_rows, table_counts, write_rows


@pytest.fixture
def run(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var"),
           "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}

    def invoke(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], env=env)

    return invoke


def test_import_list_show_export_round_trip(run, db, tmp_path):
    r = run("elders", "import", SAMPLE)
    assert r.exit_code == 0, r.output
    assert "新增30人" in r.output
    out = tmp_path / "roster.xlsx"
    r = run("elders", "export", out)
    assert r.exit_code == 0 and "已导出30人" in r.output
    assert [x.comparable() for x in roster.parse_file(out).records] == \
           [x.comparable() for x in roster.parse_file(SAMPLE).records]
    with db.session() as s:
        actions = [a.action for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["import", "export"]


def test_list_masks_ids_and_phones(run, db):
    run("elders", "import", SAMPLE)
    text = run("elders", "list").output
    js = run("elders", "list", "--json")
    assert js.exit_code == 0
    rows = json.loads(js.output)
    assert len(rows) == 30 and all(isinstance(r["id"], int) for r in rows)
    with db.session() as s:
        elders = list(s.scalars(select(Elder)))
        secrets = [e.id_number for e in elders] + [e.phone for e in elders if e.phone]
        secrets += [c.phone for e in elders for c in e.emergency_contacts]
    for secret in secrets:
        assert secret not in text and secret not in js.output
    first = next(r for r in rows if r["name"] == elders[0].name and r["id"] == elders[0].id)
    assert first["id_number"] == elders[0].id_number[:4] + "*" * 10 + elders[0].id_number[-4:]
    assert "共30人" in text
    only = json.loads(run("elders", "list", "--json", "--category", "family_planning").output)
    assert 0 < len(only) < 30 and all("计划生育特殊家庭" in r["categories"] for r in only)


def test_show_masks_unless_reveal_and_audits(run, db):
    run("elders", "import", SAMPLE)
    with db.session() as s:
        e = s.scalars(select(Elder).where(Elder.phone.is_not(None)).order_by(Elder.id)).first()
        eid, idn, phone = e.id, e.id_number, e.phone
    masked = run("elders", "show", eid, "--json")
    data = json.loads(masked.output)
    assert data["id"] == eid and idn not in masked.output and phone not in masked.output
    assert data["emergency_contacts"] and data["household_members"] and "living_conditions" in data
    full = run("elders", "show", idn, "--reveal")
    assert full.exit_code == 0 and idn in full.output and phone in full.output
    with db.session() as s:
        rows = [(a.action, a.entity, a.entity_id, a.actor)
                for a in s.scalars(select(AuditLog).where(AuditLog.entity == "elder").order_by(AuditLog.id))]
    actor = f"cli:{getpass.getuser()}"  # who ran the command, as the operating system knows them
    assert rows == [("read", "elder", str(eid), actor), ("read_sensitive", "elder", str(eid), actor)]
    missing = run("elders", "show", "99999")
    assert missing.exit_code == 1 and "找不到老年人" in missing.output and "Traceback" not in missing.output


def _bad_files(tmp_path):
    rows = sample_rows()
    h = rows[0]
    idc = h.index("公民身份号码")
    # 1 wrong checksum on row 5 (and an edit that must not reach the database)
    r1 = [list(r) for r in rows]
    good = r1[4][idc]
    r1[4][idc] = good[:-1] + ("0" if good[-1] != "0" else "1")
    r1[2][h.index("详细地址")] = "改过的地址"
    # 2 GBK file with a bad phone on row 7
    r2 = [list(r) for r in rows]
    r2[6][h.index("紧急联系人电话")] = "2234567"
    # 3 missing required column
    r3 = [r[:h.index("村(居)")] + r[h.index("村(居)") + 1:] for r in rows]
    # 4 duplicate ID (row 9 repeats row 3)
    r4 = [list(r) for r in rows]
    r4[8][idc], r4[8][h.index("性别")] = r4[2][idc], r4[2][h.index("性别")]
    return [
        (write_rows(tmp_path / "checksum.csv", r1), f"第5行 公民身份号码: 校验码错误（应为{good[-1]}）"),
        (write_rows(tmp_path / "gbk.csv", r2, encoding="gbk"), "第7行 紧急联系人电话: 固定电话请加区号（如0371-1234567）"),
        (write_rows(tmp_path / "nocol.csv", r3), "第1行 村(居): 缺少必填列"),
        (write_rows(tmp_path / "dup.csv", r4), "第9行 公民身份号码: 与第3行重复"),
    ]


def test_bad_files_change_nothing(run, db, tmp_path):
    run("elders", "import", SAMPLE)
    before = table_counts(db)
    with db.session() as s:
        snapshot = [roster.elder_row(e) for e in roster.load_elders(s)]
    for path, expected in _bad_files(tmp_path):
        r = run("elders", "import", path)
        assert r.exit_code == 1, path
        lines = r.output.strip().splitlines()
        assert expected in lines, (path, r.output)
        assert lines[-1].startswith("Error: 导入失败") and lines[-1].endswith("未导入任何数据" if "nocol" in path.name
                                                                         else "只导入正确的行）")
        assert table_counts(db) == before, path
    with db.session() as s:
        assert [roster.elder_row(e) for e in roster.load_elders(s)] == snapshot


def test_gbk_valid_file_imports(run, db, tmp_path):
    path = write_rows(tmp_path / "gbk_ok.csv", sample_rows(), encoding="gbk")
    r = run("elders", "import", path, "--json")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["encoding"] == "gb18030" and info["created"] == 30
    assert table_counts(db)["elders"] == 30


def test_dry_run_writes_nothing(run, db):
    before = table_counts(db)
    r = run("elders", "import", SAMPLE, "--dry-run")
    assert r.exit_code == 0 and "未写入" in r.output and "新增30人" in r.output
    assert table_counts(db) == before


def test_skip_invalid_imports_good_rows(run, db, tmp_path):
    path, expected = _bad_files(tmp_path)[0]
    r = run("elders", "import", path, "--skip-invalid")
    assert r.exit_code == 0 and expected in r.output and "新增29人" in r.output and "跳过1行" in r.output
    counts = table_counts(db)
    assert counts["elders"] == 29
    with db.session() as s:
        assert "改过的地址" in set(s.scalars(select(Elder.address)))
        assert s.scalar(select(Elder).where(Elder.id_number_hash == sample_rows()[4][sample_rows()[0].index("公民身份号码")])) is None


def test_reimport_updates(run, db, tmp_path):
    run("elders", "import", SAMPLE)
    rows = sample_rows()
    rows[1][rows[0].index("详细地址")] = "幸福村9组1号"
    r = run("elders", "import", write_rows(tmp_path / "v2.csv", rows))
    assert "新增0人，更新30人" in r.output
    with db.session() as s:
        assert s.scalar(select(Elder.address).where(Elder.id_number_hash == rows[1][rows[0].index("公民身份号码")])) \
            == "幸福村9组1号"


def test_template_and_unreadable_file(run, tmp_path):
    r = run("elders", "template", tmp_path / "t.xlsx")
    assert r.exit_code == 0
    header, rows, _ = roster.read_table(tmp_path / "t.xlsx")
    assert header == roster.headers(6) and rows and not any(any(r) for r in rows)
    import openpyxl
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx").active
    assert ws.cell(5, header.index("公民身份号码") + 1).number_format == "@"  # typed IDs stay text
    assert roster.parse_file(tmp_path / "t.xlsx").errors == []  # blank rows are not elders
    shipped, _, _ = roster.read_table(SAMPLES / "roster_template.xlsx")
    assert shipped == header
    r = run("elders", "import", tmp_path / "nope.csv")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1 and "文件不存在" in r.output


def test_visitors_import_add_list(run, db, tmp_path):
    r = run("visitors", "import", SAMPLES / "visitors.csv")
    assert r.exit_code == 0 and "新增7名" in r.output
    assert "更新7名" in run("visitors", "import", SAMPLES / "visitors.csv").output
    r = run("visitors", "add", "--name", "钱志愿", "--role", "志愿者", "--phone", "13800138000", "--village", "幸福村")
    assert r.exit_code == 0
    bad = run("visitors", "add", "--name", "x", "--role", "宇航员")
    assert bad.exit_code == 1 and "角色" in bad.output
    rows = json.loads(run("visitors", "list", "--json").output)
    assert len(rows) == 8 and {r["role"] for r in rows} >= {"grid_worker", "social_worker", "volunteer",
                                                             "family_doctor", "civil_affairs", "supervisor"}
    assert all("13800138000" not in (r["phone"] or "") for r in rows)
    with db.session() as s:
        assert s.scalar(select(Visitor.phone).where(Visitor.name == "钱志愿")) == "+8613800138000"
    assert len(json.loads(run("visitors", "list", "--json", "--role", "volunteer").output)) == 2
