"""The monthly report's section on the province's shared systems: an October of probes
from three communes, sent as the agents send them (through the ingest), whose every
figure is worked out by hand below; the section in every format (the Word document
read back), a technician's communes only, and no section for a province without a
catalogue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import urllib.request
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import pytest
from click.testing import CliRunner
from docx import Document

from agent.wire import Envelope, Sample, encode
from collector.cli.main import main
from collector.config import ApiSection, ApiToken, ConsoleSection
from collector.ingest.ingestor import Ingestor, Message
from collector.outputs.report.build import MonthlyReport, build
from collector.outputs.report.cells import Duration
from collector.outputs.report.docx import docx_bytes
from collector.outputs.report.render import csv_text, html_text, markdown, xlsx_bytes
from collector.outputs.report.sentences import (
    all_sentences,
    number,
    shared_system,
    shortcomings,
)
from collector.outputs.report.systemtables import system_tables
from collector.state import maintenance, systemtimes
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.state.systemhealth import system_subject
from collector.state.systems import Catalogue, parse_catalogue
from collector.web.factory import create_app
from tests.factories import status
from tests.servers import AppServer
from tests.test_report import DAY, HOUR, INVENTORY, OCT

MOT_CUA = "https://motcua.dongnai.gov.vn/"
LIS = "https://dongnailis.dongnai.gov.vn/"
SITES = {"la-nga": "https://langa.dongnai.gov.vn/", "phu-hoa": "https://phuhoa.dongnai.gov.vn/"}
CATALOGUE = parse_catalogue(
    {
        "province": "dong-nai",
        "systems": [
            {"id": "mot-cua", "name": "Hệ thống một cửa điện tử", "kind": "one-stop",
             "url": MOT_CUA, "network": "tslcd", "owner": "Sở KH&CN"},
            {"id": "dongnai-lis", "name": "Hệ thống thông tin đất đai (DongNai.LIS)",
             "kind": "land", "url": LIS, "network": "tslcd", "communes": ["la-nga", "phu-hoa"]},
        ],
        "websites": [{"commune": c, "url": url} for c, url in SITES.items()],
    },
    "dong-nai.systems.toml",
    INVENTORY,
)  # fmt: skip
#: The probes answer every 6 hours: the month's 124 answers per commune and system.
STEP = 6 * HOUR
GRID = [OCT + k * STEP for k in range(124)]
#: Each commune's answering time (ms): 122, 121 and 123 healthy answers of mot-cua.
SPEED = {"la-nga": 200.0, "phu-hoa": 300.0, "bien-hoa": 1500.0}
NOW = OCT + 40 * DAY


def system_down(commune: str, system: str, ts: float) -> bool:
    """The month's story, every outage on the 6-hour grid (each sample holds until the next):
    - mot-cua from La Ngà: down day 3 12:00-18:00, its line up: 6 h that count;
    - mot-cua from Phú Hòa: down day 11 06:00-18:00, its own line down 06:00-12:00: 6 h
      left out as the commune's line, 6 h that count;
    - mot-cua from every commune: down day 21 00:00-06:00, inside the system's
      maintenance window: 3 x 6 h left out as maintenance;
    - Phú Hòa's website: down day 15 00:00-12:00 (12 h)."""
    day, hour = divmod((ts - OCT) / HOUR, 24)
    if system == "mot-cua":
        return (
            (commune == "la-nga" and (day, hour) == (2, 12))
            or (commune == "phu-hoa" and day == 10 and hour in (6, 12))
            or (day, hour) == (20, 0)
        )
    return system == "website" and commune == "phu-hoa" and day == 14 and hour in (0, 6)


def line_up(commune: str, ts: float) -> bool:
    day, hour = divmod((ts - OCT) / HOUR, 24)
    return not (commune == "phu-hoa" and (day, hour) == (10, 6))


def probe(commune: str, system: str, ts: float, url: str, kind: str) -> Sample:
    """A system check's sample as the agent sends it (agent/checks/system.py)."""
    up = not system_down(commune, system, ts)
    fields: dict[str, object] = {"up": up}
    if up:
        fields |= {"status": 200, "total_ms": SPEED[commune], "ttfb_ms": SPEED[commune] / 2}
        if url.startswith("https"):
            fields["cert_days"] = 40.0
    return Sample(
        ts=ts, check="system", name=system, outcome="ok" if up else "down", target=url,
        fields=fields, tags={"network": "tslcd" if kind != "website" else "internet",
                             "system": system, "kind": kind},
        error="" if up else "connection refused",
    )  # fmt: skip


