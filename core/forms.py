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

from core import emergency, memory, referrals
from core.labels import plain
from core.privacy import mask_id, mask_phone
from core.settings import Settings
from data.catalogue import load_catalogue
from data import phone as phones
from data.models import ASSISTING_UNITS, SATISFACTION, SEXES, CareService, Elder, Visit
from data.sheets import put

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


def _same(value):
    return value


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
    emergency: list[str] = field(default_factory=list)  # 紧急事件及处置 (core/emergency.py)
    referrals: list[str] = field(default_factory=list)  # 需求转介 (core/referrals.py)
    followups: list[str] = field(default_factory=list)  # 关注回访: last visits' concerns asked about (core/memory.py)

    def text(self) -> str:
        """A plain-text rendering (used by tests and for quick looks)."""
        lines = [TITLE, self.date]
        lines += [f"{k}：{v}" for k, v in self.section1]
        lines += [" ".join(r) for r in self.household]
        lines += [f"{k}：{v}" for k, v in self.section3]
        lines += [" ".join(a) for a in self.assistance]
        lines += [self.method_line, self.visit_no]
        lines += [f"{k}：{v}" for k, v in self.section5]
        lines += [self.needs, self.suggested_care] + self.followups + self.emergency + self.referrals
        lines += [" ".join(r) for r in self.care]
        lines.append(COPIES_NOTE)
        return "\n".join(lines)

    def plan_rows(self) -> list[tuple[str, str]]:
        """The rows section 五 gains when there is something to say: 关注回访, 紧急事件及处置, 需求转介."""
        return [(label, "\n".join(lines)) for label, lines in (("关注回访", self.followups),
                                                               ("紧急事件及处置", self.emergency),
                                                               ("需求转介", self.referrals)) if lines]


HOUSEHOLD_HEADER = ["序号", "姓名", "性别", "公民身份号码", "与户主关系", "健康状况", "是否为低保对象/特困人员"]


def plan_lines(session: Session, settings, visit: Visit) -> dict[str, list[str]]:
    """The earlier concerns asked about, an emergency of the visit and its record, and its
    referrals (``settings``: local times and referral types; default: the built-in ones)."""
    settings = settings or Settings()
    return {"followups": memory.form_lines(session, visit), "emergency": emergency.form_lines(session, settings, visit),
            "referrals": referrals.form_lines(session, settings, visit)}


def build_view(session: Session, visit_id: int, settings=None, *, full: bool = False) -> FormView:
    """The form of one visit (``settings``: local times and referral types). ID, certificate and phone numbers (the elder's, the emergency
    contact's, the household's) are masked unless ``full`` — only for a reader allowed to see
    them (``can_see_sensitive``, the filing copy printed from the command line); the caller
    audits a full view as ``read_sensitive``."""
    visit = session.get(Visit, visit_id)
    if visit is None:
        raise FormError(f"探访记录 {visit_id} 不存在 (no visit with id {visit_id})")
    elder: Elder = visit.elder
    id_no, phone = (_same, _same) if full else (mask_id, mask_phone)
    household = [
        [str(m.seq), m.name, SEXES.get(m.sex or "", ""), id_no(m.id_number) or "", m.relation_to_head or "",
         m.health or "", f"低保{box(m.on_dibao)} 特困{box(m.on_tekun)}"]
        for m in elder.household_members
    ]
    method = "internet_av" if visit.method == "chat" else visit.method
    method_line = " ".join(f"{box(method == k)}{label}" for k, label in FORM_METHODS)
    if visit.method == "chat":
        method_line += "（聊天消息）"
    signatures = [("数据录入人", visit.entered_by or ""), ("被探访老年人签字", visit.elder_signature or ""),
                  ("探访人签字", visit.visitor_signature or (visit.visitor.name if visit.visitor else ""))]
    return FormView(
        visit_id=visit.id, date=_date(visit.visit_date), section1=_section1(elder, id_no, phone),
        household_header=HOUSEHOLD_HEADER, household=household, section3=_section3(elder),
        assistance=_assistance(elder), method_line=method_line, visit_no=f"第 {visit.seq} 次开展探访",
        visit_date=_date(visit.visit_date), section5=_section5(visit), needs=plain(visit.needs),
        suggested_care=plain(visit.suggested_care), signatures=signatures, care=_care(session, visit),
        elder_area=elder.area, **plan_lines(session, settings, visit),
    )


