"""The monthly report as the Word document the province files (python-docx).

Laid out as Nghị định 30/2020/NĐ-CP, Phụ lục I says for an administrative document
(văn bản hành chính): A4 portrait; margins top and bottom 20 mm, left 30 mm, right
15 mm; Times New Roman; the issuing body (its superior in capitals, itself in bold
capitals, 12-13 pt) on the left and the national motto on the right ("CỘNG HÒA XÃ
HỘI CHỦ NGHĨA VIỆT NAM" bold capitals 12-13 pt, "Độc lập - Tự do - Hạnh phúc" bold
13-14 pt, underlined by a rule); the number "Số: …/BC-…" under the body and the place
and date in italics under the motto; the kind of document "BÁO CÁO" and its subject
in bold, centred; the body in 13-14 pt, justified, first lines indented; page
numbers from the second page, centred at the top; the signer's block and the
recipients ("Nơi nhận:") at the end.

Its parts are those of the province's own reports: "Kính gửi", the "Căn cứ …"
opening, "I. Đánh giá chung" with the month's figures written in (sentences.py),
"II. Tồn tại, hạn chế" opening with what the figures show is wrong and "III. Đề
xuất, kiến nghị", both with dotted lines the office fills in, the closing
sentence, the recipients and the signer ("KT. GIÁM ĐỐC / PHÓ GIÁM ĐỐC"); the
per-commune tables (render.tables, official codes) follow as the annex (Phụ lục),
their header rows repeated on every page and no row split across two. A province
with shared systems has one more item, system by system, and their two tables
(systemtables.py) in the annex.

The issuing body, its number, addressee, basis, signer and recipients come from
the collector's ``[report]`` config (``[report.en]`` for the English document).
"""

from __future__ import annotations

import io

from docx import Document
from docx.document import Document as DocumentType
from docx.enum.section import WD_ORIENT, WD_SECTION
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Mm, Pt
from docx.text.paragraph import Paragraph

from collector.common.localtime import local
from collector.common.words import DOCUMENT, MONTHS_EN, Language
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import MonthlyReport
from collector.outputs.report.cells import Cell, Duration
from collector.outputs.report.issuer import Issuer, recipients
from collector.outputs.report.render import cell_text, no_data, tables
from collector.outputs.report.sentences import all_sentences, shared_system, shortcomings
from collector.outputs.report.systemtables import system_tables
from collector.outputs.report.systemwords import SYSTEMS_TEXT
from collector.outputs.report.wordml import (
    BODY_PT,
    FONT,
    TableFiller,
    add_page_number,
    add_rule,
    add_text,
    fix_widths,
    keep_rows,
    no_borders,
)

TABLE_PT = 10.5
#: The text's width on the page (A4 less the margins).
TEXT_MM = 165
#: The annex tables' first columns: STT, the commune's name, its code; the figures
#: share the rest.
LEAD_MM = (12, 42, 15)


