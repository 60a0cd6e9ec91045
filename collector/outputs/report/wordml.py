"""The python-docx building blocks the monthly report's Word document is made of: text
in the document's font, rules, borderless and fixed-width tables, rows that keep
together, the page number."""

from __future__ import annotations

import copy

from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.oxml.table import CT_Row, CT_Tc
from docx.oxml.text.paragraph import CT_P
from docx.shared import Mm, Pt
from docx.table import Table
from docx.text.paragraph import Paragraph
from docx.text.run import Run

from collector.outputs.report.cells import xml_text

FONT = "Times New Roman"
BODY_PT = 13


def set_font(run: Run, size: float, bold: bool = False, italic: bool = False) -> None:
    """The document's font on ``run``, for Latin and East Asian text alike."""
    run.font.name = FONT
    run.font.size = Pt(size)
    run.font.bold = bold
    run.font.italic = italic
    # East Asian text falls back to another font unless it is named for it too.
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), FONT)


def add_text(
    paragraph: Paragraph,
    text: str,
    size: float = BODY_PT,
    *,
    bold: bool = False,
    italic: bool = False,
    align: WD_ALIGN_PARAGRAPH | None = WD_ALIGN_PARAGRAPH.CENTER,
) -> Paragraph:
    """``text`` added to ``paragraph`` in the document's font, no space after it."""
    # A name from the inventory may hold a control character XML cannot: left out.
    run = paragraph.add_run(xml_text(text))
    set_font(run, size, bold, italic)
    if align is not None:
        paragraph.alignment = align
    paragraph.paragraph_format.space_after = Pt(0)
    return paragraph


def add_rule(paragraph: Paragraph) -> None:
    """The short rule under the issuer and under the motto: a bottom border."""
    ppr = paragraph._p.get_or_add_pPr()
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for key, value in (("val", "single"), ("sz", "6"), ("space", "1"), ("color", "000000")):
        bottom.set(qn(f"w:{key}"), value)
    borders.append(bottom)
    ppr.append(borders)


def no_borders(table: Table) -> None:
    """A table for layout only (the header block, the signer's): no borders drawn."""
    tbl_pr = table._tbl.tblPr
    borders = OxmlElement("w:tblBorders")
    for edge in ("top", "left", "bottom", "right", "insideH", "insideV"):
        element = OxmlElement(f"w:{edge}")
        element.set(qn("w:val"), "nil")
        borders.append(element)
    tbl_pr.append(borders)


def add_page_number(paragraph: Paragraph) -> None:
    """A PAGE field, centred: Word and LibreOffice fill it in."""
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    run = paragraph.add_run()
    set_font(run, BODY_PT)
    for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
        if kind is not None:
            element = OxmlElement("w:fldChar")
            element.set(qn("w:fldCharType"), kind)
        else:
            element = OxmlElement("w:instrText")
            element.set(qn("xml:space"), "preserve")
            element.text = text
        run._r.append(element)


def fix_widths(table: Table, widths: tuple[Mm, ...]) -> None:
    """Fixed column widths: Word and LibreOffice keep them only with a fixed layout,
    autofit off and every cell set."""
    table.autofit = False
    layout = OxmlElement("w:tblLayout")
    layout.set(qn("w:type"), "fixed")
    table._tbl.tblPr.append(layout)
    for index, width in enumerate(widths):
        table.columns[index].width = width
        for cell in table.columns[index].cells:
            cell.width = width


def keep_rows(tr: object, *, header: bool) -> None:
    """Never split a row across pages; the header row repeats on every page."""
    tr_pr = tr.get_or_add_trPr()  # type: ignore[attr-defined]
    tags = ("w:cantSplit", "w:tblHeader") if header else ("w:cantSplit",)
    for tag in tags:
        element = OxmlElement(tag)
        element.set(qn("w:val"), "true")
        tr_pr.append(element)


#: What python-docx writes otherwise than as plain text in a ``w:t``.
_NOT_PLAIN = frozenset("\t\n\r")
_SPACE = qn("xml:space")


class TableFiller:
    """The rows of a big table, the same XML as ``add_row``, ``keep_rows`` and
    ``add_text`` make, made faster: python-docx takes about half a millisecond for each
    cell's text (a country's annexes have tens of thousands), so each look of a cell's
    paragraph (size, bold, alignment) and the empty row are made once with python-docx
    and copied after that, only the text changed."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._row: CT_Row | None = None
        self._looks: dict[tuple[float, bool, WD_ALIGN_PARAGRAPH], CT_P] = {}

    def add_row(self) -> list[CT_Tc]:
        """A new last row, never split across pages; its cells, each with an empty
        paragraph for ``put``."""
        if self._row is None:
            tr = self.table.add_row()._tr  # type: ignore[no-untyped-call]
            keep_rows(tr, header=False)
            self._row = copy.deepcopy(tr)
        else:
            tr = copy.deepcopy(self._row)
            self.table._tbl.append(tr)
        return list(tr.tc_lst)

    def put(
        self, tc: CT_Tc, text: str, size: float, *, bold: bool, align: WD_ALIGN_PARAGRAPH
    ) -> None:
        """``text`` into the cell's empty paragraph, as ``add_text`` puts it."""
        text = xml_text(text)
        paragraph = tc.p_lst[0]
        look = (size, bold, align)
        made = self._looks.get(look)
        if made is None or _NOT_PLAIN.intersection(text):
            add_text(Paragraph(paragraph, self.table), text, size, bold=bold, align=align)
            if text and not _NOT_PLAIN.intersection(text) and made is None:
                self._looks[look] = copy.deepcopy(paragraph)
            return
        new = copy.deepcopy(made)
        t = new.r_lst[0].t_lst[0]
        if not text:  # add_run("") adds no w:t
            t.getparent().remove(t)
        else:
            t.text = text
            if len(text.strip()) < len(text):
                t.set(_SPACE, "preserve")
            elif _SPACE in t.attrib:
                del t.attrib[_SPACE]
        tc.replace(paragraph, new)
