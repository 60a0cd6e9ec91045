"""The monthly report as Markdown, CSV, HTML or XLSX, in Vietnamese (default) or English.

The Vietnamese layout follows the headings of the province's own reports:
"Hệ thống phòng chống mã độc", "Mạng truyền số liệu chuyên dùng", "Hội nghị
truyền hình trực tuyến", then the alerts behind them, then (for a province with a
catalogue of them) "Các hệ thống thông tin dùng chung", system by system.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from collector.common.localtime import local
from collector.common.words import KINDS, Language
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import CommuneMonth, MonthlyReport
from collector.outputs.report.cells import Cell, Duration, Table, csv_cell, keep_text, xlsx_value
from collector.outputs.report.issuer import Issuer
from collector.outputs.report.sentences import all_sentences, shared_system, shared_systems
from collector.outputs.report.systemtables import system_tables
from collector.outputs.report.systemwords import SYSTEMS_TEXT

if TYPE_CHECKING:  # openpyxl is loaded for an XLSX only
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

Format = Literal["md", "csv", "html", "xlsx", "docx"]


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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _markdown_cell(text: str) -> str:
    """A cell's text that stays in its cell and stays text: a "|" would end the cell,
    a line break the row, and an agent's error is no HTML for whatever shows the file."""
    text = _CONTROL.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def _markdown_table(table: Table, language: Language) -> list[str]:
    columns, rows = table

    def line(values: list[str]) -> str:
        return "| " + " | ".join(_markdown_cell(v) for v in values) + " |"

    out = [line(columns), "|" + "|".join("---" for _ in columns) + "|"]
    return out + [line([_text(v, language) for v in row]) for row in rows]


def markdown(report: MonthlyReport, language: Language = "vi") -> str:
    title, period, generated = _heading(report, language)
    out = [f"# {title}", "", f"**{period}**", "", f"_{generated}_", ""]
    said = all_sentences(report, language)
    for index, (heading, table) in enumerate(tables(report, language)):
        out += [f"## {heading}", "", said[index], "", *_markdown_table(table, language), ""]
    out += _markdown_systems(report, language)
    out.append(TEXT[language]["notes"])
    return "\n".join(out) + "\n"


def _markdown_systems(report: MonthlyReport, language: Language) -> list[str]:
    """The shared systems: the item, each system's sentence, its table, the incidents."""
    sections = system_tables(report, language)
    if not sections:
        return []
    systems, incidents = sections
    w = SYSTEMS_TEXT[language]
    out = [f"## {systems.heading}", "", shared_systems(report.systems, language), ""]
    out += [f"- {shared_system(s, language)}" for s in report.systems]
    out += ["", *_markdown_table(systems.table, language), "", f"### {incidents.heading}", ""]
    out += _markdown_table(incidents.table, language) if incidents.table[1] else [w["no_incidents"]]
    return [*out, "", w["notes"], ""]


def csv_text(report: MonthlyReport, language: Language = "vi") -> str:
    """One row per commune with every figure, then the province; then, after an empty
    row, the shared systems' tables, each under its heading. Numbers with a dot, times
    as hours:minutes. Text that a spreadsheet would take for a formula is escaped
    (cells.csv_cell)."""
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
    # The shared systems below, each table after an empty row and its heading.
    for section in system_tables(report, language):
        columns, rows = section.table
        row([])
        row([section.heading])
        row(list(columns))
        for values in rows:
            row(values)
    return buffer.getvalue()


def _html_table(table: Table, language: Language, plain: bool = False) -> list[str]:
    """``plain``: no total in the last row (not set in bold)."""
    e = html.escape
    columns, rows = table
    parts = ['<table class="plain">' if plain else "<table>", "<thead><tr>"]
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
    return parts