def docx_bytes(
    report: MonthlyReport, issuer: Issuer | None = None, language: Language = "vi"
) -> bytes:
    """The report as a .docx, in ``language`` (its fixed words from words.DOCUMENT, the
    issuer's in that language)."""
    issuer = (issuer or Issuer()).in_language(language)
    w = DOCUMENT[language]
    document = Document()
    section = document.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin = section.bottom_margin = Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    section.header_distance = Mm(10)
    # Page numbers from the second page: the first page has a header of its own (empty).
    section.different_first_page_header_footer = True
    add_page_number(section.header.paragraphs[0])
    normal = document.styles["Normal"]
    normal.font.name, normal.font.size = FONT, Pt(BODY_PT)

    year, month = report.month.split("-")
    body_name = issuer.body_name or issuer.body
    addressee = issuer.addressee.rstrip(". ")  # the sentences put their own full stop
    _header_block(document, report, issuer, language)
    add_text(document.add_paragraph(), w["kind"], 14, bold=True).paragraph_format.space_before = Pt(
        12
    )
    add_text(document.add_paragraph(), w["subject"].format(month=month, year=year), 14, bold=True)
    # The short rule under the subject: a border as wide as the paragraph, so a
    # paragraph narrowed to a third of the text's width.
    rule = add_text(document.add_paragraph(), "", 6)
    rule.paragraph_format.left_indent = rule.paragraph_format.right_indent = Mm(55)
    add_rule(rule)
    if addressee:
        to = add_text(document.add_paragraph(), w["to"].format(addressee=addressee), BODY_PT)
        to.paragraph_format.space_before = Pt(6)
    basis = w["and"].join(issuer.basis) if issuer.basis else w["basis_blank"]
    _body(
        document,
        w["basis"].format(
            basis=basis,
            body=body_name,
            communes=len(report.communes),
            province=report.province_name,
            first=f"01/{month}/{year}",
            last=local(report.end - 1).strftime("%d/%m/%Y"),
        ),
    )

    _heading(document, w["assessment"])
    _body(document, w["assessment_lead"])
    if not report.has_data:
        _body(document, no_data(report, language))
    for index, sentence in enumerate(all_sentences(report, language), 1):
        _body(document, f"{index}. {sentence}", label=True)
    # The shared systems' item (the last) goes on system by system, as the seeds list them.
    for system in report.systems:
        _body(document, f"- {shared_system(system, language)}")
    _heading(document, w["shortcomings"])
    for sentence in shortcomings(report, language):
        _body(document, f"- {sentence}")
    _body(document, w["blank"])
    _heading(document, w["proposals"])
    for _ in range(2):
        _body(document, w["blank"])
    closing = w["closing"].format(month=month, year=year, body=body_name)
    if addressee:
        closing += w["closing_to"].format(addressee=addressee)
    _body(document, closing + "./.")
    _signer_block(document, issuer, language)
    _annex(document, report, issuer, language)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _date(report: MonthlyReport, issuer: Issuer, language: Language) -> tuple[str, str]:
    """(the date line, the date in the annex's "Kèm theo"): the day the report is
    generated once it has a number; before, blanks to fill in when it is signed, as
    the office leaves them."""
    w = DOCUMENT[language]
    when = local(report.generated_at)
    place = issuer.place or report.province_name
    if issuer.number:
        day, month = f"{when.day:02d}", f"{when.month:02d}"
        short = when.strftime("%d/%m/%Y")
        if language == "en":
            month = MONTHS_EN[when.month - 1]
    else:
        day = month = w["page_blank"]
        short = f"{w['page_blank']}/{w['page_blank']}/{when.year}"
    return w["date"].format(place=place, day=day, month=month, year=when.year), short


def _header_block(
    document: DocumentType, report: MonthlyReport, issuer: Issuer, language: Language
) -> None:
    w = DOCUMENT[language]
    table = document.add_table(rows=2, cols=2)
    no_borders(table)
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    left, right = table.rows[0].cells
    parent = issuer.parent or w["parent"].format(province=report.province_name.upper())
    size, widths = _header_layout(max(len(parent), len(issuer.body)), len(w["motto"]))
    add_text(left.paragraphs[0], parent, size)
    add_rule(add_text(left.add_paragraph(), issuer.body, size, bold=True))
    add_text(right.paragraphs[0], w["motto"], size, bold=True)
    add_rule(add_text(right.add_paragraph(), w["motto_words"], size + 1, bold=True))
    number_cell, date_cell = table.rows[1].cells
    number = issuer.number or w["page_blank"]
    add_text(number_cell.paragraphs[0], w["number"].format(number=number, short=issuer.short), 13)
    add_text(date_cell.paragraphs[0], _date(report, issuer, language)[0], 13, italic=True)
    fix_widths(table, widths)


#: Width of a bold capital at 12 pt in Times New Roman, about (mm), and a cell's margins.
CAPITAL_MM, CELL_MARGINS_MM = 2.65, 4.0


