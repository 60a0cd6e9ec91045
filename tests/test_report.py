"""The monthly report: a month of history whose every figure is computed by hand, checked in
every cell of every format."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agent.wire import Envelope, Sample
from collector.cli.main import main
from collector.outputs.report.build import build, month_bounds
from collector.outputs.report.render import (
    Duration,
    csv_text,
    markdown,
    render,
    sheet_name,
    tables,
    xlsx_bytes,
)
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore

VN = dt.timezone(dt.timedelta(hours=7))
OCT = dt.datetime(2025, 10, 1, tzinfo=VN).timestamp()
DAY, HOUR = 86400.0, 3600.0
INVENTORY = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[
        Commune(slug="la-nga", name="Xã La Ngà", code="26227", pcs=3, polycoms=1),
        Commune(slug="phu-hoa", name="Xã Phú Hòa", code="26221", pcs=2, polycoms=1),
        Commune(slug="bien-hoa", name="Phường Biên Hòa", code="26068", pcs=4),
    ],
)
_seq: dict[str, int] = {}


def put(store: StateStore, commune: str, agent: str, ts: float, check: str, **fields: Any) -> None:
    tags = {"network": "tslcd"} if check == "link" else {}
    sample = Sample(
        ts=ts, check=check, name=check, outcome="ok", target="", fields=fields, tags=tags
    )
    key = f"{commune}/{agent}"
    _seq[key] = _seq.get(key, 0) + 1
    envelope = Envelope(
        v=1,
        agent=agent,
        province="dong-nai",
        commune=commune,
        seq=_seq[key],
        ts=ts,
        samples=[sample],
    )
    store.apply([envelope], received=ts)


def alert(
    store: StateStore, commune: str, rule: str, fired: float, ack_after: float | None
) -> None:
    with store.transaction() as db:
        db.execute(
            """INSERT INTO alerts (rule, subject, province, commune, severity, state,
                                   started_at, fired_at, resolved_at, acked_at)
               VALUES (?, ?, 'dong-nai', ?, 'critical', 'resolved', ?, ?, ?, ?)""",
            (
                rule,
                f"dong-nai/{commune}",
                commune,
                fired - 120,
                fired,
                fired + 3600,
                None if ack_after is None else fired + ack_after,
            ),
        )


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "state.sqlite")
    # La Ngà. pc-01: protected all month. pc-02: old signatures days 10-20. pc-03: from
    # day 15, switched off for its first day.
    put(store, "la-nga", "pc-01", OCT, "antivirus", verdict="protected")
    put(store, "la-nga", "pc-02", OCT, "antivirus", verdict="protected")
    put(store, "la-nga", "pc-02", OCT + 10 * DAY, "antivirus", verdict="outdated")
    put(store, "la-nga", "pc-02", OCT + 20 * DAY, "antivirus", verdict="protected")
    put(store, "la-nga", "pc-03", OCT + 15 * DAY, "antivirus", verdict="unprotected")
    put(store, "la-nga", "pc-03", OCT + 16 * DAY, "antivirus", verdict="protected")
    # The line, probed by pc-01 and pc-02: both down day 2 08:00-11:00; on day 5 only
    # pc-01 lost it (half an hour): not the line.
    for agent in ("pc-01", "pc-02"):
        put(store, "la-nga", agent, OCT, "link", up=1)
        put(store, "la-nga", agent, OCT + 2 * DAY + 8 * HOUR, "link", up=0)
        put(store, "la-nga", agent, OCT + 2 * DAY + 11 * HOUR, "link", up=1)
    put(store, "la-nga", "pc-01", OCT + 5 * DAY, "link", up=0)
    put(store, "la-nga", "pc-01", OCT + 5 * DAY + 0.5 * HOUR, "link", up=1)
    # The Polycom: not ready for 12 hours on day 7.
    put(store, "la-nga", "poller", OCT, "polycom", up=1, ready=True)
    put(store, "la-nga", "poller", OCT + 7 * DAY, "polycom", up=1, ready=False)
    put(store, "la-nga", "poller", OCT + 7 * DAY + 12 * HOUR, "polycom", up=1, ready=True)
    # Phú Hòa: one PC protected, one with no anti-malware; the line down from day 30 noon
    # into November.
    put(store, "phu-hoa", "pc-01", OCT, "antivirus", verdict="protected")
    put(store, "phu-hoa", "pc-02", OCT, "antivirus", verdict="none")
    put(store, "phu-hoa", "pc-01", OCT, "link", up=1)
    put(store, "phu-hoa", "pc-01", OCT + 30 * DAY + 12 * HOUR, "link", up=0)
    # Alerts: acknowledged after 30, 90 and 10 minutes, one never; two outside October.
    alert(store, "la-nga", "line_down_tslcd", OCT + 2 * DAY + 8 * HOUR + 120, 30 * 60)
    alert(store, "la-nga", "agent_offline", OCT + 3 * DAY, None)
    alert(store, "la-nga", "pc_unprotected", OCT + 15 * DAY + 600, 90 * 60)
    alert(store, "phu-hoa", "line_down_tslcd", OCT + 30 * DAY + 12 * HOUR + 120, 10 * 60)
    alert(store, "la-nga", "disk_full", OCT - DAY, 60)
    alert(store, "la-nga", "disk_full", OCT + 32 * DAY, 60)
    return store


# Computed by hand (October: 31 days = 2,678,400 s).
# La Ngà PC-time: 31 + 31 + 16 = 78 days observed; protected 31 + 21 + 15 = 67; old 10.
# Line: 3 h down of 31 days = 99.597 %. Polycom: 12 h not ready = 98.39 %.
# Phú Hòa: protected 31 of 62 PC-days = 50 %; line down 12 h = 98.387 %.
# Province: protected 98 / 140 = 70 %; old 10 / 140 = 7.14 %; line mean 98.992 %.
EXPECTED_VI = [
    (
        "I. Hệ thống phòng chống mã độc",
        [
            [1, "Xã La Ngà", "26227", 3, 3, 85.9, 12.82],
            [2, "Xã Phú Hòa", "26221", 2, 2, 50.0, 0.0],
            [3, "Phường Biên Hòa", "26068", 0, 4, None, None],
            ["", "Toàn tỉnh", "", 5, 9, 70.0, 7.14],
        ],
    ),
    (
        # No maintenance window: the figures without maintenance are the same.
        "II. Mạng truyền số liệu chuyên dùng",
        [
            [1, "Xã La Ngà", "26227", 99.597, Duration(3 * HOUR), 1, 99.597, Duration(0)],
            [2, "Xã Phú Hòa", "26221", 98.387, Duration(12 * HOUR), 1, 98.387, Duration(0)],
            [3, "Phường Biên Hòa", "26068", None, Duration(0), 0, None, Duration(0)],
            ["", "Toàn tỉnh", "", 98.992, Duration(15 * HOUR), 2, 98.992, Duration(0)],
        ],
    ),
    (
        "III. Hội nghị truyền hình trực tuyến",
        [
            [1, "Xã La Ngà", "26227", 1, 1, 98.39, 98.39],
            [2, "Xã Phú Hòa", "26221", 0, 1, None, None],
            [3, "Phường Biên Hòa", "26068", 0, None, None, None],
            ["", "Toàn tỉnh", "", 1, 2, 98.39, 98.39],
        ],
    ),
    (
        "IV. Cảnh báo trong tháng",
        [
            ["Mất đường truyền chuyên dùng", 2, 2, 20.0],
            ["Máy mất kết nối", 1, 0, None],
            ["Máy không được bảo vệ", 1, 1, 90.0],
            ["Toàn tỉnh", 4, 3, 43.3],
        ],
    ),
]


def test_every_cell_of_october(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 40 * DAY)
    got = [(heading, rows) for heading, (_, rows) in tables(report, "vi")]
    assert got == EXPECTED_VI
    assert report.total.pc_observed_s == 140 * DAY  # the denominators, exactly


def test_the_xlsx_holds_the_same_cells_as_numbers(store: StateStore) -> None:
    from openpyxl import load_workbook

    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 40 * DAY)
    workbook = load_workbook(io.BytesIO(xlsx_bytes(report, "vi")))
    # Sheet names are whole words (a heading cut at 31 characters read "2. Mạng truyền
    # số liệu chuyên d").
    assert workbook.sheetnames == [
        "Tổng hợp",
        "1. Phòng chống mã độc",
        "2. Mạng truyền số liệu",
        "3. Hội nghị trực tuyến",
        "4. Cảnh báo",
    ]
    summary = workbook["Tổng hợp"]
    assert summary["B1"].value is None
    assert summary["A2"].value == "Tháng 10/2025 — Đồng Nai"
    assert summary["A5"].value.startswith("Hệ thống phòng chống mã độc: 44,4%")
    for index, (heading, rows) in enumerate(EXPECTED_VI, 1):
        sheet = workbook.worksheets[index]
        assert sheet["A1"].value == heading
        cells = [[c.value for c in row] for row in sheet.iter_rows(min_row=3)]
        # A time is a spreadsheet time (shown h:mm), read back as a timedelta.
        expected = [
            [
                None
                if v == ""
                else dt.timedelta(seconds=v.seconds)
                if isinstance(v, Duration)
                else v
                for v in row
            ]
            for row in rows
        ]
        assert cells == expected
        # Counts, percentages and times are numbers, never text like '8' or '0h00'.
        figures = [c for row in sheet.iter_rows(min_row=3, min_col=4) for c in row]
        # ("d": how openpyxl reads back a number shown in a time format.)
        assert all(c.data_type in ("n", "d") for c in figures), [c.value for c in figures]
    network = workbook.worksheets[2]
    assert network["E3"].number_format == "[h]:mm" and network["E3"].value == dt.timedelta(hours=3)


def test_a_sheet_name_is_cut_at_a_word_never_within_one() -> None:
    assert sheet_name("2. Mạng truyền số liệu chuyên dùng") == "2. Mạng truyền số liệu chuyên"
    assert sheet_name("Tổng hợp") == "Tổng hợp" and sheet_name("a/b: c?") == "a b  c"
    assert len(sheet_name("x" * 40)) == 31


def test_markdown_and_csv_in_english(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-10", INVENTORY, now=OCT + 40 * DAY)
    text = markdown(report, "en")
    assert "## I. Anti-malware coverage" in text
    assert "| 1 | Xã La Ngà | 26227 | 3 | 3 | 85.9 | 12.82 |" in text
    assert "| | Province | | 1 | 2 | 98.39 | 98.39 |" in text.replace("|  |", "| |")
    assert "| 3 | Phường Biên Hòa | 26068 | 0 | — | — | — |" in text  # none expected
    data = render(report, "csv", "en")
    # A byte order mark, so that Excel on Windows reads UTF-8 and keeps the diacritics.
    assert data[:3] == b"\xef\xbb\xbf" and "Xã La Ngà" in data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows == list(csv.reader(io.StringIO(csv_text(report, "en"))))
    assert rows[0][:4] == ["Commune", "Code", "PCs reporting", "PCs expected"]
    assert rows[1] == [
        "Xã La Ngà",
        "26227",
        "3",
        "3",
        "85.9",
        "12.82",
        "99.597",
        "3:00",
        "1",
        "99.597",
        "0:00",
        "1",
        "1",
        "98.39",
        "98.39",
        "3",
        "2",
        "60.0",
    ]
    assert rows[-1][0] == "Province" and rows[-1][15:] == ["4", "3", "43.3"]
    vi = markdown(report, "vi")
    assert "| 1 | Xã La Ngà | 26227 | 3 | 3 | 85,9 | 12,82 |" in vi  # decimal comma


def test_month_bounds_are_local_time_and_checked() -> None:
    start, end = month_bounds("2025-12")
    assert start == dt.datetime(2025, 12, 1, tzinfo=VN).timestamp()
    assert end == dt.datetime(2026, 1, 1, tzinfo=VN).timestamp()
    with pytest.raises(ValueError, match="2025-10"):
        month_bounds("October")
    with pytest.raises(ValueError, match="no month 13"):
        month_bounds("2025-13")


def test_the_report_command_writes_each_format(store: StateStore, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        'province = "dong-nai"\nname = "Đồng Nai"\n'
        '[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\npcs = 3\npolycoms = 1\n'
    )
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{store.path}"\n[collector]\ninventory = ["{inventory}"]\n')
    runner = CliRunner()
    result = runner.invoke(main, ["report", "-c", str(config), "--month", "2025-10"])
    assert result.exit_code == 0, result.output
    assert "BÁO CÁO GIÁM SÁT" in result.output and "| 1 | Xã La Ngà |  | 3 | 3 | 85,9 |" in (
        result.output
    )
    # Communes seen but not in this inventory follow it.
    assert "| 2 | phu-hoa |" in result.output
    out = tmp_path / "october.xlsx"
    args = ["report", "-c", str(config), "--month", "2025-10", "--format", "xlsx", "-o", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0 and out.read_bytes()[:2] == b"PK"
    result = runner.invoke(
        main, ["report", "-c", str(config), "--month", "2025-10", "--format", "xlsx"]
    )
    assert result.exit_code == 2 and "needs --output" in result.output
    result = runner.invoke(main, ["report", "-c", str(config), "--month", "10/2025"])
    assert result.exit_code == 2 and "expected a month like 2025-10" in result.output
    html = runner.invoke(
        main, ["report", "-c", str(config), "--month", "2025-10", "--format", "html"]
    )
    assert html.output.startswith('<!doctype html><html lang="vi">')


def test_a_month_with_no_data_makes_a_report_that_says_so(tmp_path: Path) -> None:
    empty = StateStore(tmp_path / "empty.sqlite")
    report = build(empty, "dong-nai", "2025-06", INVENTORY, now=OCT)
    assert not report.has_data and [c.pcs_reporting for c in report.communes] == [0, 0, 0]
    text = markdown(report, "vi")
    assert "Không có số liệu giám sát trong tháng 06/2025" in text
    assert "| 1 | Xã La Ngà | 26227 | 0 | 3 | — | — |" in text  # the communes, no figures
    assert "No monitoring data for 06/2025" in markdown(report, "en")
    assert xlsx_bytes(report, "vi")[:2] == b"PK"
