"""A national collector's monthly reports: every province's in one run (``--province
all``), each the same as its own run makes, one province's report held at a time."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.wire import Envelope, Sample
from collector.cli.main import main
from collector.outputs.report.build import MonthlyReport, build, each_province
from collector.state.availability import Outage
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from tests.test_report import DAY, HOUR, OCT

DONG_NAI = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[Commune(slug="la-nga", name="Xã La Ngà", code="26227", pcs=2)],
)
LAM_DONG = Inventory(
    province="lam-dong",
    name="Lâm Đồng",
    communes=[Commune(slug="da-lat", name="Phường Đà Lạt", pcs=1)],
)


def probe(store: StateStore, province: str, commune: str, agent: str, ts: float, up: bool) -> None:
    sample = Sample(ts=ts, check="link", name="link", outcome="ok", target="",
                    fields={"up": int(up)}, tags={"network": "tslcd"})  # fmt: skip
    envelope = Envelope(v=1, agent=agent, province=province, commune=commune,
                        seq=int(ts), ts=ts, samples=[sample])  # fmt: skip
    store.apply([envelope], received=ts)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    """Đồng Nai's line down 3 hours on the 2nd; Lâm Đồng's 12 hours on the 20th."""
    store = StateStore(tmp_path / "state.sqlite")
    for agent in ("pc-01", "pc-02"):
        probe(store, "dong-nai", "la-nga", agent, OCT, True)
        probe(store, "dong-nai", "la-nga", agent, OCT + DAY + 8 * HOUR, False)
        probe(store, "dong-nai", "la-nga", agent, OCT + DAY + 11 * HOUR, True)
    probe(store, "lam-dong", "da-lat", "pc-01", OCT, True)
    probe(store, "lam-dong", "da-lat", "pc-01", OCT + 19 * DAY, False)
    probe(store, "lam-dong", "da-lat", "pc-01", OCT + 19 * DAY + 12 * HOUR, True)
    return store


class Watched(StateStore):
    """A store that notes, as each province's report begins reading its outages, how many
    of the reports made before are still in memory."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reports: list[weakref.ref[MonthlyReport]] = []
        self.held: list[int] = []

    def outages_under(
        self, place: str, start: float = 0.0, end: float = float("inf")
    ) -> dict[int, list[Outage]]:
        gc.collect()
        self.held.append(sum(ref() is not None for ref in self.reports))
        return super().outages_under(place, start, end)


def test_every_province_is_reported_one_at_a_time(store: StateStore) -> None:
    now = OCT + 40 * DAY
    watched = Watched(store.path)
    provinces = []
    for report in each_province(watched, "2025-10", [DONG_NAI, LAM_DONG], {}, now):
        watched.reports.append(weakref.ref(report))
        provinces.append(report.province)
        assert report == build(
            store, report.province, "2025-10",
            DONG_NAI if report.province == "dong-nai" else LAM_DONG, now=now,
        )  # fmt: skip
        assert report.communes[0].line_outages == 1
        del report  # as the command does once the province's file is written
    assert provinces == ["dong-nai", "lam-dong"]
    # While a province's report is made, none before it is still held: the country is
    # never in memory at once, however many provinces.
    assert watched.held == [0, 0]
    watched.close()


def test_the_report_command_writes_every_province_s_file(store: StateStore, tmp_path: Path) -> None:
    inventories = []
    for inventory, text in (
        (DONG_NAI, '[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\ncode = "26227"\npcs = 2\n'),
        (LAM_DONG, '[[communes]]\nslug = "da-lat"\nname = "Phường Đà Lạt"\npcs = 1\n'),
    ):
        path = tmp_path / f"{inventory.province}.toml"
        path.write_text(f'province = "{inventory.province}"\nname = "{inventory.name}"\n{text}')
        inventories.append(f'"{path}"')
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{store.path}"\n[collector]\ninventory = [{", ".join(inventories)}]\n'
    )
    runner = CliRunner()
    base = ["report", "-c", str(config), "--month", "2025-10", "--format", "csv"]
    folder = tmp_path / "reports"
    # In turn, and two provinces at once (a process each): the same files.
    for jobs in ("1", "2"):
        result = runner.invoke(
            main, [*base, "--province", "all", "-o", str(folder / jobs), "--jobs", jobs]
        )
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in (folder / jobs).iterdir()) == [
            "dong-nai-2025-10.csv",
            "lam-dong-2025-10.csv",
        ]
    for province in ("dong-nai", "lam-dong"):
        alone = tmp_path / f"{province}.csv"
        result = runner.invoke(main, [*base, "--province", province, "-o", str(alone)])
        assert result.exit_code == 0, result.output
        for jobs in ("1", "2"):
            made = folder / jobs / f"{province}-2025-10.csv"
            assert made.read_bytes() == alone.read_bytes()
    assert "Phường Đà Lạt" in (folder / "2" / "lam-dong-2025-10.csv").read_text("utf-8-sig")
    docx = runner.invoke(main, [*base[:-1], "docx", "--province", "all", "-o", str(folder)])
    assert docx.exit_code == 0 and (folder / "lam-dong-2025-10.docx").read_bytes()[:2] == b"PK"
    # A folder is needed, and a folder is no file.
    result = runner.invoke(main, [*base, "--province", "all"])
    assert result.exit_code == 2 and "needs --output FOLDER" in result.output
    result = runner.invoke(main, [*base, "--province", "all", "-o", str(alone)])
    assert result.exit_code == 2 and "is no folder" in result.output
    result = runner.invoke(main, [*base, "--province", "lam-dong", "-o", str(folder)])
    assert result.exit_code == 2 and "is a folder" in result.output
