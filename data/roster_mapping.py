"""Header-mapping files: read and write a county's own spreadsheet (e.g. an export of the
civil-affairs 金民工程 system) with our roster's rules, without retyping it.

A mapping is YAML (sample: ``data/samples/mapping_jinmin.yml``)::

    name: 金民工程老年人信息导出
    header_row: 2                 # their header row; rows above it (a title) are skipped
    title: 特殊困难老年人信息表     # written above the header on export (when header_row > 1)
    sheet: 老年人信息              # XLSX worksheet (default: the first)
    columns:                      # our column: their header (their order is the export's order)
      姓名: 老人姓名
      公民身份号码: 身份证号
    values:                       # our column (wildcards * allowed): {their value: our value}
      性别: {"1": 男, "2": 女}
      是否*: {"1": 是, "0": 否}
    defaults:                     # our column: the value of every row their sheet lacks it in
      县(市、区): 兰考县

Import renames their headers to ours, maps their values, fills defaults, then validates as
usual; errors name both columns (``身份证号（公民身份号码）``). Export writes only the mapped
columns, under their headers, with values mapped back (the first of their values for ours).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data.roster import RosterError, RowError, known_header

MAX_MAPPING_BYTES = 256 * 1024


def _text(value, where: str) -> str:
    if isinstance(value, bool):
        raise RosterError(f"映射文件 {where}: yes/no/true/false/on/off 在YAML中是布尔值，请加引号（如 \"yes\"）")
    if value is None or isinstance(value, (dict, list)):
        raise RosterError(f"映射文件 {where}: 应为文字（实为 {value!r}）")
    return str(value).strip()


def _table(raw, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RosterError(f"映射文件 {where}: 应为“键: 值”的映射")
    return {_text(k, f"{where}.{k}"): _text(v, f"{where}.{k}") for k, v in raw.items()}


@dataclass
class HeaderMapping:
    columns: dict[str, str]                                     # ours -> theirs
    values: dict[str, dict[str, str]] = field(default_factory=dict)  # our column pattern -> {theirs: ours}
    defaults: dict[str, str] = field(default_factory=dict)
    header_row: int = 1
    sheet: str | None = None
    title: str = ""
    name: str = ""

    @classmethod
    def load(cls, path: str | Path) -> HeaderMapping:
        path = Path(path)
        if not path.is_file():
            raise RosterError(f"映射文件不存在: {path}")
        if path.stat().st_size > MAX_MAPPING_BYTES:
            raise RosterError(f"映射文件过大: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise RosterError(f"映射文件 {path.name} 不是有效的YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise RosterError(f"映射文件 {path.name} 应为映射（columns/values/defaults）")
        return cls.from_dict(raw, path.name)

    @classmethod
    def from_dict(cls, raw: dict, where: str = "mapping") -> HeaderMapping:
        unknown = set(raw) - {"name", "header_row", "sheet", "title", "columns", "values", "defaults"}
        if unknown:
            raise RosterError(f"映射文件 {where}: 不认识的键 {', '.join(sorted(map(str, unknown)))}")
        values = raw.get("values") or {}
        if not isinstance(values, dict):
            raise RosterError(f"映射文件 {where}: values 应为“本系统列: {{对方值: 本系统值}}”")
        header_row = raw.get("header_row", 1)
        if not isinstance(header_row, int) or isinstance(header_row, bool) or not 1 <= header_row <= 50:
            raise RosterError(f"映射文件 {where}: header_row 应为1-50的整数")
        mapping = cls(columns=_table(raw.get("columns"), f"{where} columns"),
                      values={_text(k, f"{where} values"): _table(v, f"{where} values.{k}") for k, v in values.items()},
                      defaults=_table(raw.get("defaults"), f"{where} defaults"), header_row=header_row,
                      sheet=_text(raw["sheet"], f"{where} sheet") if raw.get("sheet") else None,
                      title=_text(raw.get("title") or "", f"{where} title"), name=_text(raw.get("name") or "", "name"))
        mapping.check(where)
        return mapping

    def check(self, where: str) -> None:
        if not self.columns:
            raise RosterError(f"映射文件 {where}: columns 不能为空")
        for ours in [*self.columns, *self.defaults]:
            if not known_header(ours):
                raise RosterError(f"映射文件 {where}: “{ours}”不是本系统花名册的列名")
        theirs = list(self.columns.values())
        twice = sorted({t for t in theirs if theirs.count(t) > 1})
        if twice:
            raise RosterError(f"映射文件 {where}: 对方列“{'、'.join(twice)}”对应了多个本系统列")

    # -- import ------------------------------------------------------------------------------------
    def _value_map(self, ours: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for pattern, table in self.values.items():
            if fnmatch.fnmatchcase(ours, pattern):
                merged.update(table)
        return merged

    def to_ours(self, header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
        """Their header and rows as our columns and values (defaults added as columns)."""
        by_theirs = {t.replace("（", "(").replace("）", ")"): o for o, t in self.columns.items()}
        ours = [by_theirs.get(h, h) for h in header]
        maps = [self._value_map(h) for h in ours]
        extra = [c for c in self.defaults if c not in ours]
        out_rows = []
        for raw in rows:
            cells = [(maps[j].get(c.strip(), c) if j < len(maps) else c) for j, c in enumerate(raw)]
            cells += [""] * (len(ours) - len(cells))
            for j, col in enumerate(ours):
                if col in self.defaults and not cells[j].strip() and any(raw):
                    cells[j] = self.defaults[col]
            out_rows.append(cells + ([self.defaults[c] for c in extra] if any(raw) else [""] * len(extra)))
        return ours + extra, out_rows

    def name_error(self, error: RowError) -> RowError:
        """The error naming their column too: 身份证号（公民身份号码）."""
        theirs = self.columns.get(error.column)
        if not theirs or theirs == error.column:
            return error
        return RowError(error.row, f"{theirs}（{error.column}）", error.reason)

    # -- export ------------------------------------------------------------------------------------
    def to_theirs(self, rows: list[dict[str, str]]) -> tuple[list[str], list[dict[str, str]]]:
        """Our export rows under their headers, in their order, with their values."""
        back = {ours: {v: k for k, v in reversed(list(self._value_map(ours).items()))} for ours in self.columns}
        header = list(self.columns.values())
        out = [{theirs: back[ours].get(row.get(ours, ""), row.get(ours, "")) for ours, theirs in self.columns.items()}
               for row in rows]
        return header, out

    def preamble(self) -> list[list[str]]:
        """The rows above their header on export: the title, then blank rows."""
        if self.header_row <= 1:
            return []
        return [[self.title]] + [[] for _ in range(self.header_row - 2)]

    def text_columns(self) -> set[str]:
        """Their headers of our ID, phone and certificate columns (kept as text in XLSX)."""
        return {t for o, t in self.columns.items() if o.endswith(("公民身份号码", "电话", "证号"))}
