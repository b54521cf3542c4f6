"""The elder roster: columns of the record form (sections 一 to 四), CSV/XLSX parsing, validation,
all-or-nothing import (update by ID number), and export with the same headers.

Row numbers are those a user sees in a spreadsheet: the header is row 1, the first elder row 2.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from data import idcard, phone, sheets
from data.models import (
    ASSISTING_UNITS,
    CHANNELS,
    PERSON_CHANNELS,
    Assistance,
    Elder,
    EmergencyContact,
    FamilyMember,
    HouseholdMember,
    LivingConditions,
    SEXES,
    Visitor,
)

EMERGENCY_SLOTS = 2
FAMILY_SLOTS = 3
SEP = "；"  # several assistance entries in one cell group

CATEGORY_HEADERS = {
    "living_alone": "是否独居",
    "empty_nest": "是否空巢",
    "left_behind": "是否留守",
    "disabled_care": "是否失能",
    "severely_disabled": "是否重残",
    "family_planning": "是否计划生育特殊家庭",
}

ELDER_HEADERS = [
    "县(市、区)", "乡镇(街道)", "村(居)", "详细地址", "是否居住在户籍所在地",
    "姓名", "性别", "公民身份号码", "联系电话",
]
REQUIRED = ["县(市、区)", "乡镇(街道)", "村(居)", "姓名", "公民身份号码", "紧急联系人", "紧急联系人电话"]
TAIL_HEADERS = [
    "是否残疾", "残疾人证号", *CATEGORY_HEADERS.values(),
    "同意探访", "同意向家属共享", "首选联系时间", "首选联系方式",
    "饮水安全", "用电安全", "住房安全", "家庭月收入(元)", "月养老金及补贴(元)",
    "帮扶单位", "帮扶单位名称", "帮扶责任人", "帮扶措施", "备注",
]
HOUSEHOLD_FIELDS = ["姓名", "性别", "公民身份号码", "与户主关系", "健康状况", "是否低保", "是否特困"]
FAMILY_FIELDS = ["姓名", "关系", "电话", "城市", "联系渠道", "企业微信账号"]
CONTACT_FIELDS = ["关系", "电话", "联系渠道", "企业微信账号"]


def contact_headers(n: int) -> list[str]:
    p = "紧急联系人" if n == 1 else f"紧急联系人{n}"
    return [p] + [f"{p}{f}" for f in CONTACT_FIELDS]


def household_headers(n: int) -> list[str]:
    return [f"家庭成员{n}{f}" for f in HOUSEHOLD_FIELDS]


def family_headers(n: int) -> list[str]:
    return [f"子女{n}{f}" for f in FAMILY_FIELDS]


def headers(max_household: int = 6, max_family: int = FAMILY_SLOTS, max_contacts: int = EMERGENCY_SLOTS) -> list[str]:
    """All columns in template/export order."""
    cols = list(ELDER_HEADERS)
    for n in range(1, max_contacts + 1):
        cols += contact_headers(n)
    cols += TAIL_HEADERS
    for n in range(1, max_household + 1):
        cols += household_headers(n)
    for n in range(1, max_family + 1):
        cols += family_headers(n)
    return cols


_HOUSEHOLD_RE = re.compile(r"^家庭成员(\d+)(" + "|".join(HOUSEHOLD_FIELDS) + r")$")
_FAMILY_RE = re.compile(r"^子女(\d+)(" + "|".join(FAMILY_FIELDS) + r")$")
_CONTACT_RE = re.compile(r"^紧急联系人(\d*)(" + "|".join(CONTACT_FIELDS) + r")?$")


def known_header(header: str) -> bool:
    return (header in ELDER_HEADERS or header in TAIL_HEADERS or bool(_HOUSEHOLD_RE.match(header))
            or bool(_FAMILY_RE.match(header)) or bool(_CONTACT_RE.match(header)))


# ---- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"第{self.row}行 {self.column}: {self.reason}"


@dataclass
class ElderRecord:
    """One valid roster row, normalised (what is stored, and what export writes back)."""

    row: int
    elder: dict
    contacts: list[dict] = field(default_factory=list)
    household: list[dict] = field(default_factory=list)
    living: dict | None = None
    assistance: list[dict] = field(default_factory=list)
    family: list[dict] = field(default_factory=list)

    def comparable(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "row"}


@dataclass
class ParseResult:
    records: list[ElderRecord]
    errors: list[RowError]
    encoding: str | None = None
    total_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    header_row: int = 1

    @property
    def invalid_rows(self) -> set[int]:
        return {e.row for e in self.errors}

    @property
    def header_errors(self) -> list[RowError]:
        """Missing, repeated or out-of-range columns: the whole file is refused."""
        return [e for e in self.errors if e.row == self.header_row]


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    dry_run: bool = False


class RosterError(Exception):
    """The file cannot be read at all (one-line reason)."""


# ---- reading files -----------------------------------------------------------------------------
def decode_bytes(data: bytes) -> tuple[str, str]:
    """Text and encoding name: UTF-8 (with or without BOM), else GB18030 (superset of GBK/GB2312)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise RosterError(f"无法识别文件编码（支持UTF-8、GBK/GB18030）: 第{exc.start}字节") from exc


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.strftime("%H:%M") if value.date() == dt.date(1899, 12, 30) else value.date().isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return str(value).strip()