def october(store: StateStore) -> None:
    """Each commune's poller, every 6 hours: its dedicated line and the systems it uses,
    through the ingest as the broker hands them over."""
    # Each poller's birth: it runs, and says its interval (its silences are measured by it).
    store.apply(
        statuses=[(status("online", OCT, agent="poller", commune=c, interval=STEP), OCT)
                  for c in SPEED]
    )  # fmt: skip
    messages = []
    for commune in SPEED:
        for seq, ts in enumerate(GRID, 1):
            samples = [
                Sample(ts=ts, check="link", name="tslcd-gw", outcome="ok", target="10.0.0.1",
                       fields={"up": int(line_up(commune, ts))}, tags={"network": "tslcd"}),
                probe(commune, "mot-cua", ts, MOT_CUA, "one-stop"),
            ]  # fmt: skip
            if commune in ("la-nga", "phu-hoa"):
                samples.append(probe(commune, "dongnai-lis", ts, LIS, "land"))
                samples.append(probe(commune, "website", ts, SITES[commune], "website"))
            envelope = Envelope(
                v=1, agent="poller", province="dong-nai", commune=commune, seq=seq, ts=ts,
                samples=samples,
            )  # fmt: skip
            topic = f"commune/dong-nai/{commune}/poller/data"
            messages.append(Message(topic, encode(envelope), ts, lambda: None))
    ingestor = Ingestor(store, "commune")
    ingestor.process(messages)
    assert ingestor.stats.applied_envelopes == 3 * 124 and not ingestor.stats.rejected
    maintenance.add(
        store, province="dong-nai", device="mot-cua", starts=OCT + 20 * DAY,
        ends=OCT + 20 * DAY + 6 * HOUR, created_by="test", now=OCT, reason="nâng cấp",
    )  # fmt: skip
    with store.transaction() as db:
        for system, commune, rule, started, resolved, value in [
            # La Ngà's own outage, its line up; the certificate (still firing at the end of
            # the month); Phú Hòa's website; one of September, over before October.
            ("mot-cua", "la-nga", "system_unreachable_here", OCT + 2 * DAY + 12 * HOUR + 600,
             OCT + 2 * DAY + 18 * HOUR, "connection refused"),
            ("mot-cua", "", "system_certificate_expiring", OCT + 25 * DAY, None, "9.5"),
            ("website", "phu-hoa", "website_down", OCT + 14 * DAY + 600,
             OCT + 14 * DAY + 12 * HOUR, "connection refused"),
            ("mot-cua", "", "system_down", OCT - 5 * DAY, OCT - 4 * DAY, "3/3"),
        ]:  # fmt: skip
            db.execute(
                """INSERT INTO alerts (rule, subject, province, commune, agent, name, target,
                   severity, state, started_at, fired_at, resolved_at, value, labels, late)
                   VALUES (?, ?, 'dong-nai', ?, '', ?, '', 'warning', ?, ?, ?, ?, ?, '{}', 0)""",
                (rule, system_subject("dong-nai", system, commune), commune, system,
                 "firing" if resolved is None else "resolved", started, started, resolved,
                 value),
            )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path / "state.sqlite")
    october(opened)
    yield opened
    opened.close()


def report_of(store: StateStore, **kwargs: object) -> MonthlyReport:
    return build(store, "dong-nai", "2025-10", INVENTORY, now=NOW, **kwargs)  # type: ignore[arg-type]


def bucketed(ms: float) -> float:
    """A response time as the histograms keep it (within a tenth, systemtimes.py)."""
    return round(systemtimes.value_of(systemtimes.bucket_of(ms)), 1)


# By hand (October: 744 h a commune).
# mot-cua, 3 communes: 2,232 commune-hours; La Ngà's line never down, Phú Hòa's 6 h
# (excluded), maintenance 3 x 6 h = 18 h (excluded). Watched 2,232 - 6 - 18 = 2,208 h,
# down 6 + 6 = 12 h: 2,196 / 2,208 = 99.4565 %. With maintenance counted: watched
# 2,226 h, down 12 + 18 = 30 h: 2,196 / 2,226 = 98.6523 %.
# Healthy answers: La Ngà 124 - 2 = 122 at 200 ms, Phú Hòa 124 - 3 = 121 at 300 ms,
# Biên Hòa 124 - 1 = 123 at 1,500 ms: 366; the median (183rd) is a 300 ms answer, the
# 95th percentile (347.7th) a 1,500 ms one.
# DongNai.LIS: La Ngà and Phú Hòa, never down: 100 %, answers 124 + 124; Phú Hòa's 6 h
# without its line left out here too (the system is reached over that line).
# Websites: 1,488 h, Phú Hòa's 12 h down: 1,476 / 1,488 = 99.1935 %.
MOT_CUA_ROW = [1, "Hệ thống một cửa điện tử", 3, 3, 99.457, 98.652, Duration(12 * HOUR),
               Duration(18 * HOUR), Duration(6 * HOUR), Duration(0), round(bucketed(300.0)),
               round(bucketed(1500.0)), 2]  # fmt: skip
