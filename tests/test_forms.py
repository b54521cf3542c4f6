"""The printed record form: every section, the right boxes ticked, the CJK font embedded."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from pypdf import PdfReader

from core import forms
from tanfang.cli import cli
from tests import records_fixture as rf


@pytest.fixture
def sample(sqlite_app):
    with sqlite_app.db.session() as s:
        rows = rf.build(s)
        ids = {k: v.id for k, v in rows.items()}
    return sqlite_app, ids


def pdf_text(path) -> str:
    """The PDF's text with line breaks removed (cells wrap inside the ruled table)."""
    return "".join(p.extract_text() for p in PdfReader(str(path)).pages).replace("\n", "")


def run(app, *args):
    env = {"TANFANG_DATA_DIR": str(app.settings.app.data_dir), "TANFANG_DATABASE_URL": app.db.url}
    return CliRunner(env=env).invoke(cli, list(args))


def test_pdf_has_every_section_and_the_right_boxes(sample, tmp_path):
    app, ids = sample
    out = tmp_path / "form.pdf"
    res = run(app, "form", "print", str(ids["v1"]), "--pdf", str(out))
    assert res.exit_code == 0, res.output
    text = pdf_text(out)
    for heading in ("特殊困难老年人探访关爱服务记录表", "一、探访对象基本情况", "二、家庭基本情况", "三、家庭生活条件",
                    "四、已享受帮扶情况", "五、探访情况", "六、关爱服务情况"):
        assert heading in text
    # 一
    assert "兰考县 县(市、区) 城关镇 乡镇(街道) 幸福村 村(居)" in text
    assert "是否残疾☑是 □否" in text and "是否留守□是 ☑否" in text and "是否失能☑是 □否" in text
    assert "是否计划生育特殊家庭老年人□是 ☑否" in text
    # 二
    assert "王建国男410225197001010033子健康低保□ 特困□" in text
    assert "高血压低保☑ 特困□" in text
    # 三
    assert "用电是否安全□是 ☑否" in text and "1200.00" in text and "350.50" in text
    # 四
    assert "☑乡镇(街道)、村(居)民委员会" in text and "□企业" in text and "每周电话问候，代购药品" in text
    # 五
    assert "☑电话问候 □上门探访 □互联网音(视)频探访 □其他" in text
    assert "第 1 次开展探访" in text
    assert "行动及反应□无变化 □较好 ☑较差" in text
    assert "疾病情况□无变化 ☑严重（病名：高血压） □转好" in text
    assert "用水用电安全□安全 □较安全 ☑不安全" in text
    assert "燃气取暖安全□安全 ☑较安全 □不安全" in text
    assert "家庭人口变化☑无变化 □增加__人 □减少__人" in text
    assert "希望有人帮忙买药" in text and "安排网格员每周上门一次" in text
    assert "被探访老年人签字：王秀英" in text and "探访人签字：李网格" in text
    # 六
    assert "上门送药并检查电线" in text and "☑满意 □基本满意 □不满意" in text
    assert "此表一式两份，县级民政部门、乡镇（街道）各存档一份" in text
    # fonts are embedded (TrueType subsets), not referenced
    reader = PdfReader(str(out))
    fonts = [f.get_object() for p in reader.pages for f in p["/Resources"]["/Font"].values()]
    cjk = [f for f in fonts if "WenQuanYi" in str(f["/BaseFont"]) or "DejaVu" in str(f["/BaseFont"])]
    assert cjk and all("/FontFile2" in f["/FontDescriptor"] for f in cjk)


def test_every_item_of_the_catalogue_is_printed_once_ticked(sample):
    app, ids = sample
    with app.db.session() as s:
        view = forms.build_view(s, ids["v1"])
        unanswered = forms.build_view(s, ids["v2"])
    assert len(view.section5) == 11
    assert all(boxes.count("☑") == 1 for _label, boxes in view.section5)
    assert all("☑" not in boxes for _label, boxes in unanswered.section5)  # nothing answered: nothing ticked
    assert "☑上门探访" in unanswered.method_line


def test_chat_visit_ticks_internet_box(sample):
    app, ids = sample
    with app.db.session() as s:
        view = forms.build_view(s, ids["v3"])
    assert view.method_line.startswith("□电话问候 □上门探访 ☑互联网音(视)频探访")


def test_xlsx_form(sample, tmp_path):
    app, ids = sample
    out = tmp_path / "form.xlsx"
    res = run(app, "form", "print", str(ids["v1"]), "--xlsx", str(out))
    assert res.exit_code == 0, res.output
    ws = load_workbook(out).active
    values = {(r[0].value, r[1].value) for r in ws.iter_rows() if r[0].value}
    assert ("是否失能", "☑是 □否") in values
    assert ("疾病情况", "□无变化 ☑严重（病名：高血压） □转好") in values
    assert any(v[0] and "此表一式两份" in v[0] for v in values)
    assert ws["A1"].value == "特殊困难老年人探访关爱服务记录表"


def test_batch_for_a_township_and_month(sample, tmp_path):
    app, ids = sample
    res = run(app, "form", "print", "--township", "兰考县/城关镇", "--month", "2026-11", "--pdf", str(tmp_path))
    assert res.exit_code == 0, res.output
    out = tmp_path / "探访记录表_兰考县_城关镇_2026-11.pdf"
    reader = PdfReader(str(out))
    text = pdf_text(out)
    # complete visits of 城关镇 in November: 王秀英 x2, 李桂兰, 赵玉珍 (张德福's was incomplete)
    assert text.count("一、探访对象基本情况") == 4
    assert "赵玉珍" in text and "张德福" not in text and "刘长山" not in text
    assert len(reader.pages) >= 4


def test_errors_are_clear_and_write_nothing(sample, tmp_path):
    app, _ = sample
    out = tmp_path / "x.pdf"
    res = run(app, "form", "print", "99999", "--pdf", str(out))
    assert res.exit_code == 1 and "探访记录 99999 不存在" in res.output and not out.exists()
    res = run(app, "form", "print", "1")
    assert res.exit_code == 1 and "--pdf" in res.output
    res = run(app, "form", "print", "--township", "城关镇", "--month", "2026-11-01", "--pdf", str(tmp_path))
    assert res.exit_code == 1 and "YYYY-MM" in res.output


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_first_page_renders_to_png(sample, tmp_path):
    app, ids = sample
    out = tmp_path / "form.pdf"
    assert run(app, "form", "print", str(ids["v1"]), "--pdf", str(out)).exit_code == 0
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", "1", str(out), str(tmp_path / "p")], check=True)
    png = next(tmp_path.glob("p*.png"))
    assert png.stat().st_size > 10_000
    artifacts = rf_artifacts()
    shutil.copy(png, artifacts / "form-page1.png")


def rf_artifacts():
    from pathlib import Path

    d = Path(__file__).resolve().parent.parent / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d