def _header_layout(body_chars: int, motto_chars: int) -> tuple[float, tuple[Mm, Mm]]:
    """The header's capitals' size and its columns' widths: the issuing body and the
    motto each on one line ("SỞ KHOA HỌC VÀ CÔNG / NGHỆ" is how it must not look), at
    12 pt when both fit the text's width, else as large as fits (not under 10 pt)."""
    body, motto = body_chars * CAPITAL_MM, motto_chars * CAPITAL_MM
    room = TEXT_MM - 2 * CELL_MARGINS_MM
    size = 12.0 if body + motto <= room else max(10.0, int(24 * room / (body + motto)) / 2)
    body_mm = body * size / 12 + CELL_MARGINS_MM
    slack = max(TEXT_MM - body_mm - (motto * size / 12 + CELL_MARGINS_MM), 0)
    left = min(body_mm + slack / 2, TEXT_MM - 60)
    return size, (Mm(left), Mm(TEXT_MM - left))


def _heading(document: DocumentType, text: str, *, center: bool = False) -> Paragraph:
    align = WD_ALIGN_PARAGRAPH.CENTER if center else WD_ALIGN_PARAGRAPH.LEFT
    paragraph = add_text(document.add_paragraph(), text, BODY_PT, bold=True, align=align)
    form = paragraph.paragraph_format
    form.space_before = Pt(6)
    form.keep_with_next = True
    if not center:
        form.first_line_indent = Mm(10)
    return paragraph


def _body(document: DocumentType, text: str, italic: bool = False, label: bool = False) -> None:
    """A justified paragraph, first line indented; ``label``: the words before the first
    colon in bold, as the province's reports set an item's name."""
    paragraph = document.add_paragraph()
    if label and ": " in text:
        name, rest = text.split(": ", 1)
        add_text(paragraph, name + ": ", BODY_PT, bold=True, italic=italic, align=None)
        text = rest
    add_text(paragraph, text, BODY_PT, italic=italic, align=WD_ALIGN_PARAGRAPH.JUSTIFY)
    form = paragraph.paragraph_format
    form.first_line_indent = Mm(10)
    form.space_before, form.space_after = Pt(6), Pt(0)
    form.line_spacing = 1.15


def _annex(
    document: DocumentType, report: MonthlyReport, issuer: Issuer, language: Language
) -> None:
    """The per-commune tables, from a new page."""
    w = DOCUMENT[language]
    year, month = report.month.split("-")
    title = add_text(document.add_paragraph(), w["annex"], 14, bold=True)
    title.paragraph_format.page_break_before = True
    subject = w["annex_subject"].format(month=month, year=year)
    add_text(document.add_paragraph(), subject, BODY_PT, bold=True)
    number = issuer.number or w["page_blank"]
    attached = w["annex_of"].format(
        number=number,
        short=issuer.short,
        date=_date(report, issuer, language)[1],
        body=issuer.body_name or issuer.body,
    )
    add_text(document.add_paragraph(), attached, BODY_PT, italic=True)
    annexed = tables(report, language)
    for index, (heading, (columns, rows)) in enumerate(annexed, 1):
        name = heading.split(". ", 1)[-1]  # the body's numbering is not the annex's
        _heading(document, w["annex_table"].format(index=index, heading=name))
        _table(document, columns, rows, language)
    _body(document, TEXT[language]["notes"], italic=True)
    _systems_annex(document, report, language, len(annexed) + 1)


#: A landscape page's text width (297 mm less the same margins): the shared systems'
#: table has twelve columns.
LANDSCAPE_MM = 297 - 30 - 15
#: The shared systems' tables: STT, the system's name (long: "Hệ thống thông tin giải
#: quyết thủ tục hành chính (Một cửa điện tử)"); the figures share the rest.
SYSTEM_LEAD_MM = (12, 38)
#: The incidents' table: STT, system, started, ended, how long; what it was, the rest.
INCIDENT_MM = (12, 50, 30, 30, 22)


