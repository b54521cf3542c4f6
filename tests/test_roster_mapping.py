"""Header-mapping files (issue #17 item 7): a county's own spreadsheet read and written without
retyping, through ``tanfang elders import/export --mapping`` on SQLite and PostgreSQL."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from data import repo, roster
from data.roster_mapping import HeaderMapping
from tanfang.cli import cli
from tests.test_roster import SAMPLE, SAMPLES, table_counts, write_rows

THEIRS = SAMPLES / "roster_jinmin.csv"
MAPPING = SAMPLES / "mapping_jinmin.yml"


@pytest.fixture
def run(db, tmp_path):
    env = {"TANFANG_DATABASE_URL": db.url, "TANFANG_DATA_DIR": str(tmp_path / "var"),
           "TANFANG_OUTPUT_DIR": str(tmp_path / "out")}
    return lambda *args: CliRunner().invoke(cli, [str(a) for a in args], env=env)


def _csv(path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.reader(fh))


def test_the_sample_uses_other_headers_and_codes():
    rows = _csv(THEIRS)
    assert rows[0] == ["兰考县特殊困难老年人信息表"] and "证件号码" in rows[1] and "公民身份号码" not in rows[1]
    assert {r[rows[1].index("性别")] for r in rows[2:]} == {"1", "2"}
    plain = roster.validate_rows(rows[1], rows[2:], header_row=2)  # without the mapping it is no roster
    assert plain.records == [] and "第2行 公民身份号码: 缺少必填列" in map(str, plain.header_errors)


def test_round_trip_through_the_county_layout(run, db, tmp_path):
    r = run("elders", "import", THEIRS, "--mapping", MAPPING)
    assert r.exit_code == 0 and "新增30人" in r.output, r.output
    with db.session() as s:
        elders = repo.list_elders(s, full=True)
        assert {e.county for e in elders} == {"兰考县"}  # from defaults: their sheet has no county column
        first = elders[0]
        assert (first.name, first.sex, first.phone) == ("王玉珍", "F", "+8618548305699")  # 2 -> 女, E.164
        assert first.living_alone and not first.empty_nest and first.preferred_channel == "phone"  # 1/0, 01
    mapping = HeaderMapping.load(MAPPING)
    first_import = [x.comparable() for x in roster.parse_file(THEIRS, mapping=mapping).records]
    for name in ("back.csv", "back.xlsx"):
        out = tmp_path / name
        r = run("elders", "export", out, "--mapping", MAPPING)
        assert r.exit_code == 0 and "已导出30人" in r.output, r.output
        assert [x.comparable() for x in roster.parse_file(out, mapping=mapping).records] == first_import
    assert _csv(tmp_path / "back.csv") == _csv(THEIRS)  # cell for cell, title row included
    header, _rows, _ = roster.read_table(tmp_path / "back.xlsx", header_row=2)
    assert header == [h.replace("（", "(").replace("）", ")") for h in _csv(THEIRS)[1]]  # as read_table gives it
    before = table_counts(db)
    assert run("elders", "import", tmp_path / "back.xlsx", "--mapping", MAPPING).exit_code == 0
    after = table_counts(db)
    assert after.pop("audit_log") == before.pop("audit_log") + 1 and after == before  # the same 30, updated


def test_errors_name_their_column_and_their_row(run, db, tmp_path):
    rows = _csv(THEIRS)
    idc = rows[1].index("证件号码")
    good = rows[2][idc]
    rows[2][idc] = good[:-1] + ("0" if good[-1] != "0" else "1")  # their row 3: the first elder
    rows[4][rows[1].index("性别")] = "9"
    path = write_rows(tmp_path / "bad.csv", rows)
    r = run("elders", "import", path, "--mapping", MAPPING)
    assert r.exit_code == 1
    assert f"第3行 证件号码（公民身份号码）: 校验码错误（应为{good[-1]}）" in r.output
    assert "第5行 性别: 应为 男/女（实为“9”）" in r.output  # unmapped code passes through, and is refused
    assert table_counts(db)["elders"] == 0


@pytest.mark.parametrize("text,reason", [
    ("columns: {姓名: 老人姓名, 生日: 出生日期}", "“生日”不是本系统花名册的列名"),
    ("columns: {姓名: 姓名, 村(居): 姓名}", "对方列“姓名”对应了多个本系统列"),
    ("columns: {姓名: 老人姓名}\nvalues: {是否独居: {yes: 是}}", "请加引号"),
    ("columns: {姓名: 老人姓名}\nheader_row: 0", "header_row 应为1-50的整数"),
    ("columns: {姓名: 老人姓名}\ncolumn: {}", "不认识的键 column"),
    ("columns: {}", "columns 不能为空"),
    ("- 姓名", "应为映射"),
    ("columns: [", "不是有效的YAML"),
])
def test_bad_mapping_files_say_why(run, db, tmp_path, text, reason):
    path = tmp_path / "map.yml"
    path.write_text(text, encoding="utf-8")
    r = run("elders", "import", THEIRS, "--mapping", path)
    assert r.exit_code == 1 and reason in r.output, r.output
    r = run("elders", "export", tmp_path / "x.csv", "--mapping", path)
    assert r.exit_code == 1 and reason in r.output and not (tmp_path / "x.csv").exists()


def test_missing_mapping_file(run, tmp_path):
    r = run("elders", "import", SAMPLE, "--mapping", tmp_path / "none.yml")
    assert r.exit_code == 1 and "映射文件不存在" in r.output


def test_an_xlsx_sheet_is_chosen_by_name(tmp_path):
    import openpyxl

    rows = _csv(THEIRS)
    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    wb.active.append(["本表由金民工程导出"])
    ws = wb.create_sheet("老年人信息")
    for r in rows:
        ws.append(r)
    wb.save(tmp_path / "two.xlsx")
    mapping = HeaderMapping.load(MAPPING)
    mapping.sheet = "老年人信息"
    assert len(roster.parse_file(tmp_path / "two.xlsx", mapping=mapping).records) == 30
    mapping.sheet = "花名册"
    with pytest.raises(roster.RosterError, match="没有工作表“花名册”"):
        roster.parse_file(tmp_path / "two.xlsx", mapping=mapping)