def html_text(report: MonthlyReport, language: Language = "vi") -> str:
    title, period, generated = _heading(report, language)
    e = html.escape
    parts = [
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">',
        f"<title>{e(title)} — {e(period)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:2em}th,td{border:1px solid #999;padding:4px 8px}td.n{text-align:right}"
        "tr:last-child{font-weight:bold}table.plain tr:last-child{font-weight:normal}"
        "</style></head><body>",
        f"<h1>{e(title)}</h1><p><strong>{e(period)}</strong></p><p><em>{e(generated)}</em></p>",
    ]
    said = all_sentences(report, language)
    for index, (heading, table) in enumerate(tables(report, language)):
        parts.append(f"<h2>{e(heading)}</h2><p>{e(said[index])}</p>")
        parts += _html_table(table, language)
    parts += _html_systems(report, language)
    parts.append(f"<p>{e(TEXT[language]['notes'])}</p></body></html>")
    return "".join(parts)


def _html_systems(report: MonthlyReport, language: Language) -> list[str]:
    sections = system_tables(report, language)
    if not sections:
        return []
    e = html.escape
    systems, incidents = sections
    w = SYSTEMS_TEXT[language]
    parts = [f"<h2>{e(systems.heading)}</h2><p>{e(shared_systems(report.systems, language))}</p>"]
    parts.append("<ul>")
    parts += [f"<li>{e(shared_system(s, language))}</li>" for s in report.systems]
    parts.append("</ul>")
    parts += _html_table(systems.table, language, plain=True)
    parts.append(f"<h3>{e(incidents.heading)}</h3>")
    if incidents.table[1]:
        parts += _html_table(incidents.table, language, plain=True)
    else:
        parts.append(f"<p>{e(w['no_incidents'])}</p>")
    parts.append(f"<p>{e(w['notes'])}</p>")
    return parts


def xlsx_bytes(report: MonthlyReport, language: Language = "vi") -> bytes:
    """A workbook: the summary (heading, the figures' sentences, notes), then one sheet per
    section (the shared systems' two last); counts and percentages as numbers, times as
    time values shown h:mm, headings bold, text as text (never a formula:
    cells.keep_text)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    t = TEXT[language]
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = sheet_name(t["summary_sheet"])
    for line in _heading(report, language):
        _append(sheet, [line])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([])
    for sentence in all_sentences(report, language):
        _append(sheet, [sentence])
    for system in report.systems:
        _append(sheet, [f"- {shared_system(system, language)}"])
    sheet.append([])
    _append(sheet, [t["notes"]])
    if report.systems:
        _append(sheet, [SYSTEMS_TEXT[language]["notes"]])
    sheet.column_dimensions["A"].width = 120
    for said in sheet.iter_rows(min_row=4):
        said[0].alignment = Alignment(wrap_text=True, vertical="top")
    for key, (heading, table) in zip(SHEETS, tables(report, language), strict=True):
        _sheet(workbook, sheet_name(t[key]), heading, table, total=True)
    for section in system_tables(report, language):
        _sheet(workbook, sheet_name(section.sheet), section.heading, section.table, total=False)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _append(ws: Worksheet, values: list[Cell]) -> None:
    ws.append([_xlsx_cell(v) for v in values])
    keep_text(ws[ws.max_row])
    for cell, value in zip(ws[ws.max_row], values, strict=False):
        if isinstance(value, Duration):
            cell.number_format = "[h]:mm"  # hours past 24 stay hours


def _sheet(workbook: Workbook, title: str, heading: str, table: Table, *, total: bool) -> None:
    """A section's sheet: its heading, its columns (bold), its rows (the last in bold when
    it is the total)."""
    from openpyxl.styles import Alignment, Font

    columns, rows = table
    ws = workbook.create_sheet(title=title)
    _append(ws, [heading])
    ws["A1"].font = Font(bold=True, size=12)
    _append(ws, list(columns))
    for cell in ws[2]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in rows:
        _append(ws, [None if v == "" else v for v in row])  # empty, not empty text
    if total and rows:
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
    for column in ws.columns:
        width = max(len(str(c.value or "")) for c in column[2:]) if len(column) > 2 else 0
        ws.column_dimensions[column[0].column_letter].width = min(40, max(10, width + 2))
    ws.freeze_panes = "A3"


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
