"""Roster import limits (issue #14 item 25): file size, rows, zip bombs, field lengths, slot numbers.
Every violation is a clear file or row error and nothing is written (CLI on SQLite and PostgreSQL)."""

from __future__ import annotations

import ast
import inspect
import zipfile

import pytest
from click.testing import CliRunner

from data import roster
from tanfang.cli import cli
from tests.test_roster import SAMPLE, sample_rows, table_counts, write_rows


@pytest.fixture
def run(db, tmp_path):
    base = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var"),
            "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}

    def invoke(*args, **env):
        return CliRunner().invoke(cli, [str(a) for a in args], env={**base, **env})

    return invoke


def _xlsx(path, rows):
    roster.write_table(path, rows[0], [dict(zip(rows[0], r)) for r in rows[1:]])
    return path


def _bomb(path, megabytes: int, members: int = 0):
    """A real roster XLSX with an extra member of ``megabytes`` of zeros (a few KB packed) and
    ``members`` more tiny files."""
    _xlsx(path, sample_rows()[:3])
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("xl/media/padding.bin", "w") as fh:
            for _ in range(megabytes):
                fh.write(b"\0" * 1024 * 1024)
        for n in range(members):
            zf.writestr(f"xl/media/m{n}.txt", "x")
    return path


def _refused(run, db, path, expected: str, **env):
    before = table_counts(db)
    r = run("elders", "import", path, **env)
    assert r.exit_code == 1, r.output
    assert expected in r.output, r.output
    assert table_counts(db) == before
    return r


def test_file_size_limit(run, db, tmp_path):
    run("elders", "import", SAMPLE)
    _refused(run, db, SAMPLE, "文件过大", TANFANG_ROSTER__MAX_FILE_MB="0.01")


def test_row_limit(run, db, tmp_path):
    r = _refused(run, db, SAMPLE, "行数超过上限（最多20行：roster.max_rows）", TANFANG_ROSTER__MAX_ROWS="20")
    assert r.output.strip().endswith("未导入任何数据")
    xlsx = _xlsx(tmp_path / "r.xlsx", sample_rows())
    _refused(run, db, xlsx, "行数超过上限", TANFANG_ROSTER__MAX_ROWS="20")
    assert run("elders", "import", xlsx, TANFANG_ROSTER__MAX_ROWS="30").exit_code == 0


def test_zip_bomb_is_refused_before_it_is_opened(run, db, tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.xlsx", megabytes=3)
    assert bomb.stat().st_size < 100 * 1024  # 3 MB of zeros pack into a few KB
    opened = []
    import openpyxl

    monkeypatch.setattr(openpyxl, "load_workbook", lambda *a, **k: opened.append(a) or pytest.fail("opened"))
    with pytest.raises(roster.RosterError, match="压缩炸弹"):
        roster.read_table(bomb, limits=roster.RosterLimits(max_unzipped_mb=2))
    assert opened == []
    with pytest.raises(roster.RosterError, match="XLSX内部文件过多（.*上限 20"):
        roster.read_table(_bomb(tmp_path / "many.xlsx", 0, members=30), limits=roster.RosterLimits(max_zip_members=20))
    with pytest.raises(roster.RosterError, match="不是有效的XLSX"):
        roster.read_table(write_rows(tmp_path / "fake.xlsx", [["x"]]))


def test_zip_bomb_through_the_command(run, db, tmp_path):
    _refused(run, db, _bomb(tmp_path / "bomb.xlsx", megabytes=3), "压缩炸弹", TANFANG_ROSTER__MAX_UNZIPPED_MB="2")


def _one_bad(column: str, value: str, row: int = 2) -> list[list[str]]:
    rows = sample_rows()
    h = rows[0]
    if column not in h:
        h.append(column)
        for r in rows[1:]:
            r.append("")
    rows[row - 1][h.index(column)] = value
    return rows


@pytest.mark.parametrize("column,value,reason", [
    ("姓名", "王" * 65, "过长（最多64字，实为65字）"),
    ("详细地址", "路" * 201, "过长（最多200字，实为201字）"),
    ("紧急联系人", "张" * 65, "过长（最多64字，实为65字）"),
    ("紧急联系人关系", "邻" * 33, "过长（最多32字，实为33字）"),
    ("家庭成员1姓名", "李" * 65, "过长（最多64字，实为65字）"),        # unchecked before: PostgreSQL refused the row
    ("家庭成员1健康状况", "病" * 65, "过长（最多64字，实为65字）"),
    ("子女1城市", "城" * 65, "过长（最多64字，实为65字）"),
    ("残疾人证号", "1" * 33, "过长（最多32字，实为33字）"),
    ("备注", "注" * 2001, "过长（最多2000字，实为2001字）"),
    ("联系电话", "+86 138 1234 5678 9", "手机号码应为11位、以13-19开头"),
])
def test_field_lengths_follow_the_model(run, db, tmp_path, column, value, reason):
    path = write_rows(tmp_path / "long.csv", _one_bad(column, value))
    _refused(run, db, path, f"第2行 {column}: {reason}")


def test_assistance_entries_are_bounded_too(tmp_path):
    rows = _one_bad("帮扶单位", "社会组织")
    rows[1][rows[0].index("帮扶单位名称")] = "名" * 101
    errors = [str(e) for e in roster.parse_file(write_rows(tmp_path / "a.csv", rows)).errors]
    assert errors == ["第2行 帮扶单位名称: 第1项过长（最多100字，实为101字）"]


@pytest.mark.parametrize("header,reason", [
    ("家庭成员7姓名", "家庭成员（roster.max_household_members）序号应为1-6"),
    ("家庭成员0姓名", "家庭成员（roster.max_household_members）序号应为1-6"),
    ("家庭成员99999999999姓名", "家庭成员（roster.max_household_members）序号应为1-6"),
    ("子女11姓名", "子女序号应为1-10"),
    ("紧急联系人0电话", "紧急联系人序号应为1-5"),
    ("紧急联系人6", "紧急联系人序号应为1-5"),
])
def test_slot_numbers_are_bounded(run, db, tmp_path, header, reason):
    path = write_rows(tmp_path / "slots.csv", _one_bad(header, "张三"))
    _refused(run, db, path, f"第1行 {header}: {reason}")


def test_household_bound_follows_the_setting(run, db, tmp_path):
    path = write_rows(tmp_path / "seven.csv", _one_bad("家庭成员7姓名", "张三"))
    assert run("elders", "import", path, TANFANG_ROSTER__MAX_HOUSEHOLD_MEMBERS="8").exit_code == 0


def test_validators_are_small():
    """No validator of the roster is longer than 60 lines (it was one function of 175)."""
    tree = ast.parse(inspect.getsource(roster))
    long = [(f.name, f.end_lineno - f.lineno + 1) for f in ast.walk(tree)
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.end_lineno - f.lineno + 1 > 60]
    assert long == []
