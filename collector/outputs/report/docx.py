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

The issuing body, its number, the signer and the recipients come from the
collector's ``[report]`` config. The figures are the report's sentences
(sentences.py) and its tables (render.tables) with the official codes.
"""

from __future__ import annotations

import io

from docx import Document
from docx.document import Document as DocumentType
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt
from docx.table import Table
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from collector.common.localtime import local
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import MonthlyReport
from collector.outputs.report.issuer import Issuer
from collector.outputs.report.render import Cell, no_data, tables
from collector.outputs.report.sentences import all_sentences

FONT = "Times New Roman"
BODY_PT = 13
TABLE_PT = 11


def _font(run: Run, size: float, bold: bool = False, italic: bool = False) -> None:
    run.font.name = FONT
    run.font.size = Pt(size)
    run.font.bold = bold
    run.font.italic = italic
    # East Asian text falls back to another font unless it is named for it too.
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), FONT)


def _line(
    paragraph: Paragraph,
    text: str,
    size: float = BODY_PT,
    *,
    bold: bool = False,
    italic: bool = False,
    align: WD_ALIGN_PARAGRAPH | None = WD_ALIGN_PARAGRAPH.CENTER,
) -> Paragraph:
    run = paragraph.add_run(text)
    _font(run, size, bold, italic)
    if align is not None:
        paragraph.alignment = align
    paragraph.paragraph_format.space_after = Pt(0)
    return paragraph


def _rule(paragraph: Paragraph) -> None:
    """The short rule under the issuer and under the motto: a bottom border."""
    ppr = paragraph._p.get_or_add_pPr()
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for key, value in (("val", "single"), ("sz", "6"), ("space", "1"), ("color", "000000")):
        bottom.set(qn(f"w:{key}"), value)
    borders.append(bottom)
    ppr.append(borders)


def _no_borders(table: Table) -> None:
    tbl_pr = table._tbl.tblPr
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        element = OxmlElement(f"w:{edge}")
        element.set(qn("w:val"), "nil")
        borders.append(element)
    tbl_pr.append(borders)


def _page_number(paragraph: Paragraph) -> None:
    """A PAGE field, centred: Word and LibreOffice fill it in."""
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = paragraph.add_run()
    _font(run, BODY_PT)
    for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
        if kind is not None:
            element = OxmlElement("w:fldChar")
            element.set(qn("w:fldCharType"), kind)
        else:
            element = OxmlElement("w:instrText")
            element.set(qn("xml:space"), "preserve")
            element.text = text
        run._r.append(element)


def docx_bytes(report: MonthlyReport, issuer: Issuer | None = None) -> bytes:
    issuer = issuer or Issuer()
    t = TEXT["vi"]
    document = Document()
    section = document.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin = section.bottom_margin = Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    section.header_distance = Mm(10)
    # Page numbers from the second page: the first page has a header of its own (empty).
    section.different_first_page_header_footer = True
    _page_number(section.header.paragraphs[0])
    normal = document.styles["Normal"]
    normal.font.name, normal.font.size = FONT, Pt(BODY_PT)

    _header_block(document, report, issuer)
    _line(document.add_paragraph(), "BÁO CÁO", 14, bold=True).paragraph_format.space_before = Pt(12)
    year, month = report.month.split("-")
    subject = f"Tình hình giám sát hạ tầng công nghệ thông tin cấp xã tháng {month}/{year}"
    _line(document.add_paragraph(), subject, 14, bold=True)
    _rule(_line(document.add_paragraph(), "", 6))

    intro = (
        f"Số liệu tổng hợp tự động từ hệ thống giám sát đối với {len(report.communes)} xã, "
        f"phường của tỉnh {report.province_name}, từ ngày 01/{month}/{year} đến ngày "
        f"{local(report.end - 1).strftime('%d/%m/%Y')}."
    )
    _body(document, intro)
    if not report.has_data:
        _body(document, no_data(report, "vi"))
    sentences = all_sentences(report, "vi")
    sections = tables(report, "vi")
    for index, (heading, (columns, rows)) in enumerate(sections):
        _line(document.add_paragraph(), heading, BODY_PT, bold=True,
              align=WD_ALIGN_PARAGRAPH.LEFT).paragraph_format.space_before = Pt(6)  # fmt: skip
        _body(document, sentences[index])
        _table(document, columns, rows)
    _body(document, t["notes"], italic=True)
    _signer_block(document, issuer)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _header_block(document: DocumentType, report: MonthlyReport, issuer: Issuer) -> None:
    table = document.add_table(rows=2, cols=2)
    _no_borders(table)
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    left, right = table.rows[0].cells
    parent = issuer.parent or f"UBND TỈNH {report.province_name.upper()}"
    _line(left.paragraphs[0], parent, 12)
    _rule(_line(left.add_paragraph(), issuer.body, 12, bold=True))
    _line(right.paragraphs[0], "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, bold=True)
    _rule(_line(right.add_paragraph(), "Độc lập - Tự do - Hạnh phúc", 13, bold=True))
    number_cell, date_cell = table.rows[1].cells
    number = issuer.number or "        "
    _line(number_cell.paragraphs[0], f"Số: {number}/BC-{issuer.short}", 13)
    when = local(report.generated_at)
    place = issuer.place or report.province_name
    _line(
        date_cell.paragraphs[0],
        f"{place}, ngày {when.day:02d} tháng {when.month:02d} năm {when.year}",
        13,
        italic=True,
    )
    _widths(table, (Mm(68), Mm(97)))


def _widths(table: Table, widths: tuple[Mm, ...]) -> None:
    """Fixed column widths (Word keeps them only with autofit off and every cell set)."""
    table.autofit = False
    for index, width in enumerate(widths):
        table.columns[index].width = width
        for cell in table.columns[index].cells:
            cell.width = width


def _body(document: DocumentType, text: str, italic: bool = False) -> None:
    paragraph = document.add_paragraph()
    _line(paragraph, text, BODY_PT, italic=italic, align=WD_ALIGN_PARAGRAPH.JUSTIFY)
    form = paragraph.paragraph_format
    form.first_line_indent = Mm(10)
    form.space_before, form.space_after = Pt(6), Pt(0)
    form.line_spacing = 1.15


def _text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",")
    return str(value)


def _table(document: DocumentType, columns: list[str], rows: list[list[Cell]]) -> None:
    table = document.add_table(rows=1, cols=len(columns))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, column in zip(table.rows[0].cells, columns, strict=True):
        _line(cell.paragraphs[0], column, TABLE_PT, bold=True)
    for row in rows:
        cells = table.add_row().cells
        last = row is rows[-1]
        for cell, value in zip(cells, row, strict=True):
            numeric = isinstance(value, int | float)
            align = WD_ALIGN_PARAGRAPH.RIGHT if numeric else WD_ALIGN_PARAGRAPH.LEFT
            _line(cell.paragraphs[0], _text(value), TABLE_PT, bold=last, align=align)


def _signer_block(document: DocumentType, issuer: Issuer) -> None:
    document.add_paragraph()
    table = document.add_table(rows=1, cols=2)
    _no_borders(table)
    _widths(table, (Mm(75), Mm(90)))
    recipients, signer = table.rows[0].cells
    _line(recipients.paragraphs[0], "Nơi nhận:", 12, bold=True, italic=True,
          align=WD_ALIGN_PARAGRAPH.LEFT)  # fmt: skip
    for name in issuer.recipients:
        _line(recipients.add_paragraph(), f"- {name}", 11, align=WD_ALIGN_PARAGRAPH.LEFT)
    _line(signer.paragraphs[0], issuer.signer_title, 13, bold=True)
    _line(signer.add_paragraph(), "(Ký, ghi rõ họ tên và đóng dấu)", 13, italic=True)
    for _ in range(3):
        signer.add_paragraph()
    _line(signer.add_paragraph(), issuer.signer_name, 13, bold=True)
