"""The monthly report as the Word document the province files: opened again with
python-docx and checked against Nghị định 30/2020's layout (page, margins, fonts, the
header block, page numbers from page 2, the signer), its sentences and its numbers;
rendered by LibreOffice where it is installed (the PDF and a PNG kept as artifacts)."""

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
from collector.outputs.report.build import build
from collector.outputs.report.docx import docx_bytes
from collector.outputs.report.issuer import Issuer
from collector.outputs.report.sentences import all_sentences, number
from collector.state.store import StateStore
from tests.servers import REPO
from tests.test_report import DAY, INVENTORY, OCT, store

__all__ = ["store"]  # the October store, every figure computed by hand in test_report
ARTIFACTS = REPO / "test-artifacts" / "report"
ISSUER = Issuer(
    parent="UBND TỈNH ĐỒNG NAI",
    body="SỞ KHOA HỌC VÀ CÔNG NGHỆ",
    short="SKHCN",
    number="125",
    signer_title="KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC",
    signer_name="Nguyễn Văn An",
    recipients=("UBND tỉnh (b/c);", "Trung tâm IOC;", "Lưu: VT, CĐS."),
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
        "đặt và hoạt động phần mềm phòng chống mã độc; 0 máy mẫu nhận diện cũ; tỷ lệ thời "
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
    number_cell, date_cell = block.rows[1].cells
    assert number_cell.text == "Số: 125/BC-SKHCN"
    assert date_cell.text == "Đồng Nai, ngày 05 tháng 11 năm 2025"
    assert date_cell.paragraphs[0].runs[0].italic
    # Title, subject, the four sections each with its sentence and its table.
    texts = paragraphs_text(document)
    assert "BÁO CÁO" in texts
    assert "Tình hình giám sát hạ tầng công nghệ thông tin cấp xã tháng 10/2025" in texts
    for heading in (
        "I. Hệ thống phòng chống mã độc",
        "II. Mạng truyền số liệu chuyên dùng",
        "III. Hội nghị truyền hình trực tuyến",
        "IV. Cảnh báo trong tháng",
    ):
        assert heading in texts
    for sentence in all_sentences(report, "vi"):
        assert sentence in texts
    # Times New Roman everywhere, East Asian text included; the body 13 pt.
    runs = [r for p in document.paragraphs for r in p.runs if r.text]
    assert {r.font.name for r in runs} == {"Times New Roman"}
    assert all(r._element.rPr.rFonts.get(qn("w:eastAsia")) == "Times New Roman" for r in runs)
    body = next(p for p in document.paragraphs if p.text.startswith("Hệ thống phòng"))
    assert body.runs[0].font.size.pt == 13 and body.alignment == WD_ALIGN_PARAGRAPH.JUSTIFY
    assert round(body.paragraph_format.first_line_indent.mm) == 10
    # The tables: official codes and the figures of test_report, Vietnamese decimals.
    network = document.tables[2]
    la_nga = [c.text for c in network.rows[1].cells]
    assert la_nga[:6] == ["1", "Xã La Ngà", "26227", "99,597", "3h00", "1"]
    assert [c.text for c in network.rows[-1].cells][1] == "Toàn tỉnh"
    # The signer and the recipients.
    signer_block = document.tables[-1]
    recipients, signer = signer_block.rows[0].cells
    assert recipients.paragraphs[0].text == "Nơi nhận:" and "- Trung tâm IOC;" in recipients.text
    assert "PHÓ GIÁM ĐỐC" in signer.text and "Nguyễn Văn An" in signer.text


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
    assert "Trần Thị Bình" in document.tables[-1].rows[0].cells[1].text
    refused = runner.invoke(main, [*args, "--format", "docx"])
    assert refused.exit_code == 2 and "needs --output" in refused.output


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_renders_it(store: StateStore, tmp_path: Path) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 35 * DAY)
    source = tmp_path / "report-2025-10.docx"
    source.write_bytes(docx_bytes(report, ISSUER))
    profile = tmp_path / "lo-profile"
    subprocess.run(
        ["soffice", f"-env:UserInstallation=file://{profile}", "--headless",
         "--convert-to", "pdf", "--outdir", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    pdf = tmp_path / "report-2025-10.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    pages = len(re.findall(rb"/Type\s*/Page(?![a-z])", pdf.read_bytes()))
    assert pages >= 2, "the tables run onto a second page, numbered"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pdf, ARTIFACTS / pdf.name)
    if shutil.which("pdftoppm"):  # the first two pages as images, to look at
        subprocess.run(
            ["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "2", str(pdf),
             str(ARTIFACTS / "report-2025-10")],
            check=True, timeout=60,
        )  # fmt: skip
        assert (ARTIFACTS / "report-2025-10-1.png").read_bytes()[:4] == b"\x89PNG"