@dataclass(frozen=True)
class RosterLimits:
    """What one import may be (settings ``roster.*``); a file over a limit is refused whole."""

    max_file_mb: float = 10
    max_rows: int = 20000
    max_unzipped_mb: float = 100
    max_zip_members: int = 1000
    max_household_members: int = 6

    @classmethod
    def from_settings(cls, section) -> RosterLimits:
        """From the ``roster`` settings section (any object with these attributes)."""
        return cls(**{k: getattr(section, k) for k in cls.__dataclass_fields__ if hasattr(section, k)})


MB = 1024 * 1024


def _check_size(path: Path, limits: RosterLimits) -> None:
    size = path.stat().st_size
    if size > limits.max_file_mb * MB:
        raise RosterError(f"文件过大（{size / MB:.1f} MB，上限 {limits.max_file_mb:g} MB：roster.max_file_mb）")


def check_zip(path: Path, limits: RosterLimits) -> None:
    """Refuse an XLSX (a zip) whose members are too many or unpack too large, before any parser
    opens it. The sizes are the ones the zip declares; Python's zipfile stops every member at its
    declared size, so openpyxl cannot be made to unpack more than was checked here."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise RosterError(f"不是有效的XLSX文件 {path.name}: {exc}") from exc
    if len(members) > limits.max_zip_members:
        raise RosterError(f"XLSX内部文件过多（{len(members)}个，上限 {limits.max_zip_members}：roster.max_zip_members）")
    unpacked = sum(m.file_size for m in members)
    if unpacked > limits.max_unzipped_mb * MB:
        raise RosterError(f"XLSX解压后过大（{unpacked / MB:.0f} MB，上限 {limits.max_unzipped_mb:g} MB："
                          "roster.max_unzipped_mb），疑为压缩炸弹，未读取")


def _bounded(rows: Iterable[list[str]], limits: RosterLimits, header_row: int) -> list[list[str]]:
    """The rows from the header on; refused past ``max_rows`` non-blank data rows (reading stops there)."""
    out: list[list[str]] = []
    data_rows = 0
    for n, row in enumerate(rows, start=1):
        if n < header_row:
            continue
        if n > header_row and any(row):
            data_rows += 1
            if data_rows > limits.max_rows:
                raise RosterError(f"行数超过上限（最多{limits.max_rows}行：roster.max_rows），未导入任何数据")
        out.append(row)
    return out


def _xlsx_rows(path: Path, sheet: str | None) -> Iterator[list[str]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 — corrupt or not an xlsx
        raise RosterError(f"无法读取XLSX文件 {path.name}: {exc}") from exc
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise RosterError(f"XLSX中没有工作表“{sheet}”（有：{'、'.join(wb.sheetnames)}）")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        for r in ws.iter_rows(values_only=True):
            yield [_cell(v) for v in r]
    finally:
        wb.close()


def read_table(path: Path, *, limits: RosterLimits | None = None, sheet: str | None = None,
               header_row: int = 1) -> tuple[list[str], list[list[str]], str | None]:
    """Header and data rows (strings) of a CSV or XLSX file, and the CSV's encoding. The header is
    on row ``header_row`` (rows above it, e.g. a title, are skipped); ``limits`` are checked first."""
    path = Path(path)
    limits = limits or RosterLimits()
    if not path.exists():
        raise RosterError(f"文件不存在: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".xlsm", ".csv", ".txt"):
        if suffix == ".xls":
            raise RosterError("不支持旧版 .xls 文件，请另存为 .xlsx 或 CSV")
        raise RosterError(f"不支持的文件类型 {suffix or '(无扩展名)'}：请用 .csv 或 .xlsx")
    _check_size(path, limits)
    encoding = None
    if suffix in (".xlsx", ".xlsm"):
        check_zip(path, limits)
        rows = _bounded(_xlsx_rows(path, sheet), limits, header_row)
    else:
        text, encoding = decode_bytes(path.read_bytes())
        rows = _bounded(([sheets.restore(c.strip()) for c in r] for r in csv.reader(io.StringIO(text))), limits,
                        header_row)
    if not rows or not any(rows[0]):
        raise RosterError(f"文件为空或第{header_row}行没有表头")
    header = [h.strip().replace("（", "(").replace("）", ")") for h in rows[0]]
    while header and not header[-1]:
        header.pop()
    return header, rows[1:], encoding


# ---- value parsers (raise ValueError with a Chinese reason) ----------------------------------------
YES = {"是", "y", "yes", "1", "√", "✓", "true", "t", "有"}
NO = {"否", "n", "no", "0", "×", "x", "false", "f", "无"}


def parse_flag(value: str) -> bool | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in YES:
        return True
    if v in NO:
        return False
    raise ValueError(f"应为 是/否（实为“{value}”）")


def parse_money(value: str) -> Decimal | None:
    v = value.strip().replace(",", "").replace("，", "").removesuffix("元")
    if not v:
        return None
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise ValueError(f"应为金额数字（实为“{value}”）") from None
    if d < 0 or not d.is_finite():
        raise ValueError("金额不能为负数")
    return d.quantize(Decimal("0.01"))


_TIME_RANGE = re.compile(r"^(\d{1,2})[:：](\d{2})\s*[-~～至到]\s*(\d{1,2})[:：](\d{2})$")


def parse_time_range(value: str) -> tuple[dt.time | None, dt.time | None]:
    v = value.strip()
    if not v:
        return None, None
    m = _TIME_RANGE.match(v)
    if not m:
        raise ValueError(f"应为 时:分-时:分，如09:00-11:00（实为“{value}”）")
    h1, m1, h2, m2 = map(int, m.groups())
    try:
        start, end = dt.time(h1, m1), dt.time(h2, m2)
    except ValueError:
        raise ValueError(f"时间无效（“{value}”）") from None
    if end <= start:
        raise ValueError("结束时间应晚于开始时间")
    return start, end


CHANNEL_BY_LABEL = {label.lower(): key for key, label in CHANNELS.items()} | {
    "phone": "phone", "telegram": "telegram", "in_person": "in_person", "手机": "phone", "tg": "telegram",
}
UNIT_BY_LABEL = {label: key for key, label in ASSISTING_UNITS.items()} | {
    "乡镇(街道)、村(居)委员会": "township_village", "村委会": "township_village", "居委会": "township_village",
    "乡镇": "township_village", "街道": "township_village", "党政机关": "party_government",
    "群团组织": "party_government", "社工": "social_worker",
}
SEX_BY_LABEL = {"男": "M", "女": "F", "m": "M", "f": "F"}


PERSON_CHANNEL_BY_LABEL = {label.lower(): key for key, label in PERSON_CHANNELS.items()} | {
    key: key for key in PERSON_CHANNELS} | {"企微": "wecom", "政务微信": "wecom", "tg": "telegram", "手机短信": "sms"}


def parse_person_channel(channel: str, wecom_user: str, phone: str | None, default: str) -> tuple[str, str | None]:
    """(channel, WeCom UserID) of a person from the 联系渠道 and 企业微信账号 cells; ValueError (in
    Chinese) names what is wrong: an unknown channel, WeCom without its UserID, SMS without a phone."""
    key = PERSON_CHANNEL_BY_LABEL.get(channel.strip().lower()) if channel.strip() else default
    if key is None:
        raise ValueError(f"应为 {'/'.join(PERSON_CHANNELS.values())}（实为“{channel}”）")
    user = wecom_user.strip() or None
    if user is not None and not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", user):
        raise ValueError(f"企业微信账号只能由字母、数字和 _.@- 组成，最长64位（实为“{wecom_user}”）")
    if key == "wecom" and user is None:
        raise ValueError("选择企业微信时须填写企业微信账号（UserID）")
    if key == "sms" and not phone:
        raise ValueError("选择短信时须填写电话")
    return key, user


def _id_reason(value: str, today: dt.date | None = None) -> str | None:
    if re.fullmatch(r"\d(\.\d+)?[eE]\+?\d+", value.strip()):
        return "被表格软件转成了科学计数法，请把该列设为文本格式后重新填写"
    return idcard.check_id(value, today=today)


def max_length(attribute) -> int | None:
    """The most characters a user may give for a model attribute: its column's length (for a
    sealed column, the plain length it was built for); ``None`` for unbounded text."""
    col_type = attribute.property.columns[0].type
    return getattr(col_type, "plain_length", None) or getattr(col_type, "length", None)


NOTES_MAX = 2000  # 备注 is Text: bounded here, not by the column


# ---- validation: the header ---------------------------------------------------------------------
MAX_CONTACT_SLOTS = 5
MAX_FAMILY_SLOTS = 10


@dataclass(frozen=True)
class Slots:
    """The numbered column groups a header has: 紧急联系人N, 家庭成员N…, 子女N…"""

    contacts: list[int]
    household: list[int]
    family: list[int]


def _slots(header: list[str], max_household: int) -> tuple[Slots, list[RowError]]:
    errors: list[RowError] = []

    def numbers(regex: re.Pattern, bound: int, what: str, default: int | None = None) -> list[int]:
        found = set()
        for h in header:
            m = regex.match(h)
            if not m:
                continue
            n = int(m.group(1) or default or 0)
            if not 1 <= n <= bound:
                errors.append(RowError(1, h, f"{what}序号应为1-{bound}"))
            else:
                found.add(n)
        return sorted(found)

    slots = Slots(contacts=numbers(_CONTACT_RE, MAX_CONTACT_SLOTS, "紧急联系人", default=1),
                  household=numbers(_HOUSEHOLD_RE, max_household, "家庭成员（roster.max_household_members）"),
                  family=numbers(_FAMILY_RE, MAX_FAMILY_SLOTS, "子女"))
    return slots, errors


def _header_errors(header: list[str], max_household: int) -> tuple[Slots | None, list[RowError]]:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        return None, [RowError(1, c, "缺少必填列") for c in missing]
    errors = [RowError(1, h, "列名重复") for h in dict.fromkeys(h for h in header if h and header.count(h) > 1)]
    slots, slot_errors = _slots(header, max_household)
    return slots, errors + slot_errors


def validate_rows(header: list[str], rows: Iterable[list[str]], *, default_consent_visit: bool = True,
                  today: dt.date | None = None, max_household: int = RosterLimits.max_household_members,
                  header_row: int = 1) -> ParseResult:
    """Every row checked against the record form; rows are numbered as the spreadsheet shows them
    (the header on ``header_row``). A header problem is reported on the header's row."""
    slots, errors = _header_errors(header, max_household)
    if errors:
        return ParseResult([], [RowError(header_row, e.column, e.reason) for e in errors], header_row=header_row)
    warnings = [f"未识别的列“{h}”已忽略" for h in header if h and not known_header(h)]
    records: list[ElderRecord] = []
    first_row_of_id: dict[str, int] = {}
    total = 0
    for i, raw in enumerate(rows, start=header_row + 1):
        if not any(c.strip() for c in raw):
            continue  # blank line
        total += 1
        values = {h: (raw[j].strip() if j < len(raw) else "") for j, h in enumerate(header) if h}
        rec, row_errors = validate_row(_Row(i, values, today), slots, default_consent_visit)
        if rec is not None:
            idn = rec.elder["id_number"]
            if idn in first_row_of_id:
                row_errors.append(RowError(i, "公民身份号码", f"与第{first_row_of_id[idn]}行重复"))
            else:
                first_row_of_id[idn] = i
        if row_errors:
            errors.extend(row_errors)
        else:
            records.append(rec)
    return ParseResult(records, errors, total_rows=total, warnings=warnings, header_row=header_row)


