"""The monthly report as the Word document the province files: opened again with
python-docx and checked against Nghị định 30/2020's layout (page, margins, fonts, the
header block, page numbers from page 2) and against the province's own reports (the
seed reports: "Kính gửi", "Căn cứ …", the sections đánh giá chung / tồn tại, hạn chế /
đề xuất, kiến nghị, "Nơi nhận" beginning "Như trên", "KT. GIÁM ĐỐC / PHÓ GIÁM ĐỐC"),
its sentences, its numbers and its annex; in English for ``--lang en``; rendered by
LibreOffice where it is installed, a 95-commune province, checked in the PDF's text (the
PDF and PNGs of the first pages kept as artifacts)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from docx import Document
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn

from collector.cli.main import main
from collector.common.words import DOCUMENT, Language
from collector.outputs.report.build import build
from collector.outputs.report.docx import docx_bytes
from collector.outputs.report.issuer import Issuer, recipients
from collector.outputs.report.sentences import all_sentences, number, shortcomings
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from tests.servers import REPO
from tests.test_report import DAY, INVENTORY, OCT, store

__all__ = ["store"]  # the October store, every figure computed by hand in test_report
ARTIFACTS = REPO / "test-artifacts" / "report"
ISSUER = Issuer(
    parent="UBND TỈNH ĐỒNG NAI",
    body="SỞ KHOA HỌC VÀ CÔNG NGHỆ",
    body_name="Sở Khoa học và Công nghệ",
    short="SKHCN",
    number="125",
    addressee="UBND tỉnh",
    basis=("Kế hoạch số 65/KH-UBND ngày 22/8/2025 của UBND tỉnh",),
    signer_authority="KT. GIÁM ĐỐC",
    signer_title="PHÓ GIÁM ĐỐC",
    signer_name="Nguyễn Văn An",
    recipients=("Ban Giám đốc Sở;", "Trung tâm IOC;", "Lưu: VT, CĐS."),
)
BLANK = DOCUMENT["vi"]["blank"]  # a dotted line for the office to write on
#: A province of 95 communes, as Đồng Nai: the three of the October store and 92 more.
PROVINCE_95 = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[
        *INVENTORY.communes,
        *(
            Commune(slug=f"xa-{i:02d}", name=f"Xã Thử Nghiệm {i}", code=f"27{i:03d}", pcs=8)
            for i in range(92)
        ),
    ],
)


def test_numbers_are_written_the_vietnamese_way() -> None:
    assert number(4934) == "4.934" and number(98.71, 1) == "98,7"
    assert number(1234567.891, 2) == "1.234.567,89" and number(4934, 0, "en") == "4,934"


def test_the_sentences_say_the_months_figures(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 40 * DAY)
    said = all_sentences(report, "vi")
    # At the end of October 4 of the 9 expected PCs were protected (La Ngà's three,
    # Phú Hòa's pc-01); 70 % of the PC-time was; no PC had old signatures any more.
    assert said[0] == (
        "Hệ thống phòng chống mã độc: 44,4% máy tính tại các phường, xã (4/9 máy) được cài "
        "đặt và hoạt động phần mềm phòng chống mã độc; 0 máy có mẫu nhận diện cũ; tỷ lệ thời "
        "gian máy tính được bảo vệ trong tháng: 70,0%."
    )
    assert said[1].startswith(
        "Mạng truyền số liệu chuyên dùng: 2/3 xã, phường được giám sát đường truyền; tỷ lệ "
        "sẵn sàng bình quân 98,99% (không tính thời gian bảo trì: 98,99%; thời gian bảo trì "
        "0 phút); 2 lần gián đoạn, tổng thời gian gián đoạn 15 giờ 00 phút."
    )
    assert said[2] == (
        "Hội nghị truyền hình trực tuyến: 1/2 UBND xã/phường sẵn sàng họp trực tuyến qua "
        "đường Truyền số liệu chuyên dùng (tỷ lệ thời gian sẵn sàng 98,4%; không tính thời "
        "gian bảo trì: 98,4%)."
    )
    assert "4 cảnh báo trong tháng, 3 đã được cán bộ kỹ thuật xác nhận" in said[3]


def test_the_shortcomings_say_what_the_figures_show_is_wrong(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 40 * DAY)
    assert shortcomings(report, "vi") == [
        "5/9 máy tính chưa được bảo vệ (chưa cài đặt, chưa hoạt động phần mềm phòng chống mã "
        "độc hoặc chưa báo cáo) vào cuối tháng.",
        "1/3 xã, phường chưa được giám sát đường truyền số liệu chuyên dùng.",
        "Đường truyền gián đoạn lâu nhất trong tháng: Xã Phú Hòa (12 giờ 00 phút), Xã La Ngà "
        "(3 giờ 00 phút).",
        "1/2 xã, phường có thiết bị hội nghị truyền hình chưa sẵn sàng vào cuối tháng.",
        "1/4 cảnh báo chưa được cán bộ kỹ thuật xác nhận.",
    ]
    assert shortcomings(report, "en")[0].startswith("5/9 PCs not protected")


def test_the_recipients_agree_with_the_addressee() -> None:
    # "Như trên" refers to "Kính gửi": first when there is one, given or not; never twice,
    # never without one.
    assert recipients(ISSUER, "Như trên") == [
        "Như trên;",
        "Ban Giám đốc Sở;",
        "Trung tâm IOC;",
        "Lưu: VT, CĐS.",
    ]
    listed = Issuer(recipients=("Lưu: VT.", "Như trên;"))
    assert recipients(listed, "Như trên") == ["Như trên;", "Lưu: VT."]
    unaddressed = Issuer(addressee="", recipients=("Như trên;", "Lưu: VT."))
    assert recipients(unaddressed, "Như trên") == ["Lưu: VT."]


def paragraphs_text(document: object) -> list[str]:
    return [p.text for p in document.paragraphs]  # type: ignore[attr-defined]


def test_the_docx_is_laid_out_as_decree_30_says(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 35 * DAY)
    data = docx_bytes(report, ISSUER)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-2025-10.docx").write_bytes(data)
    document = Document(io.BytesIO(data))
    section = document.sections[0]
    # A4, margins within the decree's ranges (top/bottom 20-25, left 30-35, right 15-20).
    assert (round(section.page_width.mm), round(section.page_height.mm)) == (210, 297)
    assert round(section.top_margin.mm) == round(section.bottom_margin.mm) == 20
    assert (round(section.left_margin.mm), round(section.right_margin.mm)) == (30, 15)
    # Page numbers from page 2, centred at the top: a first page of its own, empty.
    assert section.different_first_page_header_footer
    header = section.header.paragraphs[0]
    assert header.alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert "PAGE" in header._p.xml and section.first_page_header.paragraphs[0].text == ""
    # The header block: the issuing body left, the motto right, bold capitals.
    block = document.tables[0]
    left, right = (cell.paragraphs for cell in block.rows[0].cells)
    assert [p.text for p in left] == ["UBND TỈNH ĐỒNG NAI", "SỞ KHOA HỌC VÀ CÔNG NGHỆ"]
    assert left[1].runs[0].bold and not left[0].runs[0].bold
    assert [p.text for p in right] == [
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM",
        "Độc lập - Tự do - Hạnh phúc",
    ]
    assert right[0].runs[0].bold and right[0].runs[0].font.size.pt == 12
    assert right[1].runs[0].bold and right[1].runs[0].font.size.pt == 13
    assert "w:pBdr" in right[1]._p.xml, "the motto is underlined by a rule"
    # Fixed widths, the issuing body's column wide enough for it on one line at 12 pt
    # (LibreOffice's rendering below shows it does not wrap).
    assert '<w:tblLayout w:type="fixed"/>' in block._tbl.xml
    assert block.columns[0].width.mm >= 68 and left[1].runs[0].font.size.pt == 12
    number_cell, date_cell = block.rows[1].cells
    assert number_cell.text == "Số: 125/BC-SKHCN"
    assert date_cell.text == "Đồng Nai, ngày 05 tháng 11 năm 2025"
    assert date_cell.paragraphs[0].runs[0].italic
    # The body, in the seeds' order: title, subject, Kính gửi, Căn cứ, I-III, closing.
    texts = [t for t in paragraphs_text(document) if t]
    said = all_sentences(report, "vi")
    body = texts[: texts.index("PHỤ LỤC")]
    assert body == [
        "BÁO CÁO",
        "Tình hình giám sát hạ tầng công nghệ thông tin cấp xã tháng 10/2025",
        "Kính gửi: UBND tỉnh.",
        "Căn cứ Kế hoạch số 65/KH-UBND ngày 22/8/2025 của UBND tỉnh, Sở Khoa học và Công nghệ "
        "báo cáo tình hình giám sát hạ tầng công nghệ thông tin tại 3 xã, phường trên địa bàn "
        "tỉnh Đồng Nai từ ngày 01/10/2025 đến ngày 31/10/2025 như sau:",
        "I. ĐÁNH GIÁ CHUNG",
        "Số liệu do hệ thống giám sát tổng hợp tự động trong tháng, cụ thể:",
        *(f"{n}. {sentence}" for n, sentence in enumerate(said, 1)),
        "II. TỒN TẠI, HẠN CHẾ",
        *(f"- {sentence}" for sentence in shortcomings(report, "vi")),
        BLANK,
        "III. ĐỀ XUẤT, KIẾN NGHỊ",
        BLANK,
        BLANK,
        "Trên đây là báo cáo tình hình giám sát hạ tầng công nghệ thông tin cấp xã tháng "
        "10/2025 của Sở Khoa học và Công nghệ, kính gửi UBND tỉnh xem xét, chỉ đạo./.",
    ]
    # An item's name in bold, as the seeds set "12. Hội nghị truyền hình trực tuyến:".
    item = next(p for p in document.paragraphs if p.text.startswith("3. Hội nghị"))
    assert item.runs[0].text == "3. Hội nghị truyền hình trực tuyến: " and item.runs[0].bold
    assert not item.runs[1].bold
    # Times New Roman everywhere, East Asian text included; the body 13 pt, justified.
    runs = [r for p in document.paragraphs for r in p.runs if r.text]
    assert {r.font.name for r in runs} == {"Times New Roman"}
    assert all(r._element.rPr.rFonts.get(qn("w:eastAsia")) == "Times New Roman" for r in runs)
    basis = next(p for p in document.paragraphs if p.text.startswith("Căn cứ"))
    assert basis.runs[0].font.size.pt == 13 and basis.alignment == WD_ALIGN_PARAGRAPH.JUSTIFY
    assert round(basis.paragraph_format.first_line_indent.mm) == 10
    # The signer and the recipients: "Như trên" first, for the addressee above.
    signer_block = document.tables[1]
    to, signer = signer_block.rows[0].cells
    assert [p.text for p in to.paragraphs] == [
        "Nơi nhận:",
        "- Như trên;",
        "- Ban Giám đốc Sở;",
        "- Trung tâm IOC;",
        "- Lưu: VT, CĐS.",
    ]
    lines = [p.text for p in signer.paragraphs if p.text]
    assert lines == ["KT. GIÁM ĐỐC", "PHÓ GIÁM ĐỐC", "Nguyễn Văn An"]
    # The annex: from a new page, attached to the report by its number and date.
    annex = next(p for p in document.paragraphs if p.text == "PHỤ LỤC")
    assert annex.paragraph_format.page_break_before
    assert (
        "(Kèm theo Báo cáo số 125/BC-SKHCN ngày 05/11/2025 của Sở Khoa học và Công nghệ)" in texts
    )
    for heading in (
        "Biểu 1. Hệ thống phòng chống mã độc",
        "Biểu 2. Mạng truyền số liệu chuyên dùng",
        "Biểu 3. Hội nghị truyền hình trực tuyến",
        "Biểu 4. Cảnh báo trong tháng",
    ):
        assert heading in texts
    tables = document.tables[2:]
    assert len(tables) == 4
    for table in tables:
        rows = table._tbl.tr_lst
        # The header row repeats on every page; no row is split across two.
        assert rows[0].trPr.xpath("./w:tblHeader") and not rows[1].trPr.xpath("./w:tblHeader")
        assert all(row.trPr.xpath("./w:cantSplit") for row in rows)
        assert '<w:tblLayout w:type="fixed"/>' in table._tbl.xml
    # STT narrow, the commune's name the widest: names do not wrap.
    widths = [round(c.width.mm) for c in tables[0].columns]
    assert widths[0] == 12 and widths[1] == max(widths) == 42 and sum(widths) == 165
    # The figures of test_report, Vietnamese decimals, times as hours:minutes.
    la_nga = [c.text for c in tables[1].rows[1].cells]
    assert la_nga[:6] == ["1", "Xã La Ngà", "26227", "99,597", "3:00", "1"]
    # Reporting and expected side by side (it read "8", the expected count lost).
    assert [c.text for c in tables[0].rows[-1].cells][1:5] == ["Toàn tỉnh", "", "5", "9"]


def test_an_unaddressed_unnumbered_report_signed_by_the_director(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 35 * DAY)
    director = Issuer(addressee="", signer_authority="", signer_title="GIÁM ĐỐC")
    addressed = Document(io.BytesIO(docx_bytes(report, Issuer(addressee="UBND tỉnh."))))
    assert "Kính gửi: UBND tỉnh." in paragraphs_text(addressed)  # one full stop, not two
    document = Document(io.BytesIO(docx_bytes(report, director)))
    texts = [t for t in paragraphs_text(document) if t]
    assert not any(t.startswith("Kính gửi") for t in texts)
    # Nothing to base it on yet: a dotted line to fill in, not an invented document.
    assert any(t.startswith("Căn cứ ……") for t in texts)
    assert texts[texts.index("PHỤ LỤC") - 1].endswith("của Sở Khoa học và Công nghệ./.")
    to, signer = document.tables[1].rows[0].cells
    assert "Như trên" not in to.text and [p.text for p in signer.paragraphs if p.text] == [
        "GIÁM ĐỐC"
    ]
    # No number yet: room to write it, and the date is left for the day it is signed.
    number_cell, date_cell = document.tables[0].rows[1].cells
    assert re.fullmatch(r"Số: +/BC-SKHCN", number_cell.text)
    assert re.fullmatch(r"Đồng Nai, ngày +tháng +năm 2025", date_cell.text)


def test_the_cli_and_a_month_with_no_data(store: StateStore, tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{store.path}"\n'
        '[report]\nissuer = "SỞ KHOA HỌC VÀ CÔNG NGHỆ"\nissuer_short = "SKHCN"\n'
        'signer_name = "Trần Thị Bình"\n'
    )
    out = tmp_path / "june.docx"
    runner = CliRunner()
    args = ["report", "-c", str(config), "--province", "dong-nai", "--month", "2025-06"]
    result = runner.invoke(main, [*args, "--format", "docx", "-o", str(out), "--number", "7"])
    assert result.exit_code == 0, result.output
    document = Document(str(out))
    texts = paragraphs_text(document)
    assert any(t.startswith("Không có số liệu giám sát trong tháng 06/2025") for t in texts)
    assert document.tables[0].rows[1].cells[0].text == "Số: 7/BC-SKHCN"
    # The signer the seeds have by default: a deputy for the director.
    signer = document.tables[1].rows[0].cells[1].text
    assert "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC" in signer and "Trần Thị Bình" in signer
    refused = runner.invoke(main, [*args, "--format", "docx"])
    assert refused.exit_code == 2 and "needs --output" in refused.output


#: Words of the Vietnamese document that an English one must not have.
VIETNAMESE = (
    "BÁO CÁO", "Kính gửi", "Căn cứ", "ĐÁNH GIÁ", "Nơi nhận", "Như trên", "PHỤ LỤC", "Biểu",
    "Toàn tỉnh", "Xã, phường", "GIÁM ĐỐC", "Độc lập", "ngày", "máy tính",
)  # fmt: skip


def test_the_english_document_is_english(store: StateStore, tmp_path: Path) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{store.path}"\n[report]\nsigner_name = "Trần Thị Bình"\n'
        '[report.en]\nbasis = ["Plan No. 65/KH-UBND of the Provincial People\'s Committee"]\n'
    )
    out = tmp_path / "october-en.docx"
    args = ["report", "-c", str(config), "--province", "dong-nai", "--month", "2025-10"]
    result = CliRunner().invoke(
        main, [*args, "--format", "docx", "--lang", "en", "--number", "9", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    document = Document(str(out))
    header, signer_block, *tables = document.tables
    texts = [t for t in paragraphs_text(document) if t]
    assert texts[:3] == [
        "REPORT",
        "Monitoring of the communes' IT infrastructure, 10/2025",
        "To: the Provincial People's Committee.",
    ]
    assert texts[3].startswith(
        "Pursuant to Plan No. 65/KH-UBND of the Provincial People's Committee, the Department "
        "of Science and Technology reports"
    )
    for heading in ("I. GENERAL ASSESSMENT", "II. SHORTCOMINGS AND LIMITATIONS", "ANNEX"):
        assert heading in texts
    assert [p.text for p in header.rows[0].cells[0].paragraphs] == [
        "PEOPLE'S COMMITTEE OF DONG-NAI PROVINCE",
        "DEPARTMENT OF SCIENCE AND TECHNOLOGY",
    ]
    assert header.rows[1].cells[0].text == "No.: 9/BC-SKHCN"
    assert re.fullmatch(r"dong-nai, \d\d [A-Z][a-z]+ 20\d\d", header.rows[1].cells[1].text)
    to, signer = signer_block.rows[0].cells
    assert to.paragraphs[1].text == "- As above;"
    assert [p.text for p in signer.paragraphs if p.text] == [
        "FOR THE DIRECTOR",
        "DEPUTY DIRECTOR",
        "Trần Thị Bình",
    ]
    assert [c.text for c in tables[0].rows[0].cells][:2] == ["No.", "Commune"]
    whole = "\n".join([*texts, *(c.text for t in document.tables for r in t.rows for c in r.cells)])
    assert not [word for word in VIETNAMESE if word in whole]
    assert "99.597" in whole and "99,597" not in whole  # the English decimal point


def pages_text(pdf: Path) -> list[str]:
    """The PDF's text page by page, laid out as on the page."""
    done = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, timeout=60
    )
    return done.stdout.decode().split("\f")[:-1]