def _section1(elder: Elder, id_no, phone) -> list[tuple[str, str]]:
    contact = elder.emergency_contacts[0] if elder.emergency_contacts else None
    return [
        ("住址", f"{elder.county} 县(市、区) {elder.township} 乡镇(街道) {elder.village} 村(居)"
                 + (f" {elder.address}" if elder.address else "")),
        ("是否居住在户籍所在地", yes_no(elder.lives_at_registration)),
        ("姓名", elder.name),
        ("性别", SEXES.get(elder.sex, "")),
        ("公民身份号码", id_no(elder.id_number)),
        ("联系电话", phone(phones.national(elder.phone)) or ""),
        ("紧急联系人", contact.name if contact else ""),
        ("紧急联系人电话", phone(phones.national(contact.phone)) if contact else ""),
        ("是否残疾", yes_no(elder.is_disabled)),
        ("残疾人证号", id_no(elder.disability_cert_no) or ""),
        ("是否独居、空巢", yes_no(elder.living_alone or elder.empty_nest)),
        ("是否留守", yes_no(elder.left_behind)),
        ("是否失能", yes_no(elder.disabled_care)),
        ("是否计划生育特殊家庭老年人", yes_no(elder.family_planning)),
    ]


def _section3(elder: Elder) -> list[tuple[str, str]]:
    lc = elder.living_conditions
    return [
        ("饮水是否安全", yes_no(lc.drinking_water_safe if lc else None)),
        ("用电是否安全", yes_no(lc.electricity_safe if lc else None)),
        ("住房是否安全", yes_no(lc.housing_safe if lc else None)),
        ("家庭月收入(元)", _money(lc.household_monthly_income) if lc else ""),
        ("月养老保险、社会救助和社会福利补贴(元)", _money(lc.monthly_benefits) if lc else ""),
    ]


def _assistance(elder: Elder) -> list[tuple[str, str, str]]:
    unit_types = {a.unit_type for a in elder.assistance}
    units_line = " ".join(f"{box(k in unit_types)}{label}" for k, label in ASSISTING_UNITS.items())
    if not elder.assistance:
        return [(units_line, "", "")]
    return [(units_line if i == 0 else "",
             f"{ASSISTING_UNITS[a.unit_type]}" + (f"（{a.unit_name}）" if a.unit_name else "")
             + (f" 帮扶责任人：{a.responsible_person}" if a.responsible_person else ""),
             a.measures or "")
            for i, a in enumerate(elder.assistance)]


def _section5(visit: Visit) -> list[tuple[str, str]]:
    out = []
    for item in load_catalogue().items:
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
        out.append((item.label, " ".join(parts)))
    return out


def _care(session: Session, visit: Visit) -> list[list[str]]:
    cares = session.scalars(select(CareService).where(CareService.visit_id == visit.id)
                            .order_by(CareService.seq)).all()
    return [[f"第{c.seq}次", _date(c.service_date), c.description, c.provider_name or "",
             " ".join(f"{box(c.satisfaction == k)}{label}" for k, label in SATISFACTION.items())]
            for c in cares]


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


class _PdfKit:
    """The paragraph styles and ruled tables of the printed form (reportlab platypus)."""

    def __init__(self):
        from reportlab.lib import colors
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm
        from reportlab.platypus import TableStyle

        cjk, _sym = _register_fonts()
        self.mm, self.colors = mm, colors
        self.base = ParagraphStyle("base", fontName=cjk, fontSize=8, leading=10)
        self.head = ParagraphStyle("head", parent=self.base, fontSize=10, leading=13)
        self.title = ParagraphStyle("title", parent=self.base, fontSize=15, leading=20, alignment=1)
        self.width = 180 * mm
        self.grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.6, colors.black),
                                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                                ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)])

    def P(self, text, style=None):
        from reportlab.platypus import Paragraph

        return Paragraph(_para_text(text), style or self.base)

    def table(self, rows, widths_mm):
        from reportlab.platypus import Table

        t = Table([[c if not isinstance(c, str) else self.P(c) for c in r] for r in rows],
                  colWidths=[w * self.mm for w in widths_mm])
        t.setStyle(self.grid)
        return t

    def section_title(self, text):
        from reportlab.platypus import Table, TableStyle

        t = Table([[self.P(text, self.head)]], colWidths=[self.width])
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.6, self.colors.black),
                               ("BACKGROUND", (0, 0), (-1, -1), self.colors.Color(0.92, 0.92, 0.92))]))
        return t

    def pairs(self, rows, cols=2):
        """label/value pairs, ``cols`` pairs per table row."""
        data, row = [], []
        for k, v in rows:
            row += [k, v]
            if len(row) == 2 * cols:
                data.append(row)
                row = []
        if row:
            data.append(row + [""] * (2 * cols - len(row)))
        value_mm = self.width / self.mm / cols - 38
        return self.table(data, [38, value_mm] * cols)


