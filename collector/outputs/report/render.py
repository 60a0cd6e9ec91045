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
from typing import Literal

from collector.common.localtime import local
from collector.common.words import KINDS, Language
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import CommuneMonth, MonthlyReport
from collector.outputs.report.cells import csv_cell, keep_text, xlsx_value
from collector.outputs.report.issuer import Issuer
from collector.outputs.report.sentences import all_sentences

Format = Literal["md", "csv", "html", "xlsx", "docx"]

#: Alert kinds by rule name, for the report's alert table.
Cell = str | int | float | None
Table = tuple[list[str], list[list[Cell]]]


def _number(value: float | None, digits: int = 2) -> Cell:
    return None if value is None else round(value, digits)


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}"


def _ratio(have: int, expected: int | None) -> str:
    return f"{have}/{expected}" if expected is not None else f"{have}"


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
                [t["pcs"], t["protected"], t["old"]],
                lambda c: [
                    _ratio(c.pcs_reporting, c.pcs_expected),
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
                    _duration(c.line_downtime_s),
                    c.line_outages,
                    _number(c.line_availability_excl_maintenance, 3),
                    _duration(c.line_maintenance_s),
                ],
            ),
        ),
        (
            t["conference"],
            section(
                [t["polycoms"], t["ready"], t["ready_excl"]],
                lambda c: [
                    _ratio(c.polycoms_reporting, c.polycoms_expected),
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


def _text(value: Cell, language: Language) -> str:
    if value is None:
        return TEXT[language]["none"]
    if isinstance(value, float) and language == "vi":
        return f"{value:g}".replace(".", ",")  # Vietnamese decimal comma
    return str(value)


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
    """One row per commune with every figure, then the province; numbers with a dot.
    Text that a spreadsheet would take for a formula is escaped (cells.csv_cell)."""
    t = TEXT[language]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def row(values: list[Cell]) -> None:
        writer.writerow([csv_cell(v) for v in values])

    row(
        [
            t["commune"],
            t["code"],
            t["pcs"],
            t["protected"],
            t["old"],
            t["availability"],
            t["downtime"],
            t["outages"],
            t["availability_excl"],
            t["maintenance"],
            t["polycoms"],
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
                _ratio(c.pcs_reporting, c.pcs_expected),
                _number(c.protected_percent),
                _number(c.old_signatures_percent),
                _number(c.line_availability, 3),
                _duration(c.line_downtime_s),
                c.line_outages,
                _number(c.line_availability_excl_maintenance, 3),
                _duration(c.line_maintenance_s),
                _ratio(c.polycoms_reporting, c.polycoms_expected),
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
                if isinstance(v, int | float)
                else f"<td>{e(_text(v, language))}</td>"
                for v in row
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    parts.append(f"<p>{e(TEXT[language]['notes'])}</p></body></html>")
    return "".join(parts)


def xlsx_bytes(report: MonthlyReport, language: Language = "vi") -> bytes:
    """A workbook: one sheet per section, numbers as numbers, headings bold, text as
    text (never a formula: cells.keep_text)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.worksheet import Worksheet

    def append(ws: Worksheet, values: list[Cell]) -> None:
        ws.append([xlsx_value(v) for v in values])
        keep_text(ws[ws.max_row])

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Tổng hợp" if language == "vi" else "Summary"
    for line in _heading(report, language):
        append(sheet, [line])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    append(sheet, [TEXT[language]["notes"]])
    for index, (heading, (columns, rows)) in enumerate(tables(report, language), 1):
        ws = workbook.create_sheet(title=f"{index}. {heading.split('. ', 1)[1]}"[:31])
        append(ws, [heading])
        ws["A1"].font = Font(bold=True, size=12)
        append(ws, list(columns))
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for row in rows:
            append(ws, ["" if v is None else v for v in row])
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
        for column in ws.columns:
            width = max(len(str(c.value or "")) for c in column[1:])
            ws.column_dimensions[column[0].column_letter].width = min(60, max(8, width + 2))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def render(
    report: MonthlyReport, fmt: Format, language: Language = "vi", issuer: Issuer | None = None
) -> bytes:
    """``issuer``: the docx's issuing body and signer (docx.Issuer); the docx is in
    Vietnamese, the language the province files in."""
    if fmt == "docx":
        from collector.outputs.report.docx import docx_bytes

        return docx_bytes(report, issuer)
    if fmt == "xlsx":
        return xlsx_bytes(report, language)
    if fmt == "csv":
        return csv_text(report, language).encode()
    if fmt == "html":
        return html_text(report, language).encode()
    return markdown(report, language).encode()