LIS_ROW = [2, "Hệ thống thông tin đất đai (DongNai.LIS)", 2, 2, 100.0, 100.0, Duration(0),
           Duration(0), Duration(6 * HOUR), Duration(0), round(bucketed(200.0)),
           round(bucketed(300.0)),
           0]  # fmt: skip
WEBSITES_ROW = [3, "Trang thông tin điện tử của các xã", 2, 2, 99.194, 99.194,
                Duration(12 * HOUR), Duration(0), Duration(0), Duration(0),
                round(bucketed(200.0)),
                round(bucketed(300.0)), 1]  # fmt: skip


def test_the_systems_figures_of_october_worked_out_by_hand(store: StateStore) -> None:
    report = report_of(store, catalogue=CATALOGUE)
    assert [s.id for s in report.systems] == ["mot-cua", "dongnai-lis", "website"]
    # The certificate's alert is the system's, of no commune: counted, never a commune's row.
    assert [c.slug for c in report.communes] == ["la-nga", "phu-hoa", "bien-hoa"]
    assert report.total.alerts == 3
    mot_cua = report.systems[0].figures
    assert mot_cua.communes == 3 and report.systems[0].communes == 3
    assert mot_cua.line_excluded_s == pytest.approx(6 * HOUR)
    assert mot_cua.maintenance_s == pytest.approx(18 * HOUR)
    assert mot_cua.observed_s == pytest.approx(2208 * HOUR)
    assert mot_cua.down_s == pytest.approx(12 * HOUR)
    assert mot_cua.availability == pytest.approx(100 * 2196 / 2208)
    assert mot_cua.availability_with_maintenance == pytest.approx(100 * 2196 / 2226)
    assert mot_cua.answers == 366
    assert mot_cua.p50_ms == bucketed(300.0) and mot_cua.p95_ms == bucketed(1500.0)
    assert mot_cua.p50_ms == pytest.approx(300.0, rel=0.1)
    websites = report.systems[2].figures
    assert websites.availability == pytest.approx(100 * 1476 / 1488)
    assert websites.line_excluded_s == 0  # a website is reached over the Internet
    [systems, incidents] = system_tables(report, "vi")
    assert systems.heading == "V. Các hệ thống thông tin dùng chung"
    assert systems.table[1] == [MOT_CUA_ROW, LIS_ROW, WEBSITES_ROW]
    # The incidents overlapping October, when, how long and what (September's is not).
    assert incidents.table[1] == [
        [1, "Hệ thống một cửa điện tử", "03/10/2025 12:10", "03/10/2025 18:00",
         Duration(5 * HOUR + 50 * 60),
         "Xã La Ngà không truy cập được trong khi đường truyền vẫn hoạt động (connection "
         "refused)"],
        [2, "Hệ thống một cửa điện tử", "26/10/2025 00:00", "Chưa kết thúc",
         Duration(6 * DAY), "Chứng thư số sắp hết hạn (còn 9,5 ngày)"],
        [3, "Trang thông tin điện tử của các xã", "15/10/2025 00:10", "15/10/2025 12:00",
         Duration(11 * HOUR + 50 * 60), "Trang của Xã Phú Hòa không truy cập được (connection "
         "refused)"],
    ]  # fmt: skip
    # The seeds' wording: the item, then system by system.
    said = all_sentences(report, "vi")
    assert said[4] == (
        "Các hệ thống thông tin dùng chung: 3 hệ thống được giám sát từ các xã, phường, 3 hệ "
        "thống có số liệu trong tháng; tỷ lệ sẵn sàng thấp nhất: Trang thông tin điện tử của "
        "các xã (99,19%); 3 sự cố trong tháng."
    )
    p50, p95 = (f"{number(bucketed(ms), 0)} ms" for ms in (300.0, 1500.0))  # 1.500 ms
    assert shared_system(report.systems[0], "vi") == (
        "Hệ thống một cửa điện tử: tỷ lệ sẵn sàng 99,46% (tính cả thời gian bảo trì: "
        f"98,65%), theo dõi từ 3/3 xã, phường; không tính thời gian bảo trì (18 giờ 00 phút) "
        f"và thời gian mất đường truyền của xã (6 giờ 00 phút); thời gian phản hồi trung vị "
        f"{p50}, phân vị 95: {p95}; 2 sự cố."
    )
    assert shortcomings(report, "vi")[-1] == (
        "Hệ thống thông tin dùng chung có sự cố hoặc gián đoạn trong tháng: Trang thông tin "
        "điện tử của các xã (sẵn sàng 99,19%, 1 sự cố), Hệ thống một cửa điện tử (sẵn sàng "
        "99,46%, 2 sự cố)."
    )