# ---- validation: one row ------------------------------------------------------------------------
class _Row:
    """One roster row under validation: its values by column, and the errors found so far."""

    def __init__(self, i: int, values: dict[str, str], today: dt.date | None = None):
        self.i = i
        self.values = values
        self.today = today
        self.errors: list[RowError] = []

    def get(self, col: str) -> str:
        return self.values.get(col, "")

    def err(self, col: str, reason: str) -> None:
        self.errors.append(RowError(self.i, col, reason))

    def text(self, col: str, attribute=None, *, required: bool = False, maxlen: int | None = None) -> str | None:
        """A text cell, no longer than the model column ``attribute`` holds (or ``maxlen``)."""
        val = self.get(col)
        limit = maxlen or (max_length(attribute) if attribute is not None else None)
        if required and not val:
            self.err(col, "不能为空")
        elif limit is not None and len(val) > limit:
            self.err(col, f"过长（最多{limit}字，实为{len(val)}字）")
        return val or None

    def flag(self, col: str, default: bool | None = None) -> bool | None:
        try:
            got = parse_flag(self.get(col))
        except ValueError as exc:
            self.err(col, str(exc))
            return default
        return default if got is None else got

    def phone(self, col: str, required: bool = False) -> str | None:
        """A phone number in E.164 (``+8613812345678``), or the reason it is not one."""
        val = self.get(col)
        if not val and not required:
            return None
        try:
            return phone.parse(val)
        except phone.PhoneError as exc:
            self.err(col, str(exc))
            return None

    def channel(self, col: str, wecom_col: str, number: str | None, default: str) -> tuple[str, str | None]:
        """联系渠道 and 企业微信账号 (see ``parse_person_channel``); the default when they are wrong."""
        try:
            return parse_person_channel(self.get(col), self.get(wecom_col), number, default)
        except ValueError as exc:
            self.err(col if "企业微信账号" not in str(exc) else wecom_col, str(exc))
            return default, None

    def id_number(self, col: str, required: bool = False) -> str | None:
        val = self.get(col)
        if not val:
            if required:
                self.err(col, "不能为空")
            return None
        reason = _id_reason(val, self.today)
        if reason:
            self.err(col, reason)
            return None
        return idcard.normalize_id(val)

    def sex(self, col: str, id_number: str | None) -> str | None:
        val = self.get(col)
        from_id = idcard.sex_of(id_number) if id_number else None
        if not val:
            return from_id
        s = SEX_BY_LABEL.get(val.lower())
        if s is None:
            self.err(col, f"应为 男/女（实为“{val}”）")
            return from_id
        if from_id and s != from_id:
            self.err(col, f"与公民身份号码不符（号码显示为{SEXES[from_id]}）")
        return s