def _systems_annex(
    document: DocumentType, report: MonthlyReport, language: Language, first: int
) -> None:
    """The shared systems' tables, on landscape pages of their own (numbered on)."""
    sections = system_tables(report, language)
    if not sections:
        return
    w = DOCUMENT[language]
    landscape = document.add_section(WD_SECTION.NEW_PAGE)
    landscape.orientation = WD_ORIENT.LANDSCAPE
    landscape.page_width, landscape.page_height = Mm(297), Mm(210)
    # Its first page is no first page of the document: numbered like the others.
    landscape.different_first_page_header_footer = False
    systems, incidents = sections
    rest = LANDSCAPE_MM - sum(SYSTEM_LEAD_MM)
    figures = len(systems.table[0]) - len(SYSTEM_LEAD_MM)
    widths = (*SYSTEM_LEAD_MM, *([rest / figures] * figures))
    incident_widths = (*INCIDENT_MM, LANDSCAPE_MM - sum(INCIDENT_MM))
    for index, (section, mm) in enumerate(((systems, widths), (incidents, incident_widths)), first):
        name = section.heading.split(". ", 1)[-1]
        _heading(document, w["annex_table"].format(index=index, heading=name))
        columns, rows = section.table
        if rows:
            fixed = tuple(Mm(width) for width in mm)
            _table(document, columns, rows, language, widths=fixed, total=False)
        else:
            _body(document, SYSTEMS_TEXT[language]["no_incidents"])
    _body(document, SYSTEMS_TEXT[language]["notes"], italic=True)


def _text(value: Cell, language: Language) -> str:
    if isinstance(value, Duration):
        return str(value)
    return cell_text(value, language)


def _table(
    document: DocumentType,
    columns: list[str],
    rows: list[list[Cell]],
    language: Language,
    *,
    widths: tuple[Mm, ...] | None = None,
    total: bool = True,
) -> None:
    """``widths``: the columns' (default by _columnfix_widths); ``total``: the last row is
    the total, in bold."""
    table = document.add_table(rows=1, cols=len(columns))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    fix_widths(table, widths or _columnfix_widths(columns, language))
    for cell, column in zip(table.rows[0].cells, columns, strict=True):
        add_text(cell.paragraphs[0], column, TABLE_PT, bold=True)
    keep_rows(table.rows[0]._tr, header=True)
    filler = TableFiller(table)
    for row in rows:
        last = total and row is rows[-1]
        for tc, value in zip(filler.add_row(), row, strict=True):
            numeric = isinstance(value, int | float | Duration) or value is None
            align = WD_ALIGN_PARAGRAPH.RIGHT if numeric else WD_ALIGN_PARAGRAPH.LEFT
            filler.put(tc, _text(value, language), TABLE_PT, bold=last, align=align)


def _columnfix_widths(columns: list[str], language: Language) -> tuple[Mm, ...]:
    """STT narrow, the commune's name wide enough not to wrap, its code; the figures
    share what is left. A table without those (the alerts') gives its first column
    half the width."""
    by_commune = columns[0] == TEXT[language]["no"]
    lead = LEAD_MM if by_commune else (TEXT_MM // 2,)
    rest = (TEXT_MM - sum(lead)) / (len(columns) - len(lead))
    return tuple(Mm(width) for width in (*lead, *([rest] * (len(columns) - len(lead)))))


def _signer_block(document: DocumentType, issuer: Issuer, language: Language) -> None:
    w = DOCUMENT[language]
    document.add_paragraph()
    table = document.add_table(rows=1, cols=2)
    no_borders(table)
    fix_widths(table, (Mm(75), Mm(TEXT_MM - 75)))
    to, signer = table.rows[0].cells
    add_text(to.paragraphs[0], w["recipients"], 12, bold=True, italic=True,
          align=WD_ALIGN_PARAGRAPH.LEFT)  # fmt: skip
    for name in recipients(issuer, w["as_above"]):
        add_text(to.add_paragraph(), f"- {name}", 11, align=WD_ALIGN_PARAGRAPH.LEFT)
    first = signer.paragraphs[0]
    if issuer.signer_authority:
        add_text(first, issuer.signer_authority, 13, bold=True)
        first = signer.add_paragraph()
    add_text(first, issuer.signer_title, 13, bold=True)
    for _ in range(4):  # room for the signature and the seal
        signer.add_paragraph()
    add_text(signer.add_paragraph(), issuer.signer_name, 13, bold=True)