def test_the_section_is_in_every_format(store: StateStore) -> None:
    from openpyxl import load_workbook

    report = report_of(store, catalogue=CATALOGUE)
    text = markdown(report, "vi")
    assert "## V. Các hệ thống thông tin dùng chung" in text
    assert "- Hệ thống một cửa điện tử: tỷ lệ sẵn sàng 99,46%" in text
    assert "| 1 | Hệ thống một cửa điện tử | 3 | 3 | 99,457 | 98,652 | 12:00 | 18:00 | 6:00 |" in (
        text
    )
    assert "### Sự cố các hệ thống thông tin dùng chung" in text
    assert "| 2 | Hệ thống một cửa điện tử | 26/10/2025 00:00 | Chưa kết thúc | 144:00 |" in text
    english = markdown(report, "en")
    assert "## V. Shared information systems" in english
    assert "| 3 | The communes' own websites | 2 | 2 | 99.194 | 99.194 | 12:00 |" in english
    page = html_text(report, "vi")
    assert "<h2>V. Các hệ thống thông tin dùng chung</h2>" in page
    assert "<td>Trang thông tin điện tử của các xã</td>" in page
    assert '<td class="n">99,457</td>' in page
    rows = list(csv.reader(io.StringIO(csv_text(report, "vi"))))
    heading = rows.index(["V. Các hệ thống thông tin dùng chung"])
    assert rows[heading - 1] == [] and rows[heading + 1][:3] == [
        "STT",
        "Hệ thống",
        "Số xã, phường sử dụng",
    ]
    assert rows[heading + 2] == ["1", "Hệ thống một cửa điện tử", "3", "3", "99.457", "98.652",
                                 "12:00", "18:00", "6:00", "0:00", str(round(bucketed(300.0))),
                                 str(round(bucketed(1500.0))), "2"]  # fmt: skip
    assert rows[-1][:2] == ["3", "Trang thông tin điện tử của các xã"]  # the last incident
    workbook = load_workbook(io.BytesIO(xlsx_bytes(report, "vi")))
    assert workbook.sheetnames[-2:] == ["5. Hệ thống dùng chung", "6. Sự cố hệ thống dùng chung"]
    sheet = workbook["5. Hệ thống dùng chung"]
    assert sheet["A1"].value == "V. Các hệ thống thông tin dùng chung"
    assert [c.value for c in sheet[3]][:9] == [
        1, "Hệ thống một cửa điện tử", 3, 3, 99.457, 98.652, dt.timedelta(hours=12),
        dt.timedelta(hours=18), dt.timedelta(hours=6),
    ]  # fmt: skip
    assert sheet["G3"].number_format == "[h]:mm" and not sheet["A3"].font.bold
    summary = [row[0].value for row in workbook["Tổng hợp"].iter_rows()]
    assert "- Hệ thống một cửa điện tử: tỷ lệ sẵn sàng 99,46%" in "\n".join(map(str, summary))
    assert workbook["6. Sự cố hệ thống dùng chung"]["F5"].value.startswith("Trang của Xã Phú Hòa")