def validate_row(r: _Row, slots: Slots, default_consent_visit: bool = True) -> tuple[ElderRecord | None, list[RowError]]:
    """One row as a record (sections 一 to 四), or its errors (the record then only when the ID is
    valid, so duplicates are still found)."""
    e = _elder(r)
    _categories(r, e)
    _preferences(r, e, default_consent_visit)
    contacts = _contacts(r, slots.contacts)
    household = _household(r, slots.household, e)
    living = _living(r)
    assistance = _assistance(r)
    family = _family(r, slots.family)
    if r.errors:
        return (ElderRecord(r.i, e) if e["id_number"] else None), r.errors
    return ElderRecord(r.i, e, contacts, household, living, assistance, family), r.errors


def _elder(r: _Row) -> dict:
    """Section 一: who and where."""
    e: dict = {
        "county": r.text("县(市、区)", Elder.county, required=True),
        "township": r.text("乡镇(街道)", Elder.township, required=True),
        "village": r.text("村(居)", Elder.village, required=True),
        "address": r.text("详细地址", Elder.address),
        "lives_at_registration": r.flag("是否居住在户籍所在地", True),
        "name": r.text("姓名", Elder.name, required=True),
        "id_number": r.id_number("公民身份号码", required=True),
    }
    e["sex"] = r.sex("性别", e["id_number"])
    e["birth_date"] = idcard.birth_date(e["id_number"]) if e["id_number"] else None
    e["phone"] = r.phone("联系电话")
    e["is_disabled"] = r.flag("是否残疾", False)
    e["disability_cert_no"] = r.text("残疾人证号", Elder.disability_cert_no)
    if e["disability_cert_no"] and not e["is_disabled"]:
        r.err("是否残疾", "填写了残疾人证号，应为“是”")
    e["notes"] = r.text("备注", maxlen=NOTES_MAX)
    return e


