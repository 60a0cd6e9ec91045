"""The report tables' cells (numbers, text, times), and text from the inventory (a
commune's name, its code) as spreadsheet cells that stay text.

A spreadsheet takes a cell beginning with ``=``, ``+``, ``-`` or ``@`` (and, in some
locales, their full-width forms) for a formula: ``=HYPERLINK(...)`` or a DDE call in a
report opened at the province would run what an inventory's author wrote. In CSV such a
cell is escaped as OWASP advises, with a leading single quote; in XLSX it is written as a
text cell, marked with Excel's quote prefix so that editing it keeps it text. Numbers stay
numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # openpyxl is loaded for an XLSX only
    from openpyxl.cell.cell import Cell as XlsxCell
    from openpyxl.cell.cell import MergedCell

#: Tab and CR too: a spreadsheet may drop them and read the rest as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# Characters XML 1.0 cannot hold (control characters, lone surrogates, U+FFFE and
# U+FFFF): openpyxl and Word refuse them, and one probe's error would fail the report.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

Value = str | int | float | None


@dataclass(frozen=True)
class Duration:
    """A time in a table: "3:00" (hours:minutes) in text, a time value in a spreadsheet."""

    seconds: float

    def __str__(self) -> str:
        minutes = round(self.seconds / 60)
        return f"{minutes // 60}:{minutes % 60:02d}"


#: A report table's cell, and a table: its columns and its rows.
Cell = str | int | float | Duration | None
Table = tuple[list[str], list[list[Cell]]]


def starts_formula(text: str) -> bool:
    return text.startswith(FORMULA_STARTS)


def csv_cell(value: Value) -> Value:
    """The value for a CSV cell: text that would start a formula gets a leading quote."""
    if isinstance(value, str) and starts_formula(value):
        return "'" + value
    return value


def xml_text(text: str) -> str:
    """``text`` without the control characters XML forbids (an XLSX or DOCX holding one
    could not be written)."""
    return _NOT_XML.sub("", text)


def xlsx_value(value: Value) -> Value:
    """The value for an XLSX cell: text without the control characters XML forbids."""
    if isinstance(value, str):
        return xml_text(value)
    return value


def keep_text(cells: Iterable[XlsxCell | MergedCell]) -> None:
    """Cells openpyxl took for formulas (text starting with "=") become text again, and
    every text that a spreadsheet would read as a formula once edited gets the quote
    prefix."""
    from openpyxl.cell.cell import Cell as XlsxCell

    for cell in cells:
        if (
            isinstance(cell, XlsxCell)
            and isinstance(cell.value, str)
            and starts_formula(cell.value)
        ):
            cell.data_type = "s"
            cell.quotePrefix = True