def test_the_word_document_has_the_item_and_the_annex_tables(store: StateStore) -> None:
    report = report_of(store, catalogue=CATALOGUE)
    document = Document(io.BytesIO(docx_bytes(report)))
    texts = [p.text for p in document.paragraphs if p.text]
    item = texts.index(f"5. {all_sentences(report, 'vi')[4]}")
    assert texts[item + 1 : item + 4] == [f"- {shared_system(s, 'vi')}" for s in report.systems]
    assert texts[item + 4] == "II. TỒN TẠI, HẠN CHẾ"
    bold = next(p for p in document.paragraphs if p.text == texts[item]).runs[0]
    assert bold.text == "5. Các hệ thống thông tin dùng chung: " and bold.bold
    assert "Biểu 5. Các hệ thống thông tin dùng chung" in texts
    assert "Biểu 6. Sự cố các hệ thống thông tin dùng chung" in texts
    systems, incidents = document.tables[-2:]
    assert [c.text for c in systems.rows[1].cells] == [
        "1", "Hệ thống một cửa điện tử", "3", "3", "99,457", "98,652", "12:00", "18:00",
        "6:00", "0:00", str(round(bucketed(300.0))), str(round(bucketed(1500.0))), "2",
    ]  # fmt: skip
    assert len(systems.rows) == 4 and not systems.rows[3].cells[1].paragraphs[0].runs[0].bold
    assert [c.text for c in incidents.rows[2].cells][2:5] == [
        "26/10/2025 00:00", "Chưa kết thúc", "144:00"
    ]  # fmt: skip
    # Twelve columns: on landscape pages of their own, as wide as their text, numbered on.
    landscape = document.sections[-1]
    assert (round(landscape.page_width.mm), round(landscape.page_height.mm)) == (297, 210)
    assert round(landscape.left_margin.mm) == 30 and round(landscape.right_margin.mm) == 15
    assert round(sum(c.width.mm for c in systems.columns)) == 297 - 45
    assert not landscape.different_first_page_header_footer
    assert landscape.header.is_linked_to_previous  # the page number goes on
    assert round(document.sections[0].page_width.mm) == 210  # the report itself: portrait


def test_a_technicians_report_takes_the_scope(store: StateStore) -> None:
    """Biên Hòa only: mot-cua as Biên Hòa saw it, the systems it does not use left out,
    the system's own incidents kept, another commune's not."""
    report = report_of(store, catalogue=CATALOGUE, only=["bien-hoa"])
    [mot_cua] = report.systems
    assert (mot_cua.id, mot_cua.communes, mot_cua.figures.communes) == ("mot-cua", 1, 1)
    assert mot_cua.figures.availability == 100.0
    assert mot_cua.figures.availability_with_maintenance == pytest.approx(100 * 738 / 744)
    assert mot_cua.figures.p50_ms == bucketed(1500.0)
    assert [i.rule for i in mot_cua.figures.incidents] == ["system_certificate_expiring"]
    assert "Phú Hòa" not in markdown(report, "vi")


def test_a_province_without_a_catalogue_has_no_section(store: StateStore) -> None:
    from openpyxl import load_workbook

    elsewhere = Catalogue(province="lam-dong")
    for report in (report_of(store), report_of(store, catalogue=elsewhere)):
        assert report.systems == []
        assert system_tables(report, "vi") == [] and len(all_sentences(report, "vi")) == 4
        # The section's words (the alerts' table may still name a system rule).
        for text in (markdown(report, "vi"), html_text(report, "vi"), csv_text(report, "vi")):
            assert "thông tin dùng chung" not in text
            assert "Trang thông tin điện tử của các xã" not in text
        english = markdown(report, "en")
        assert "Shared information" not in english and "own websites" not in english
        workbook = load_workbook(io.BytesIO(xlsx_bytes(report, "vi")))
        assert workbook.sheetnames[-1] == "4. Cảnh báo"
        document = Document(io.BytesIO(docx_bytes(report)))
        whole = [p.text for p in document.paragraphs] + [
            c.text for t in document.tables for r in t.rows for c in r.cells
        ]
        assert not [t for t in whole if "thông tin dùng chung" in t or "Biểu 5" in t]
        assert len(document.tables) == 2 + 4


def test_the_report_command_reads_the_catalogue_of_the_config(
    store: StateStore, tmp_path: Path
) -> None:
    inventory = tmp_path / "dong-nai.toml"
    inventory.write_text(
        'province = "dong-nai"\nname = "Đồng Nai"\n'
        + "".join(
            f'[[communes]]\nslug = "{c.slug}"\nname = "{c.name}"\ncode = "{c.code}"\n'
            for c in INVENTORY.communes
        ),
        encoding="utf-8",
    )
    systems = tmp_path / "dong-nai.systems.toml"
    systems.write_text(
        f'province = "dong-nai"\n[[systems]]\nid = "mot-cua"\nname = "Hệ thống một cửa điện '
        f'tử"\nkind = "one-stop"\nurl = "{MOT_CUA}"\nnetwork = "tslcd"\n',
        encoding="utf-8",
    )
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{store.path}"\n[collector]\ninventory = ["{inventory}"]\n'
        f'systems = ["{systems}"]\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(main, ["report", "-c", str(config), "--month", "2025-10"])
    assert result.exit_code == 0, result.output
    assert "| 1 | Hệ thống một cửa điện tử | 3 | 3 | 99,457 | 98,652 |" in result.output
    # A catalogue that no longer parses is the command's clear error, not a traceback.
    systems.write_text('province = "dong-nai"\n[[systems]]\nid = "x"\n', encoding="utf-8")
    broken = runner.invoke(main, ["report", "-c", str(config), "--month", "2025-10"])
    assert broken.exit_code != 0 and "systems" in broken.output
    assert not isinstance(broken.exception, KeyError | TypeError | AttributeError)