def _categories(r: _Row, e: dict) -> None:
    """服务对象: at least one of the six categories."""
    for attr, col in CATEGORY_HEADERS.items():
        e[attr] = r.flag(col, False)
    if not any(e[a] for a in CATEGORY_HEADERS) and not any(x.column in CATEGORY_HEADERS.values() for x in r.errors):
        r.err("服务对象类别", "独居、空巢、留守、失能、重残、计划生育特殊家庭至少一项应为“是”")


def _preferences(r: _Row, e: dict, default_consent_visit: bool) -> None:
    """Consent, the preferred time and channel."""
    e["consent_visit"] = r.flag("同意探访", default_consent_visit)
    e["consent_share_family"] = r.flag("同意向家属共享", False)
    try:
        e["preferred_call_start"], e["preferred_call_end"] = parse_time_range(r.get("首选联系时间"))
    except ValueError as exc:
        r.err("首选联系时间", str(exc))
    ch = r.get("首选联系方式")
    e["preferred_channel"] = "phone"
    if ch:
        if ch.lower() not in CHANNEL_BY_LABEL:
            r.err("首选联系方式", f"应为 电话/Telegram/上门（实为“{ch}”）")
        else:
            e["preferred_channel"] = CHANNEL_BY_LABEL[ch.lower()]


def _contacts(r: _Row, slots: list[int]) -> list[dict]:
    """紧急联系人N: name and phone; the first one is required."""
    contacts = []
    for n in slots:
        name_col, rel_col, phone_col, ch_col, wecom_col = contact_headers(n)
        if not r.get(name_col) and not r.get(phone_col) and not r.get(rel_col):
            if n == 1:
                r.err(name_col, "不能为空（至少一位紧急联系人）")
            continue
        name = r.text(name_col, EmergencyContact.name)
        if not name:
            r.err(name_col, "不能为空（已填写电话或关系）")
        number = r.phone(phone_col, required=True)
        channel, wecom_user = r.channel(ch_col, wecom_col, number or r.get(phone_col), "sms")
        contacts.append({"priority": n, "name": name or "", "relation": r.text(rel_col, EmergencyContact.relation),
                         "phone": number, "channel": channel, "wecom_user_id": wecom_user})
    return contacts


def _household(r: _Row, slots: list[int], elder: dict) -> list[dict]:
    """Section 二: 家庭成员N, slot numbers bounded by the header check."""
    household = []
    for n in slots:
        cols = household_headers(n)
        if not any(r.get(c) for c in cols):
            continue
        name_col, sex_col, id_col, rel_col, health_col, dibao_col, tekun_col = cols
        mid = r.id_number(id_col)
        name = r.text(name_col, HouseholdMember.name)
        if not name:
            r.err(name_col, "不能为空（该家庭成员已填写其他信息）")
        elif mid and mid == elder["id_number"] and name != elder["name"]:
            r.err(id_col, "与老人本人的公民身份号码相同但姓名不同")
        household.append({
            "seq": n, "name": name or "", "sex": r.sex(sex_col, mid), "id_number": mid,
            "relation_to_head": r.text(rel_col, HouseholdMember.relation_to_head),
            "health": r.text(health_col, HouseholdMember.health),
            "on_dibao": r.flag(dibao_col, False), "on_tekun": r.flag(tekun_col, False),
        })
    return household


def _living(r: _Row) -> dict | None:
    """Section 三: safety flags and money; ``None`` when nothing is filled in."""
    living = {}
    for col, key in (("饮水安全", "drinking_water_safe"), ("用电安全", "electricity_safe"), ("住房安全", "housing_safe")):
        living[key] = r.flag(col, None)
    for col, key in (("家庭月收入(元)", "household_monthly_income"), ("月养老金及补贴(元)", "monthly_benefits")):
        try:
            living[key] = parse_money(r.get(col))
        except ValueError as exc:
            r.err(col, str(exc))
            living[key] = None
    return living if any(x is not None for x in living.values()) else None


