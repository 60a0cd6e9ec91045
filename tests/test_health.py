"""The health model: every figure of a small province, computed by hand."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.wire import Envelope, Sample, Status
from collector.state.health import HealthModel
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from tests import factories

T0 = 1_795_000_000.0
NOW = T0 + 3600

INVENTORY = Inventory(
    province="dong-nai",
    name="Đồng Nai",
    communes=[
        Commune(slug="la-nga", name="Xã La Ngà", pcs=4, routers=1, polycoms=1),
        Commune(slug="phu-hoa", name="Xã Phú Hòa", polycoms=1),
        Commune(slug="bien-hoa", name="Phường Biên Hòa", pcs=30),
    ],
)

_seq: dict[str, int] = {}


def sample(ts: float, check: str, name: str, **kw: Any) -> Sample:
    return Sample(
        ts=ts,
        check=check,
        name=name,
        outcome=kw.pop("outcome", "ok"),
        item=kw.pop("item", ""),
        target=kw.pop("target", ""),
        fields=kw.pop("fields", {}),
        tags=kw.pop("tags", {}),
    )


def envelope(commune: str, agent: str, *samples: Sample) -> Envelope:
    _seq[agent] = _seq.get(agent, 0) + 1
    return factories.envelope(_seq[agent], *samples, agent=agent, commune=commune)


def birth(commune: str, agent: str, state: str = "online") -> tuple[Status, float]:
    return (
        Status(v=1, state=state, agent=agent, province="dong-nai", commune=commune, ts=T0),  # type: ignore[arg-type]
        T0,
    )


def antivirus(ts: float, verdict: str) -> Sample:
    return sample(ts, "antivirus", "antivirus", fields={"verdict": verdict})


def tslcd(ts: float, up: bool, rtt: float | None = None) -> Sample:
    fields: dict[str, Any] = {"up": int(up), "loss_percent": 0.0 if up else 100.0}
    if rtt is not None:
        fields["rtt_ms"] = rtt
    return sample(ts, "link", "tslcd", target="10.75.0.1", fields=fields, tags={"network": "tslcd"})


@pytest.fixture
def model(tmp_path: Path) -> HealthModel:
    return HealthModel(build_province(tmp_path), [INVENTORY], clock=lambda: NOW)


def build_province(tmp_path: Path) -> StateStore:
    """La Ngà with a bit of every trouble, Phú Hòa with its line down, Biên Hòa silent."""
    store = StateStore(tmp_path / "state.sqlite")
    apply = store.apply
    # La Ngà: four PCs expected, three known, one of them stopped; a poller box.
    apply(statuses=[birth("la-nga", a) for a in ("pc-01", "pc-02", "pc-03", "poller")])
    apply([envelope("la-nga", "pc-01", antivirus(T0, "protected"), tslcd(T0, True, 12.0))])
    apply([envelope("la-nga", "pc-02", antivirus(T0, "outdated"), tslcd(T0, True, 30.0))])
    apply([envelope("la-nga", "pc-03", antivirus(T0, "protected"))])
    apply(statuses=[birth("la-nga", "pc-03", "offline")])
    # The line: pc-01's probe down 1200-1500, pc-02's 1000-1800: both down 1200-1500 only.
    apply([envelope("la-nga", "pc-02", tslcd(T0 + 1000, False))])
    apply([envelope("la-nga", "pc-01", tslcd(T0 + 1200, False))])
    apply([envelope("la-nga", "pc-01", tslcd(T0 + 1500, True, 11.0))])
    apply([envelope("la-nga", "pc-02", tslcd(T0 + 1800, True, 25.0))])
    polycom = sample(
        T0,
        "polycom",
        "polycom",
        target="10.1.1.20",
        fields={"up": 1, "ready": False, "registered": False, "in_call": False},
    )
    router = sample(T0, "snmp", "router", target="10.1.1.1", fields={"up": 1})

    def port(name: str, oper: bool, admin: int, ts: float = T0) -> Sample:
        return sample(
            ts,
            "snmp",
            "router",
            item="interface",
            target=name,
            fields={"oper_up": oper, "admin_status": admin, "oper_state": "up" if oper else "down"},
        )

    apply(
        [
            envelope(
                "la-nga",
                "poller",
                polycom,
                router,
                port("Gi0/1", True, 1),
                port("Gi0/2", True, 1),
                port("Gi0/3", False, 2),
                port("Gi0/10", False, 1),
            )
        ]
    )
    # Gi0/2 stops operating; Gi0/10 was never used: an empty socket, not news.
    apply([envelope("la-nga", "poller", port("Gi0/2", False, 1, T0 + 600))])
    # Phú Hòa: one PC with no anti-malware at all, its line down since 3000.
    apply(statuses=[birth("phu-hoa", "pc-01")])
    apply([envelope("phu-hoa", "pc-01", antivirus(T0, "none"), tslcd(T0, True))])
    apply([envelope("phu-hoa", "pc-01", tslcd(T0 + 3000, False))])
    return store


def test_a_commune_with_every_kind_of_problem(model: HealthModel) -> None:
    commune = model.commune("la-nga")
    assert commune is not None
    assert (commune.name, commune.agents, commune.agents_online) == ("Xã La Ngà", 4, 3)
    am = commune.antimalware
    # pc-01 protected, pc-02 outdated, pc-03 stopped -> unknown; the poller is no PC.
    assert (am.expected, am.reporting, am.protected, am.signatures_too_old) == (4, 2, 1, 1)
    assert (am.unprotected, am.unknown, am.not_reporting) == (0, 1, 1)
    assert am.percent_protected == 25.0  # 1 of the 4 expected
    line = commune.line
    assert line.monitored and line.up is True and line.down_since is None
    # Both probes down only 1200-1500: 300 s of 3,600 observed.
    assert line.availability.last_24h == pytest.approx(100 * 3300 / 3600)
    assert line.availability.last_30d == pytest.approx(100 * 3300 / 3600)
    assert line.rtt_ms == 11.0  # the best probe that sees it up
    by_agent = {t.agent: t for t in line.targets}
    assert by_agent["pc-02"].availability.last_24h == pytest.approx(100 * 2800 / 3600)
    polycom = commune.polycom
    assert (polycom.expected, polycom.reporting, polycom.reachable, polycom.ready) == (1, 1, 1, 0)
    assert polycom.devices[0].ready_24h == 0.0
    interfaces = commune.interfaces
    assert (interfaces.devices, interfaces.up, interfaces.down, interfaces.unused) == (1, 1, 1, 1)
    assert [i.name for i in interfaces.down_list] == ["Gi0/2"]  # Gi0/3 is shut on purpose
    assert [i.name for i in interfaces.all] == ["Gi0/1", "Gi0/2", "Gi0/3", "Gi0/10"]
    assert interfaces.down_list[0].since == T0 + 600 and interfaces.down_list[0].seen_up
    assert commune.status == "warning"
    assert {r.code for r in commune.reasons} == {
        "agents_offline",
        "signatures_too_old",
        "pcs_missing",
        "polycom_not_ready",
        "interface_down",
    }


def test_a_commune_whose_line_is_down_and_a_pc_unprotected_is_critical(
    model: HealthModel,
) -> None:
    commune = model.commune("phu-hoa")
    assert commune is not None
    assert commune.status == "critical"
    assert commune.line.up is False and commune.line.down_since == T0 + 3000
    assert commune.line.availability.last_24h == pytest.approx(100 * 3000 / 3600)
    assert commune.antimalware.unprotected == 1
    assert commune.antimalware.percent_protected == 0.0  # of the 1 PC known (no count given)
    codes = {r.code for r in commune.reasons}
    assert {"line_down", "unprotected", "polycom_not_monitored"} <= codes


def test_a_commune_with_nothing_reporting_is_no_data_not_absent(model: HealthModel) -> None:
    commune = model.commune("bien-hoa")
    assert commune is not None and commune.status == "no_data"
    assert commune.antimalware.not_reporting == 30
    assert commune.antimalware.percent_protected == 0.0
    assert commune.line.availability.last_24h is None  # no data is not 100 %


def test_the_province_totals(model: HealthModel) -> None:
    province = model.province("dong-nai")
    assert province.name == "Đồng Nai"
    assert province.communes == 3
    assert province.communes_by_status == {"no_data": 1, "ok": 0, "warning": 1, "critical": 1}
    assert (province.pcs_expected, province.pcs_reporting, province.pcs_protected) == (34, 3, 1)
    # 4 expected in La Ngà + 1 known in Phú Hòa (no count) + 30 in Biên Hòa.
    assert province.percent_protected == pytest.approx(100 / 35)
    assert (province.lines_monitored, province.lines_up, province.lines_down) == (2, 1, 1)
    assert province.availability_24h == pytest.approx((100 * 3300 / 3600 + 100 * 3000 / 3600) / 2)
    assert (province.polycoms_expected, province.polycoms_reporting, province.polycoms_ready) == (
        2,
        1,
        0,
    )


def test_communes_not_in_the_inventory_still_show_after_it(model: HealthModel) -> None:
    model.store.apply(statuses=[birth("tan-tien", "pc-01")])
    assert [c.slug for c in model.communes("dong-nai")] == [
        "la-nga",
        "phu-hoa",
        "bien-hoa",
        "tan-tien",
    ]
    assert model.commune("nowhere") is None


def test_gone_agents_are_forgotten_but_their_line_history_stays(model: HealthModel) -> None:
    store = model.store
    # Received just now: a cut-off in the future makes every stopped agent old enough.
    forgotten = store.forget_agents(silent_before=time.time() + 60)
    assert forgotten == ["dong-nai/la-nga/pc-03"]  # the only one not running
    assert "dong-nai/la-nga/pc-03" not in {a.agent_key for a in store.agents()}
    assert store.latest("dong-nai/la-nga/pc-03") == []
    assert len(store.subjects("link")) == 3  # pc-01, pc-02 (La Ngà), pc-01 (Phú Hòa)


def test_the_lines_rtt_history_keeps_the_best_probe_per_five_minutes(model: HealthModel) -> None:
    history = model.store.rtt_history("dong-nai/la-nga", since=0)
    # T0: pc-01 12 ms and pc-02 30 ms in one bucket; then 11 ms (T0+1500), 25 ms (T0+1800).
    bucket = T0 // 300 * 300
    assert history == [(bucket, 12.0), (bucket + 1500, 11.0), (bucket + 1800, 25.0)]
    assert model.store.rtt_history("dong-nai/phu-hoa", since=0) == []  # no RTT measured


def test_a_reason_is_translated_from_its_count_not_from_its_english() -> None:
    from collector.common import words

    assert words.reason("vi", "unprotected", "whatever the English says", 3).endswith(": 3")
    assert (
        words.reason("vi", "line_down", "dedicated line (TSLCD) down")
        == words.REASONS["vi"]["line_down"]
    )
    assert words.reason("en", "unprotected", "3 PCs without working anti-malware", 3) == (
        "3 PCs without working anti-malware"
    )


def test_an_uplink_down_is_critical_even_never_seen_up(tmp_path: Path) -> None:
    store = build_province(tmp_path)
    marked = Inventory(
        province="dong-nai",
        name="Đồng Nai",
        communes=[
            Commune(slug="la-nga", name="Xã La Ngà", pcs=4, uplinks=["router:Gi0/10"]),
            *INVENTORY.communes[1:],
        ],
    )
    commune = HealthModel(store, [marked], clock=lambda: NOW).commune("la-nga")
    assert commune is not None
    interfaces = commune.interfaces
    assert (interfaces.uplinks_down, interfaces.down, interfaces.unused) == (1, 1, 0)
    assert commune.status == "critical"
    [uplink] = [r for r in commune.reasons if r.code == "uplink_down"]
    assert "router:Gi0/10" in uplink.detail


def test_the_overview_lines_from_the_cache_are_the_lines_computed_in_full(
    tmp_path: Path,
) -> None:
    store = build_province(tmp_path)
    now = [NOW]
    model = HealthModel(store, [INVENTORY], clock=lambda: now[0])

    def lines(detail: bool) -> dict[str, tuple[Any, ...]]:
        return {
            c.slug: (c.line.up, c.line.down_since, c.line.availability.last_24h,
                     c.line.availability.last_7d)
            for c in model.communes("dong-nai", detail=detail, days=0)
        }  # fmt: skip

    assert lines(False) == lines(True)
    assert lines(False)["la-nga"][2] == pytest.approx(100 * 3300 / 3600)
    # Both of La Ngà's probes lose the line again: the cached line follows.
    now[0] = NOW + 600
    store.apply([envelope("la-nga", "pc-01", tslcd(NOW + 100, False))])
    store.apply([envelope("la-nga", "pc-02", tslcd(NOW + 200, False))])
    cached = lines(False)
    assert cached == lines(True)
    assert cached["la-nga"][1] == NOW + 200  # down since the last probe said so
    # A sample older than what the store holds changes nothing, cache or not.
    store.apply([envelope("la-nga", "pc-02", tslcd(NOW + 150, True, 9.0))])
    assert lines(False) == lines(True) == cached


def test_warming_at_start_fills_the_overviews_line_cache(tmp_path: Path) -> None:
    store = build_province(tmp_path)
    model = HealthModel(store, [INVENTORY], clock=lambda: NOW)
    model.warm()
    reads: list[int] = []
    real = store.outages_of

    def counted(ids: Any, *args: Any) -> Any:
        reads.append(len(ids))
        return real(ids, *args)

    store.outages_of = counted  # type: ignore[method-assign]
    [la_nga] = [c for c in model.communes("dong-nai", detail=False) if c.slug == "la-nga"]
    assert la_nga.line.availability.last_24h == pytest.approx(100 * 3300 / 3600)
    assert reads == [1], "only the Polycom's outages are read: the line comes from the cache"