def test_the_api_reports_the_section_within_a_tokens_communes(store: StateStore) -> None:
    tokens = {"ioc-token": [], "tech-token": ["bien-hoa"]}
    settings = ApiSection(
        tokens=[
            ApiToken(name=token, role="technician", sha256=sha256(token.encode()).hexdigest(),
                     provinces=["dong-nai"] if communes else [], communes=communes)
            for token, communes in tokens.items()
        ]
    )  # fmt: skip
    app = create_app(
        HealthModel(store, [INVENTORY]), store, settings, console=ConsoleSection(),
        systems=lambda: {"dong-nai": CATALOGUE},
    )  # fmt: skip
    served = AppServer(app).start()
    try:

        def get(query: str, token: str) -> bytes:
            request = urllib.request.Request(
                f"{served.url}/api/v1/reports/monthly?month=2025-10{query}",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                return bytes(response.read())

        figures = json.loads(get("", "ioc-token"))
        assert [s["id"] for s in figures["systems"]] == ["mot-cua", "dongnai-lis", "website"]
        assert figures["systems"][0]["figures"]["down_s"] == pytest.approx(12 * HOUR)
        mine = json.loads(get("", "tech-token"))
        assert [(s["id"], s["communes"]) for s in mine["systems"]] == [("mot-cua", 1)]
        document = Document(io.BytesIO(get("&format=docx", "ioc-token")))
        assert any(
            p.text == "Biểu 5. Các hệ thống thông tin dùng chung" for p in document.paragraphs
        )
    finally:
        served.stop()


def test_a_month_not_begun_has_the_systems_and_no_figures(store: StateStore) -> None:
    report = build(store, "dong-nai", "2025-12", INVENTORY, now=NOW, catalogue=CATALOGUE)
    assert [s.figures.availability for s in report.systems] == [None, None, None]
    assert shared_system(report.systems[0], "vi") == (
        "Hệ thống một cửa điện tử: chưa có số liệu giám sát trong tháng (3 xã, phường sử dụng)."
    )
    assert "| 1 | Hệ thống một cửa điện tử | 3 | 0 | — | — | 0:00 |" in markdown(report, "vi")


def test_a_probes_hostile_error_text_stays_text_in_every_format(store: StateStore) -> None:
    """A probe's error is the agent's text: characters XML cannot hold must not fail the
    workbook or the Word document, and HTML or a line break must not leave its cell."""
    hostile = "refused \ufffe\uffff\x07 <img src=x onerror=alert(1)>\nnext | cell"
    with store.transaction() as db:
        db.execute(
            """INSERT INTO alerts (rule, subject, province, commune, agent, name, target,
               severity, state, started_at, fired_at, resolved_at, value, labels, late)
               VALUES ('website_down', ?, 'dong-nai', 'la-nga', 'poller', 'website', '',
                       'warning', 'resolved', ?, ?, ?, ?, '{}', 0)""",
            (system_subject("dong-nai", "website", "la-nga"), OCT + 3 * DAY, OCT + 3 * DAY,
             OCT + 3 * DAY + HOUR, hostile),
        )  # fmt: skip
    report = report_of(store, catalogue=CATALOGUE)
    assert xlsx_bytes(report, "vi") and docx_bytes(report, None, "vi")
    text = markdown(report, "vi")
    [row] = [line for line in text.splitlines() if "onerror" in line]
    assert "<img" not in row and "&lt;img src=x onerror=alert(1)&gt;" in row
    assert "next \\| cell" in row and "\x07" not in row  # one row, its cells intact


def test_a_share_under_a_hundred_never_reads_a_hundred() -> None:
    from collector.common.shares import below_whole

    assert below_whole(99.9996, 2) == pytest.approx(99.99)
    assert below_whole(100.0, 2) == 100.0 and below_whole(98.5, 1) == 98.5