def _story(view: FormView):
    from reportlab.platypus import Spacer

    k = _PdfKit()
    mm = k.mm
    story = [k.P(TITLE, k.title), Spacer(1, 2 * mm), k.P(f"日期：{view.date}"), Spacer(1, 2 * mm),
             k.section_title("一、探访对象基本情况"), k.pairs(view.section1[:1], cols=1), k.pairs(view.section1[1:]),
             k.section_title("二、家庭基本情况"),
             k.table([view.household_header] + (view.household or [[""] * 7]), [10, 20, 10, 38, 22, 30, 50]),
             k.section_title("三、家庭生活条件"), k.pairs(view.section3),
             k.section_title("四、已享受帮扶情况"),
             k.table([["帮扶单位", "帮扶单位及责任人", "帮扶措施"]]
                     + [[units if i == 0 else "", who, measures]
                        for i, (units, who, measures) in enumerate(view.assistance)], [70, 55, 55]),
             k.section_title("五、探访情况")]
    sig = "　　".join(f"{label}：{v or '________'}" for label, v in view.signatures)
    story.append(k.table([["探访方式", view.method_line],
                          ["探访次数", f"{view.visit_no}　探访日期：{view.visit_date}"]]
                         + [list(pair) for pair in view.section5]
                         + [["老年人服务需求", view.needs], ["实施关爱服务建议", view.suggested_care]]
                         + [list(pair) for pair in view.plan_rows()] + [["签字", sig]],
                         [45, 135]))
    empty_sat = " ".join(f"{UNCHECKED}{label}" for label in SATISFACTION.values())
    story += [k.section_title("六、关爱服务情况"),
              k.table([["第 次开展关爱", "日期", "关爱服务情况", "服务人员签字(盖章)", "老年人服务满意度评价"]]
                      + (view.care or [["第 次", "", "", "", empty_sat]]), [22, 25, 63, 30, 40]),
              Spacer(1, 3 * mm), k.P(f"注：{COPIES_NOTE}。")]
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    wb.remove(wb.active)
    for view in views:
        _xlsx_sheet(wb, view)
    tmp = path.with_name(path.name + ".part")
    wb.save(tmp)
    tmp.replace(path)
    return path


class _SheetWriter:
    """Writes the ruled lines of one form sheet: 1 value spans the row, 2 are label + value."""

    def __init__(self, ws):
        from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

        thin = Side(style="thin")
        self.ws, self.row = ws, 2
        self.border = Border(left=thin, right=thin, top=thin, bottom=thin)
        self.wrap = Alignment(wrap_text=True, vertical="center")
        self.fill = PatternFill("solid", fgColor="EEEEEE")
        self.bold = Font(bold=True)

    def line(self, values, bold=False, section=False):
        ws, r = self.ws, self.row
        if len(values) == 1:
            ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=7)
        elif len(values) == 2:
            ws.merge_cells(start_row=r, start_column=2, end_row=r, end_column=7)
        for c, v in enumerate(values, start=1):
            cell = put(ws.cell(row=r, column=c), v)  # free text (notes) is never a formula
            cell.alignment = self.wrap
            if bold or section:
                cell.font = self.bold
            if section:
                cell.fill = self.fill
        for c in range(1, 8):
            ws.cell(row=r, column=c).border = self.border
        self.row += 1

    def pairs(self, rows):
        for k, v in rows:
            self.line([k, v])


def _xlsx_sheet(wb, view: FormView) -> None:
    from openpyxl.styles import Alignment, Font

    ws = wb.create_sheet(f"探访{view.visit_id}")
    for col, w in zip("ABCDEFG", (14, 14, 8, 22, 14, 14, 26)):
        ws.column_dimensions[col].width = w
    ws.merge_cells("A1:G1")
    ws["A1"] = TITLE
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = Alignment(horizontal="center")
    out = _SheetWriter(ws)
    out.line([f"日期：{view.date}"])
    out.line(["一、探访对象基本情况"], section=True)
    out.pairs(view.section1)
    out.line(["二、家庭基本情况"], section=True)
    out.line(view.household_header, bold=True)
    for row in view.household:
        out.line(row)
    out.line(["三、家庭生活条件"], section=True)
    out.pairs(view.section3)
    out.line(["四、已享受帮扶情况"], section=True)
    for units, who, measures in view.assistance:
        if units:
            out.line(["帮扶单位", units])
        if who or measures:
            out.line(["帮扶责任人及措施", f"{who} {measures}".strip()])
    out.line(["五、探访情况"], section=True)
    out.pairs([("探访方式", view.method_line), ("探访次数", f"{view.visit_no}　探访日期：{view.visit_date}")])
    out.pairs(view.section5)
    out.pairs([("老年人服务需求", view.needs), ("实施关爱服务建议", view.suggested_care)])
    out.pairs(view.plan_rows())
    out.pairs(view.signatures)
    out.line(["六、关爱服务情况"], section=True)
    out.line(["第 次开展关爱", "日期", "", "关爱服务情况", "服务人员签字(盖章)", "", "老年人服务满意度评价"], bold=True)
    for c in view.care:
        out.line([c[0], c[1], "", c[2], c[3], "", c[4]])
    out.line([f"注：{COPIES_NOTE}。"])