@pytest.mark.skipif(
    shutil.which("soffice") is None or shutil.which("pdftotext") is None,
    reason="LibreOffice or poppler-utils is not installed",
)
def test_libreoffice_renders_a_95_commune_report(store: StateStore, tmp_path: Path) -> None:
    report = build(store, "dong-nai", "2025-10", PROVINCE_95, now=OCT + 35 * DAY)
    sources = {}
    languages: tuple[Language, ...] = ("vi", "en")
    for language in languages:
        sources[language] = tmp_path / f"report-2025-10-{language}.docx"
        sources[language].write_bytes(docx_bytes(report, ISSUER, language))
    profile = tmp_path / "lo-profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless",
         "--convert-to", "pdf", "--outdir", str(tmp_path), *map(str, sources.values())],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    pdf = tmp_path / "report-2025-10-vi.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    pages = pages_text(pdf)
    first = pages[0]
    # The issuing body on one line beside the motto (it wrapped: "… CÔNG / NGHỆ").
    assert re.search(r"SỞ KHOA HỌC VÀ CÔNG NGHỆ\s+Độc lập - Tự do - Hạnh phúc", first)
    assert "Kính gửi: UBND tỉnh." in first and "I. ĐÁNH GIÁ CHUNG" in first
    # The report is two pages; the 95 rows of each table are the annex's, from page 3.
    annex = next(n for n, page in enumerate(pages) if "PHỤ LỤC" in page)
    assert annex <= 2 and "KT. GIÁM ĐỐC" in pages[annex - 1]
    assert all("Xã Thử Nghiệm" not in page for page in pages[:annex])
    table_pages = [page for page in pages[annex:] if re.search(r"Xã Thử Nghiệm \d", page)]
    assert len(table_pages) >= 4
    for page in table_pages:
        # Every page of a table starts with its header row, STT on one line.
        assert re.search(r"\bSTT\b", page) and "Xã, phường" in page
    # In English too, the body's longer name and the motto each on one line.
    english = pages_text(tmp_path / "report-2025-10-en.pdf")[0]
    assert re.search(
        r"DEPARTMENT OF SCIENCE AND TECHNOLOGY\s+Independence - Freedom - Happiness", english
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pdf, ARTIFACTS / "report-2025-10.pdf")
    if shutil.which("pdftoppm"):  # the first two pages as images, to look at
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "2", str(pdf),
             str(ARTIFACTS / "report-2025-10")],
            check=True, timeout=60,
        )  # fmt: skip
        assert (ARTIFACTS / "report-2025-10-1.png").read_bytes()[:4] == b"\x89PNG"
        subprocess.run(
            ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile",
             str(tmp_path / "report-2025-10-en.pdf"), str(ARTIFACTS / "report-2025-10-en")],
            check=True, timeout=60,
        )  # fmt: skip
