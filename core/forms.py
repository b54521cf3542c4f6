"""The record form (特殊困难老年人探访关爱服务记录表) of one visit, as PDF (reportlab) and XLSX (openpyxl).

Both renderings come from one :class:`FormView` (plain strings and ☑/□ boxes), built from the
models of sections 一 to 六 and the section 五 catalogue, so the PDF, the workbook and the tests
agree on every box. Fonts: WenQuanYi Micro Hei (TrueType outlines, Debian fonts-wqy-microhei) for
the Chinese text, DejaVu Sans for the ☑ and □ boxes; both are embedded (subset) in the PDF.
reportlab cannot embed the CFF outlines of Noto Sans CJK, hence WenQuanYi.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from data.catalogue import load_catalogue
from data import phone as phones
from data.models import ASSISTING_UNITS, SATISFACTION, SEXES, VISIT_METHODS, CareService, Elder, Visit

TITLE = "特殊困难老年人探访关爱服务记录表"
COPIES_NOTE = "此表一式两份，县级民政部门、乡镇（街道）各存档一份"
CHECKED, UNCHECKED = "☑", "□"
CJK_FONT_CANDIDATES = [
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
]
SYMBOL_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
# form order of section 五 methods (internet audio/video before 其他; chat counts as internet)
FORM_METHODS = [("phone", "电话问候"), ("in_person", "上门探访"), ("internet_av", "互联网音(视)频探访"),
                ("other", "其他")]


class FormError(Exception):
    """A form cannot be produced (unknown visit, no font); the message says why."""


def box(checked: bool) -> str:
    return CHECKED if checked else UNCHECKED


def yes_no(value: bool | None) -> str:
    """□是 □否 with the right one ticked; neither when unknown."""
    return f"{box(value is True)}是 {box(value is False)}否"


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _date(value: dt.date | None) -> str:
    return "" if value is None else f"{value.year}年{value.month}月{value.day}日"


@dataclass
class FormView:
    """Everything printed on the form, as strings (sections in order)."""

    visit_id: int
    date: str
    section1: list[tuple[str, str]]
    household_header: list[str]
    household: list[list[str]]
    section3: list[tuple[str, str]]
    assistance: list[tuple[str, str, str]]  # units line, responsible person, measures
    method_line: str
    visit_no: str
    visit_date: str
    section5: list[tuple[str, str]]  # item label, boxes
    needs: str
    suggested_care: str
    signatures: list[tuple[str, str]]
    care: list[list[str]] = field(default_factory=list)
    elder_area: tuple[str, str, str] = ("", "", "")

    def text(self) -> str:
        """A plain-text rendering (used by tests and for quick looks)."""
        lines = [TITLE, self.date]
        lines += [f"{k}：{v}" for k, v in self.section1]
        lines += [" ".join(r) for r in self.household]
        lines += [f"{k}：{v}" for k, v in self.section3]
        lines += [" ".join(a) for a in self.assistance]
        lines += [self.method_line, self.visit_no]
        lines += [f"{k}：{v}" for k, v in self.section5]
        lines += [self.needs, self.suggested_care]
        lines += [" ".join(r) for r in self.care]
        lines.append(COPIES_NOTE)
        return "\n".join(lines)


def build_view(session: Session, visit_id: int) -> FormView:
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise FormError(f"探访记录 {visit_id} 不存在 (no visit with id {visit_id})")
    elder: Elder = visit.elder
    cat = load_catalogue()
    contact = elder.emergency_contacts[0] if elder.emergency_contacts else None
    section1 = [
        ("住址", f"{elder.county} 县(市、区) {elder.township} 乡镇(街道) {elder.village} 村(居)"
                 + (f" {elder.address}" if elder.address else "")),
        ("是否居住在户籍所在地", yes_no(elder.lives_at_registration)),
        ("姓名", elder.name),
        ("性别", SEXES.get(elder.sex, "")),
        ("公民身份号码", elder.id_number),
        ("联系电话", phones.national(elder.phone)),
        ("紧急联系人", contact.name if contact else ""),
        ("紧急联系人电话", phones.national(contact.phone) if contact else ""),
        ("是否残疾", yes_no(elder.is_disabled)),
        ("残疾人证号", elder.disability_cert_no or ""),
        ("是否独居、空巢", yes_no(elder.living_alone or elder.empty_nest)),
        ("是否留守", yes_no(elder.left_behind)),
        ("是否失能", yes_no(elder.disabled_care)),
        ("是否计划生育特殊家庭老年人", yes_no(elder.family_planning)),
    ]
    household_header = ["序号", "姓名", "性别", "公民身份号码", "与户主关系", "健康状况", "是否为低保对象/特困人员"]
    household = [
        [str(m.seq), m.name, SEXES.get(m.sex or "", ""), m.id_number or "", m.relation_to_head or "",
         m.health or "", f"低保{box(m.on_dibao)} 特困{box(m.on_tekun)}"]
        for m in elder.household_members
    ]
    lc = elder.living_conditions
    section3 = [
        ("饮水是否安全", yes_no(lc.drinking_water_safe if lc else None)),
        ("用电是否安全", yes_no(lc.electricity_safe if lc else None)),
        ("住房是否安全", yes_no(lc.housing_safe if lc else None)),
        ("家庭月收入(元)", _money(lc.household_monthly_income) if lc else ""),
        ("月养老保险、社会救助和社会福利补贴(元)", _money(lc.monthly_benefits) if lc else ""),
    ]
    unit_types = {a.unit_type for a in elder.assistance}
    units_line = " ".join(f"{box(k in unit_types)}{label}" for k, label in ASSISTING_UNITS.items())
    assistance = [(units_line, "", "")]
    if elder.assistance:
        assistance = [(units_line if i == 0 else "",
                       f"{ASSISTING_UNITS[a.unit_type]}" + (f"（{a.unit_name}）" if a.unit_name else "")
                       + (f" 帮扶责任人：{a.responsible_person}" if a.responsible_person else ""),
                       a.measures or "")
                      for i, a in enumerate(elder.assistance)]
    method = "internet_av" if visit.method == "chat" else visit.method
    method_line = " ".join(f"{box(method == k)}{label}" for k, label in FORM_METHODS)
    if visit.method == "chat":
        method_line += "（聊天消息）"
    section5 = []
    for item in cat.items:
        answer = visit.answer(item.key)
        parts = []
        for v in item.values:
            ticked = answer is not None and answer.value == v.value
            label = v.label
            if v.detail == "count":
                label += f"{answer.detail if ticked and answer.detail else '__'}人"
            elif v.detail == "illness_name":
                label += f"（病名：{answer.detail if ticked and answer.detail else '____'}）"
            parts.append(f"{box(ticked)}{label}")
        section5.append((item.label, " ".join(parts)))
    cares = session.scalars(select(CareService).where(CareService.visit_id == visit.id)
                            .order_by(CareService.seq)).all()
    care = [[f"第{c.seq}次", _date(c.service_date), c.description, c.provider_name or "",
             " ".join(f"{box(c.satisfaction == k)}{label}" for k, label in SATISFACTION.items())]
            for c in cares]
    signatures = [("数据录入人", visit.entered_by or ""), ("被探访老年人签字", visit.elder_signature or ""),
                  ("探访人签字", visit.visitor_signature or (visit.visitor.name if visit.visitor else ""))]
    return FormView(
        visit_id=visit.id, date=_date(visit.visit_date), section1=section1,
        household_header=household_header, household=household, section3=section3,
        assistance=assistance, method_line=method_line, visit_no=f"第 {visit.seq} 次开展探访",
        visit_date=_date(visit.visit_date), section5=section5, needs=visit.needs or "",
        suggested_care=visit.suggested_care or "", signatures=signatures, care=care,
        elder_area=elder.area,
    )


# ---- PDF ----------------------------------------------------------------------------------------
_FONTS: tuple[str, str] | None = None


def _register_fonts() -> tuple[str, str]:
    global _FONTS
    if _FONTS:
        return _FONTS
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    for path, index in CJK_FONT_CANDIDATES:
        if Path(path).exists():
            pdfmetrics.registerFont(TTFont("TanfangCJK", path, subfontIndex=index))
            break
    else:
        raise FormError("找不到中文字体：请安装 fonts-wqy-microhei (apt-get install fonts-wqy-microhei)")
    if not Path(SYMBOL_FONT).exists():
        raise FormError("找不到 DejaVu Sans 字体：请安装 fonts-dejavu-core")
    pdfmetrics.registerFont(TTFont("TanfangSym", SYMBOL_FONT))
    _FONTS = ("TanfangCJK", "TanfangSym")
    return _FONTS


def _para_text(text: str) -> str:
    from xml.sax.saxutils import escape

    out = escape(text).replace("\n", "<br/>")
    for sym in (CHECKED, UNCHECKED):
        out = out.replace(sym, f'<font name="TanfangSym">{sym}</font>')
    return out


def _story(view: FormView):
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer, Table, TableStyle

    cjk, _sym = _register_fonts()
    base = ParagraphStyle("base", fontName=cjk, fontSize=8, leading=10)
    head = ParagraphStyle("head", parent=base, fontSize=10, leading=13)
    title = ParagraphStyle("title", parent=base, fontSize=15, leading=20, alignment=1)

    def P(text, style=base):
        return Paragraph(_para_text(text), style)

    width = 180 * mm
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                       ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                       ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)])

    def section_title(text):
        t = Table([[P(text, head)]], colWidths=[width])
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                               ("BACKGROUND", (0, 0), (-1, -1), colors.Color(0.92, 0.92, 0.92))]))
        return t

    def pairs(rows, cols=2):
        """label/value pairs, ``cols`` pairs per table row."""
        data, row = [], []
        for k, v in rows:
            row += [P(k), P(v)]
            if len(row) == 2 * cols:
                data.append(row)
                row = []
        if row:
            row += [P("")] * (2 * cols - len(row))
            data.append(row)
        lw = 38 * mm
        vw = width / cols - lw
        t = Table(data, colWidths=[lw, vw] * cols)
        t.setStyle(grid)
        return t

    story = [P(TITLE, title), Spacer(1, 2 * mm), P(f"日期：{view.date}", base), Spacer(1, 2 * mm)]
    story.append(section_title("一、探访对象基本情况"))
    address, rest = view.section1[0], view.section1[1:]
    story.append(pairs([address], cols=1))
    story.append(pairs(rest))
    story.append(section_title("二、家庭基本情况"))
    rows = [[P(h) for h in view.household_header]]
    rows += [[P(c) for c in r] for r in (view.household or [[""] * 7])]
    t = Table(rows, colWidths=[10 * mm, 20 * mm, 10 * mm, 38 * mm, 22 * mm, 30 * mm, 50 * mm])
    t.setStyle(grid)
    story.append(t)
    story.append(section_title("三、家庭生活条件"))
    story.append(pairs(view.section3))
    story.append(section_title("四、已享受帮扶情况"))
    rows = [[P("帮扶单位"), P("帮扶单位及责任人"), P("帮扶措施")]]
    first = True
    for units, who, measures in view.assistance:
        rows.append([P(units if first else ""), P(who), P(measures)])
        first = False
    t = Table(rows, colWidths=[70 * mm, 55 * mm, 55 * mm])
    t.setStyle(grid)
    story.append(t)
    story.append(section_title("五、探访情况"))
    rows = [[P("探访方式"), P(view.method_line)],
            [P("探访次数"), P(f"{view.visit_no}　探访日期：{view.visit_date}")]]
    rows += [[P(label), P(boxes)] for label, boxes in view.section5]
    rows += [[P("老年人服务需求"), P(view.needs)], [P("实施关爱服务建议"), P(view.suggested_care)]]
    sig = "　　".join(f"{k}：{v or '________'}" for k, v in view.signatures)
    rows.append([P("签字"), P(sig)])
    t = Table(rows, colWidths=[45 * mm, 135 * mm])
    t.setStyle(grid)
    story.append(t)
    story.append(section_title("六、关爱服务情况"))
    rows = [[P("第 次开展关爱"), P("日期"), P("关爱服务情况"), P("服务人员签字(盖章)"), P("老年人服务满意度评价")]]
    empty_sat = " ".join(f"{UNCHECKED}{label}" for label in SATISFACTION.values())
    rows += [[P(c) for c in r] for r in (view.care or [["第 次", "", "", "", empty_sat]])]
    t = Table(rows, colWidths=[22 * mm, 25 * mm, 63 * mm, 30 * mm, 40 * mm])
    t.setStyle(grid)
    story.append(t)
    story.append(Spacer(1, 3 * mm))
    story.append(P(f"注：{COPIES_NOTE}。", base))
    return story


def _doc(target, title: str):
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    return SimpleDocTemplate(str(target), pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                             topMargin=12 * mm, bottomMargin=12 * mm, title=title, author="探访 Tanfang")


def write_pdf(views: list[FormView], path: str | Path) -> Path:
    """One form per visit, each starting on a new page, into one PDF file."""
    from reportlab.platypus import PageBreak

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    story = []
    for i, view in enumerate(views):
        if i:
            story.append(PageBreak())
        story += _story(view)
    tmp = path.with_suffix(path.suffix + ".part")
    _doc(tmp, TITLE).build(story)
    tmp.replace(path)  # never leave a half-written form behind
    return path


# ---- XLSX ---------------------------------------------------------------------------------------
def write_xlsx(views: list[FormView], path: str | Path) -> Path:
    """One worksheet per visit, ruled like the paper form."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    wb.remove(wb.active)
    thin = Side(style="thin")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    wrap = Alignment(wrap_text=True, vertical="center")
    fill = PatternFill("solid", fgColor="EEEEEE")
    for view in views:
        ws = wb.create_sheet(f"探访{view.visit_id}")
        for col, w in zip("ABCDEFG", (14, 14, 8, 22, 14, 14, 26)):
            ws.column_dimensions[col].width = w
        r = 1

        def line(values, bold=False, section=False):
            nonlocal r
            if len(values) == 1:
                ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=7)
            elif len(values) == 2:
                ws.merge_cells(start_row=r, start_column=2, end_row=r, end_column=7)
            for c, v in enumerate(values, start=1):
                cell = ws.cell(row=r, column=c, value=v)
                cell.alignment = wrap
                if bold or section:
                    cell.font = Font(bold=True)
                if section:
                    cell.fill = fill
            for c in range(1, 8):
                ws.cell(row=r, column=c).border = border
            r += 1

        ws.merge_cells("A1:G1")
        ws["A1"] = TITLE
        ws["A1"].font = Font(bold=True, size=14)
        ws["A1"].alignment = Alignment(horizontal="center")
        r = 2
        line([f"日期：{view.date}"])
        line(["一、探访对象基本情况"], section=True)
        for k, v in view.section1:
            line([k, v])
        line(["二、家庭基本情况"], section=True)
        line(view.household_header, bold=True)
        for row in view.household:
            line(row)
        line(["三、家庭生活条件"], section=True)
        for k, v in view.section3:
            line([k, v])
        line(["四、已享受帮扶情况"], section=True)
        for units, who, measures in view.assistance:
            if units:
                line(["帮扶单位", units])
            if who or measures:
                line(["帮扶责任人及措施", f"{who} {measures}".strip()])
        line(["五、探访情况"], section=True)
        line(["探访方式", view.method_line])
        line(["探访次数", f"{view.visit_no}　探访日期：{view.visit_date}"])
        for k, v in view.section5:
            line([k, v])
        line(["老年人服务需求", view.needs])
        line(["实施关爱服务建议", view.suggested_care])
        for k, v in view.signatures:
            line([k, v])
        line(["六、关爱服务情况"], section=True)
        line(["第 次开展关爱", "日期", "", "关爱服务情况", "服务人员签字(盖章)", "", "老年人服务满意度评价"], bold=True)
        for c in view.care:
            line([c[0], c[1], "", c[2], c[3], "", c[4]])
        line([f"注：{COPIES_NOTE}。"])
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return path
