"""The monthly report as Markdown, CSV, HTML or XLSX, in Vietnamese (default) or English.

The Vietnamese layout follows the headings of the province's own reports:
"Hệ thống phòng chống mã độc", "Mạng truyền số liệu chuyên dùng", "Hội nghị
truyền hình trực tuyến", then the alerts behind them.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from collector.common.localtime import local
from collector.common.words import KINDS, Language
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import CommuneMonth, MonthlyReport
from collector.outputs.report.cells import csv_cell, keep_text, xlsx_value
from collector.outputs.report.issuer import Issuer
from collector.outputs.report.sentences import all_sentences

Format = Literal["md", "csv", "html", "xlsx", "docx"]


@dataclass(frozen=True)
class Duration:
    """A time in a table: "3:00" (hours:minutes) in text, a time value in a spreadsheet."""

    seconds: float

    def __str__(self) -> str:
        minutes = round(self.seconds / 60)
        return f"{minutes // 60}:{minutes % 60:02d}"


Cell = str | int | float | Duration | None
Table = tuple[list[str], list[list[Cell]]]

#: The sheet names' keys in the translations, in the tables' order (a sheet name is at
#: most 31 characters: the headings are too long).
SHEETS = ("antimalware_sheet", "network_sheet", "conference_sheet", "alerts_sheet")


def _number(value: float | None, digits: int = 2) -> Cell:
    return None if value is None else round(value, digits)


def sheet_name(text: str, limit: int = 31) -> str:
    """``text`` as a sheet name: cut at a word's end, never within one."""
    text = "".join(" " if c in "[]:*?/\\" else c for c in text).strip()
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    cut = head.rsplit(" ", 1)[0].rstrip(" .,-") if " " in head else ""
    return cut or text[:limit]


def tables(report: MonthlyReport, language: Language) -> list[tuple[str, Table]]:
    """The report's sections: (heading, (columns, rows)); the last row of each is the total."""
    t = TEXT[language]
    rows = [*enumerate(report.communes, 1), (None, report.total)]

    def label(number: int | None, c: CommuneMonth) -> list[Cell]:
        return [number if number is not None else "", c.name or t["total"], c.code]

    def section(columns: list[str], cells: Callable[[CommuneMonth], list[Cell]]) -> Table:
        head = [t["no"], t["commune"], t["code"], *columns]
        return head, [[*label(n, c), *cells(c)] for n, c in rows]

    kinds = KINDS[language]
    return [
        (
            t["antimalware"],
            section(
                [t["pcs"], t["pcs_expected"], t["protected"], t["old"]],
                lambda c: [
                    c.pcs_reporting,
                    c.pcs_expected,
                    _number(c.protected_percent),
                    _number(c.old_signatures_percent),
                ],
            ),
        ),
        (
            t["network"],
            section(
                [
                    t["availability"],
                    t["downtime"],
                    t["outages"],
                    t["availability_excl"],
                    t["maintenance"],
                ],
                lambda c: [
                    _number(c.line_availability, 3),
                    Duration(c.line_downtime_s),
                    c.line_outages,
                    _number(c.line_availability_excl_maintenance, 3),
                    Duration(c.line_maintenance_s),
                ],
            ),
        ),
        (
            t["conference"],
            section(
                [t["polycoms"], t["polycoms_expected"], t["ready"], t["ready_excl"]],
                lambda c: [
                    c.polycoms_reporting,
                    c.polycoms_expected,
                    _number(c.polycom_ready_percent),
                    _number(c.polycom_ready_percent_excl_maintenance),
                ],
            ),
        ),
        (
            t["alerts"],
            (
                [t["kind"], t["alert_count"], t["acked"], t["ack_time"]],
                [
                    [kinds.get(k.rule, k.rule), k.count, k.acked, _number(k.mean_ack_minutes, 1)]
                    for k in report.alert_kinds
                ]
                + [
                    [
                        t["total"],
                        report.total.alerts,
                        report.total.alerts_acked,
                        _number(report.total.mean_ack_minutes, 1),
                    ]
                ],
            ),
        ),
    ]


def _heading(report: MonthlyReport, language: Language) -> list[str]:
    t = TEXT[language]
    year, month = report.month.split("-")
    when = local(report.generated_at).strftime("%d/%m/%Y %H:%M")
    generated = t["generated"].format(when=when)
    if not report.has_data:
        generated += " " + no_data(report, language)
    return [
        t["title"],
        t["period"].format(month=month, year=year, province=report.province_name),
        generated,
    ]


def no_data(report: MonthlyReport, language: Language) -> str:
    """What a report of a month with nothing monitored says instead of figures."""
    year, month = report.month.split("-")
    return TEXT[language]["no_data"].format(month=month, year=year)


def cell_text(value: Cell, language: Language) -> str:
    """A cell as text: "—" for none, the language's decimal sign."""
    if value is None:
        return TEXT[language]["none"]
    if isinstance(value, float) and language == "vi":
        return f"{value:g}".replace(".", ",")  # Vietnamese decimal comma
    return str(value)


_text = cell_text


def markdown(report: MonthlyReport, language: Language = "vi") -> str:
    title, period, generated = _heading(report, language)
    out = [f"# {title}", "", f"**{period}**", "", f"_{generated}_", ""]
    said = all_sentences(report, language)
    for index, (heading, (columns, rows)) in enumerate(tables(report, language)):
        out += [f"## {heading}", "", said[index], "", "| " + " | ".join(columns) + " |"]
        out.append("|" + "|".join("---" for _ in columns) + "|")
        out += ["| " + " | ".join(_text(v, language) for v in row) + " |" for row in rows]
        out.append("")
    out.append(TEXT[language]["notes"])
    return "\n".join(out) + "\n"