ASSISTANCE_COLUMNS = (("帮扶单位名称", "unit_name", Assistance.unit_name),
                      ("帮扶责任人", "responsible_person", Assistance.responsible_person),
                      ("帮扶措施", "measures", None))


def _assistance(r: _Row) -> list[dict]:
    """Section 四: several entries in one cell group, separated by ；"""
    parts = {c: _split(r.get(c)) for c in ("帮扶单位", *(c for c, _k, _a in ASSISTANCE_COLUMNS))}
    units = "/".join(ASSISTING_UNITS.values())
    out = []
    for k in range(max(len(p) for p in parts.values())):
        label = (parts["帮扶单位"][k] if k < len(parts["帮扶单位"]) else "").replace("（", "(").replace("）", ")")
        if not label:
            r.err("帮扶单位", f"第{k + 1}项缺少帮扶单位类型（{units}）")
            continue
        if label not in UNIT_BY_LABEL:
            r.err("帮扶单位", f"“{label}”不是表中的帮扶单位类型（{units}）")
            continue
        entry = {"unit_type": UNIT_BY_LABEL[label]}
        for col, key, attribute in ASSISTANCE_COLUMNS:
            value = (parts[col][k] if k < len(parts[col]) else "") or None
            limit = max_length(attribute) if attribute is not None else NOTES_MAX
            if value and len(value) > limit:
                r.err(col, f"第{k + 1}项过长（最多{limit}字，实为{len(value)}字）")
            entry[key] = value
        out.append(entry)
    return out


def _family(r: _Row, slots: list[int]) -> list[dict]:
    """子女N: the children who may link on Telegram and be told."""
    family = []
    for n in slots:
        cols = family_headers(n)
        if not any(r.get(c) for c in cols):
            continue
        name_col, rel_col, phone_col, city_col, ch_col, wecom_col = cols
        name = r.text(name_col, FamilyMember.name)
        if not name:
            r.err(name_col, "不能为空（该子女已填写其他信息）")
        number = r.phone(phone_col)
        channel, wecom_user = r.channel(ch_col, wecom_col, number or r.get(phone_col), "telegram")
        family.append({"name": name or "", "relation": r.text(rel_col, FamilyMember.relation), "phone": number,
                       "city": r.text(city_col, FamilyMember.city), "channel": channel, "wecom_user_id": wecom_user})
    return family


def _split(value: str) -> list[str]:
    if not value.strip():
        return []
    return [p.strip() for p in re.split(r"[；;]", value)]


def parse_file(path: Path | str, *, default_consent_visit: bool = True, limits: RosterLimits | None = None,
               mapping=None) -> ParseResult:
    """Read, (map,) validate. ``mapping``: a :class:`data.roster_mapping.HeaderMapping` for a
    spreadsheet with other headers; errors then name their column too."""
    limits = limits or RosterLimits()
    header_row = mapping.header_row if mapping is not None else 1
    header, rows, encoding = read_table(Path(path), limits=limits, header_row=header_row,
                                        sheet=mapping.sheet if mapping is not None else None)
    if mapping is not None:
        header, rows = mapping.to_ours(header, rows)
    result = validate_rows(header, rows, default_consent_visit=default_consent_visit,
                           max_household=limits.max_household_members, header_row=header_row)
    if mapping is not None:
        result.errors = [mapping.name_error(e) for e in result.errors]
    result.encoding = encoding
    return result


# ---- import ------------------------------------------------------------------------------------
def import_records(session: Session, records: list[ElderRecord], *,
                   progress: Callable[[int], None] | None = None) -> ImportResult:
    """Create or update (by ID number, through its hash) every record in ``session``; the caller commits once."""
    result = ImportResult()
    ids = [r.elder["id_number"] for r in records]
    existing: dict[str, Elder] = {}
    for chunk in range(0, len(ids), 500):
        stmt = (select(Elder).where(Elder.id_number_hash.in_(ids[chunk:chunk + 500]))
                .options(selectinload(Elder.emergency_contacts), selectinload(Elder.household_members),
                         selectinload(Elder.living_conditions), selectinload(Elder.assistance),
                         selectinload(Elder.family_members)))
        existing.update({e.id_number: e for e in session.scalars(stmt)})
    for rec in records:
        elder = existing.get(rec.elder["id_number"])
        if elder is None:
            elder = Elder()
            session.add(elder)
            result.created += 1
        else:
            result.updated += 1
        _apply(session, elder, rec)
        if progress:
            progress(1)
    session.flush()
    return result


def _apply(session: Session, elder: Elder, rec: ElderRecord) -> None:
    for k, val in rec.elder.items():
        setattr(elder, k, val)
    # emergency contacts and children keep their Telegram links when the same name comes back
    old = {c.name: c for c in elder.emergency_contacts}
    elder.emergency_contacts = [_update(old.pop(c["name"], None) or EmergencyContact(), c) for c in rec.contacts]
    old_f = {f.name: f for f in elder.family_members}
    elder.family_members = [_update(old_f.pop(f["name"], None) or FamilyMember(), f) for f in rec.family]
    # (elder_id, seq) is unique: reuse the row of the same seq instead of delete + insert
    old_h = {m.seq: m for m in elder.household_members}
    elder.household_members = [_update(old_h.pop(m["seq"], None) or HouseholdMember(), m) for m in rec.household]
    elder.assistance = [Assistance(**a) for a in rec.assistance]
    if rec.living is None:
        elder.living_conditions = None
    elif elder.living_conditions is None:
        elder.living_conditions = LivingConditions(**rec.living)
    else:
        _update(elder.living_conditions, rec.living)