def csv_text(report: MonthlyReport, language: Language = "vi") -> str:
    """One row per commune with every figure, then the province; numbers with a dot,
    times as hours:minutes. Text that a spreadsheet would take for a formula is
    escaped (cells.csv_cell)."""
    t = TEXT[language]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def row(values: list[Cell]) -> None:
        writer.writerow([csv_cell(str(v) if isinstance(v, Duration) else v) for v in values])

    row(
        [
            t["commune"],
            t["code"],
            t["pcs"],
            t["pcs_expected"],
            t["protected"],
            t["old"],
            t["availability"],
            t["downtime"],
            t["outages"],
            t["availability_excl"],
            t["maintenance"],
            t["polycoms"],
            t["polycoms_expected"],
            t["ready"],
            t["ready_excl"],
            t["alert_count"],
            t["acked"],
            t["ack_time"],
        ]
    )
    for c in [*report.communes, report.total]:
        row(
            [
                c.name or t["total"],
                c.code,
                c.pcs_reporting,
                c.pcs_expected,
                _number(c.protected_percent),
                _number(c.old_signatures_percent),
                _number(c.line_availability, 3),
                str(Duration(c.line_downtime_s)),
                c.line_outages,
                _number(c.line_availability_excl_maintenance, 3),
                str(Duration(c.line_maintenance_s)),
                c.polycoms_reporting,
                c.polycoms_expected,
                _number(c.polycom_ready_percent),
                _number(c.polycom_ready_percent_excl_maintenance),
                c.alerts,
                c.alerts_acked,
                _number(c.mean_ack_minutes, 1),
            ]
        )
    return buffer.getvalue()


def html_text(report: MonthlyReport, language: Language = "vi") -> str:
    title, period, generated = _heading(report, language)
    e = html.escape
    parts = [
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">',
        f"<title>{e(title)} — {e(period)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:2em}th,td{border:1px solid #999;padding:4px 8px}td.n{text-align:right}"
        "tr:last-child{font-weight:bold}</style></head><body>",
        f"<h1>{e(title)}</h1><p><strong>{e(period)}</strong></p><p><em>{e(generated)}</em></p>",
    ]
    said = all_sentences(report, language)
    for index, (heading, (columns, rows)) in enumerate(tables(report, language)):
        parts.append(f"<h2>{e(heading)}</h2><p>{e(said[index])}</p><table><thead><tr>")
        parts += [f"<th>{e(c)}</th>" for c in columns]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            cells = [
                f'<td class="n">{e(_text(v, language))}</td>'
                if isinstance(v, int | float | Duration)
                else f"<td>{e(_text(v, language))}</td>"
                for v in row
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p>{e(TEXT[language]['notes'])}</p></body></html>")
    return "".join(parts)


def xlsx_bytes(report: MonthlyReport, language: Language = "vi") -> bytes:
    """A workbook: the summary (heading, the figures' sentences, notes), then one sheet per
    section; counts and percentages as numbers, times as time values shown h:mm,
    headings bold, text as text (never a formula: cells.keep_text)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.worksheet.worksheet import Worksheet

    t = TEXT[language]

    def append(ws: Worksheet, values: list[Cell]) -> None:
        ws.append([_xlsx_cell(v) for v in values])
        keep_text(ws[ws.max_row])
        for cell, value in zip(ws[ws.max_row], values, strict=False):
            if isinstance(value, Duration):
                cell.number_format = "[h]:mm"  # hours past 24 stay hours

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = sheet_name(t["summary_sheet"])
    for line in _heading(report, language):
        append(sheet, [line])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    for sentence in all_sentences(report, language):
        append(sheet, [sentence])
    sheet.append([])
    append(sheet, [t["notes"]])
    sheet.column_dimensions["A"].width = 120
    for said in sheet.iter_rows(min_row=4):
        said[0].alignment = Alignment(wrap_text=True, vertical="top")
    for key, (heading, (columns, rows)) in zip(SHEETS, tables(report, language), strict=True):
        ws = workbook.create_sheet(title=sheet_name(t[key]))
        append(ws, [heading])
        ws["A1"].font = Font(bold=True, size=12)
        append(ws, list(columns))
        for cell in ws[2]:
            cell.font = Font(bold=True)
            cell.alignment = Alignment(wrap_text=True, vertical="top")
        for row in rows:
            append(ws, [None if v == "" else v for v in row])  # empty, not empty text
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column[2:]) if len(column) > 2 else 0
            ws.column_dimensions[column[0].column_letter].width = min(40, max(10, width + 2))
        ws.freeze_panes = "A3"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx_cell(value: Cell) -> str | int | float | None:
    """A time is a spreadsheet's time value: a fraction of a day."""
    if isinstance(value, Duration):
        return value.seconds / 86400.0
    return xlsx_value(value)


def render(
    report: MonthlyReport, fmt: Format, language: Language = "vi", issuer: Issuer | None = None
) -> bytes:
    """``issuer``: the docx's issuing body, addressee and signer (issuer.Issuer), in
    ``language`` like the rest of the document."""
    if fmt == "docx":
        from collector.outputs.report.docx import docx_bytes

        return docx_bytes(report, issuer, language)
    if fmt == "xlsx":
        return xlsx_bytes(report, language)
    if fmt == "csv":
        # With a byte order mark: Excel on Windows reads a CSV without one in the
        # system's code page and garbles the diacritics.
        return csv_text(report, language).encode("utf-8-sig")
    if fmt == "html":
        return html_text(report, language).encode()
    return markdown(report, language).encode()