def _update(obj, values: dict):
    for k, val in values.items():
        setattr(obj, k, val)
    return obj


# ---- export ------------------------------------------------------------------------------------
def _flag(value: bool | None) -> str:
    return "" if value is None else ("是" if value else "否")


def _money(value) -> str:
    return "" if value is None else f"{Decimal(value).quantize(Decimal('0.01'))}"


def _phone(value: str | None) -> str:
    return phone.national(value) if value else ""


def elder_row(elder: Elder) -> dict[str, str]:
    """The roster columns of one elder (full ID and phone numbers: exports are for authorised staff;
    phones in the national form people write, 13812345678 / 0371-12345678, read back as E.164)."""
    row = {
        "县(市、区)": elder.county, "乡镇(街道)": elder.township, "村(居)": elder.village,
        "详细地址": elder.address or "", "是否居住在户籍所在地": _flag(elder.lives_at_registration),
        "姓名": elder.name, "性别": SEXES.get(elder.sex, ""), "公民身份号码": elder.id_number,
        "联系电话": _phone(elder.phone), "是否残疾": _flag(elder.is_disabled),
        "残疾人证号": elder.disability_cert_no or "",
        "同意探访": _flag(elder.consent_visit), "同意向家属共享": _flag(elder.consent_share_family),
        "首选联系时间": (f"{elder.preferred_call_start:%H:%M}-{elder.preferred_call_end:%H:%M}"
                   if elder.preferred_call_start and elder.preferred_call_end else ""),
        "首选联系方式": CHANNELS.get(elder.preferred_channel, ""), "备注": elder.notes or "",
    }
    for attr, col in CATEGORY_HEADERS.items():
        row[col] = _flag(getattr(elder, attr))
    for c in elder.emergency_contacts:
        row.update(dict(zip(contact_headers(c.priority), [c.name, c.relation or "", _phone(c.phone),
                                                         PERSON_CHANNELS.get(c.channel, ""), c.wecom_user_id or ""])))
    lc = elder.living_conditions
    if lc is not None:
        row.update({"饮水安全": _flag(lc.drinking_water_safe), "用电安全": _flag(lc.electricity_safe),
                    "住房安全": _flag(lc.housing_safe), "家庭月收入(元)": _money(lc.household_monthly_income),
                    "月养老金及补贴(元)": _money(lc.monthly_benefits)})
    if elder.assistance:
        row["帮扶单位"] = SEP.join(ASSISTING_UNITS[a.unit_type] for a in elder.assistance)
        for col, attr in (("帮扶单位名称", "unit_name"), ("帮扶责任人", "responsible_person"), ("帮扶措施", "measures")):
            vals = [getattr(a, attr) or "" for a in elder.assistance]
            row[col] = SEP.join(vals) if any(vals) else ""
    for m in elder.household_members:
        cols = household_headers(m.seq)
        row.update(dict(zip(cols, [m.name, SEXES.get(m.sex or "", ""), m.id_number or "", m.relation_to_head or "",
                                   m.health or "", _flag(m.on_dibao), _flag(m.on_tekun)])))
    for n, f in enumerate(sorted(elder.family_members, key=lambda f: f.id or 0), start=1):
        row.update(dict(zip(family_headers(n), [f.name, f.relation or "", _phone(f.phone), f.city or "",
                                                PERSON_CHANNELS.get(f.channel, ""), f.wecom_user_id or ""])))
    return row


def load_elders(session: Session, *, county=None, township=None, village=None) -> list[Elder]:
    stmt = (select(Elder).options(selectinload(Elder.emergency_contacts), selectinload(Elder.household_members),
                                  selectinload(Elder.living_conditions), selectinload(Elder.assistance),
                                  selectinload(Elder.family_members))
            .order_by(Elder.county, Elder.township, Elder.village, Elder.id))
    for col, val in ((Elder.county, county), (Elder.township, township), (Elder.village, village)):
        if val:
            stmt = stmt.where(col == val)
    return list(session.scalars(stmt))


def export_headers(elders: list[Elder], max_household: int) -> list[str]:
    hh = max([max_household] + [m.seq for e in elders for m in e.household_members])
    fam = max([FAMILY_SLOTS] + [len(e.family_members) for e in elders])
    ec = max([EMERGENCY_SLOTS] + [c.priority for e in elders for c in e.emergency_contacts])
    return headers(hh, fam, ec)


def write_table(path: Path | str, header: list[str], rows: list[dict[str, str]], *, encoding: str = "utf-8-sig",
                blank_rows: int = 0, preamble: Iterable[list[str]] = (), text_columns: set[str] | None = None) -> Path:
    """CSV (UTF-8 with BOM so that Excel opens it correctly, or gb18030) or XLSX (ID column as text).

    ``blank_rows``: XLSX templates get that many empty rows whose ID/phone cells are already text.
    ``preamble``: rows written above the header (a title). ``text_columns``: headers kept as text
    in XLSX (default: ours ending in 公民身份号码, 电话, 证号).
    """
    preamble = list(preamble)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        import openpyxl
        from openpyxl.utils import get_column_letter

        wb = openpyxl.Workbook(write_only=True)
        ws = wb.create_sheet("老年人花名册")
        for j, h in enumerate(header, start=1):
            ws.column_dimensions[get_column_letter(j)].width = max(10, min(30, len(h) * 2 + 2))
        ws.freeze_panes = f"A{len(preamble) + 2}"
        # ID and phone columns as text cells: long numbers never become 4.10225E+17 when edited
        text_cols = {j for j, h in enumerate(header)
                     if (h in text_columns if text_columns is not None else h.endswith(("公民身份号码", "电话", "证号")))}
        for line in preamble:
            ws.append(line)
        ws.append(header)

        def cell(j, value):
            c = sheets.text_cell(ws, value)  # never a formula (data/sheets.py)
            if j in text_cols:
                c.number_format = "@"
            return c

        for r in rows:
            ws.append([cell(j, r.get(h, "")) for j, h in enumerate(header)])
        for _ in range(blank_rows):
            ws.append([cell(j, None) for j in range(len(header))])
        wb.save(path)
    elif suffix == ".csv":
        with open(path, "w", encoding=encoding, newline="") as fh:
            w = csv.writer(fh)
            w.writerows(preamble)
            w.writerow(header)
            for r in rows:
                w.writerow([sheets.sheet_value(r.get(h, "")) for h in header])  # '=… for formula-like text
    else:
        raise RosterError(f"不支持的导出类型 {suffix or '(无扩展名)'}：请用 .csv 或 .xlsx")
    return path


def export_file(session: Session, path: Path | str, *, max_household: int = 6, encoding: str = "utf-8-sig",
                county=None, township=None, village=None, mapping=None) -> int:
    """The roster of an area; with ``mapping`` (:class:`data.roster_mapping.HeaderMapping`) in the
    county's own layout: their headers, their values, their title rows."""
    elders = load_elders(session, county=county, township=township, village=village)
    header, rows = export_headers(elders, max_household), [elder_row(e) for e in elders]
    if mapping is None:
        write_table(path, header, rows, encoding=encoding)
    else:
        header, rows = mapping.to_theirs(rows)
        write_table(path, header, rows, encoding=encoding, preamble=mapping.preamble(),
                    text_columns=mapping.text_columns())
    return len(elders)


def records_from_db(session: Session) -> list[ElderRecord]:
    """Every stored elder as a record, by re-validating its exported row (used by round-trip checks)."""
    elders = load_elders(session)
    hdr = export_headers(elders, 0)
    most = max([RosterLimits.max_household_members] + [m.seq for e in elders for m in e.household_members])
    result = validate_rows(hdr, [[elder_row(e).get(h, "") for h in hdr] for e in elders], max_household=most)
    if result.errors:
        raise RosterError("; ".join(map(str, result.errors[:5])))
    return result.records


# ---- visitors --------------------------------------------------------------------------------------
VISITOR_COLUMNS = ("姓名", "角色", "电话", "县(市、区)", "乡镇(街道)", "村(居)", "联系渠道", "企业微信账号")
VISITOR_HEADERS = list(VISITOR_COLUMNS)


def parse_visitors(path: Path | str, *, limits: RosterLimits | None = None) -> tuple[list[dict], list[RowError]]:
    """A visitors file (header ``VISITOR_COLUMNS``; 联系渠道 and 企业微信账号 optional): records for
    ``repo.upsert_visitors`` and every row's errors (row number, column, reason). Blank rows are
    skipped. A visitor's channel defaults to Telegram (SMS when not linked)."""
    from data.repo import visitor_role

    header, rows, _enc = read_table(Path(path), limits=limits)
    errors = [RowError(1, c, "缺少必填列") for c in ("姓名", "角色") if c not in header]
    if errors:
        return [], errors
    records = []
    for i, raw in enumerate(rows, start=2):
        r = _Row(i, {h: (raw[j].strip() if j < len(raw) else "") for j, h in enumerate(header)})
        if not any(r.values.values()):
            continue
        rec = {"name": r.text("姓名", Visitor.name, required=True) or "", "phone": r.phone("电话"),
               "county": r.text("县(市、区)", Visitor.county), "township": r.text("乡镇(街道)", Visitor.township),
               "village": r.text("村(居)", Visitor.village)}
        try:
            rec["role"] = visitor_role(r.get("角色"))
        except ValueError as exc:
            r.err("角色", str(exc))
        rec["channel"], rec["wecom_user_id"] = r.channel("联系渠道", "企业微信账号", rec["phone"], "telegram")
        errors.extend(r.errors)
        records.append(rec)
    return records, errors
