"""The API as an IOC reads it, over real HTTP: a bad filter named, ISO times beside Unix
seconds, rounded percentages, the line apart from the other links, the line's week, the
province's availability in one call, and what "% protected" is of."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.config import ApiSection, ApiToken
from collector.state.store import StateStore
from tests.factories import envelope, link
from tests.test_api import TOKEN, Served, serve, with_an_alert
from tests.test_health import T0

VN = dt.timezone(dt.timedelta(hours=7))
TWO_DECIMALS = re.compile(r"^-?\d+(\.\d{1,2})?$")


def with_lan_and_alert(store: StateStore) -> None:
    """La Ngà's pc-01 also probes its LAN's file server and the tax portal; Tân Tiến's line
    fires an alert."""
    for seq, (name, network, target) in enumerate(
        [("nas", "lan", "192.168.1.10"), ("tax-portal", "internet", "thuedientu.gdt.gov.vn")]
    ):
        sample = link(T0 + 60, True, name=name, target=target, network=network)
        store.apply([envelope(100 + seq, sample, agent="pc-01", commune="la-nga")])
    with_an_alert(store)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    token = ApiToken(name="tech", role="technician", sha256=digest)
    yield from serve(tmp_path, ApiSection(tokens=[token]), with_lan_and_alert)


def test_a_bad_alert_filter_is_refused_naming_the_allowed_values(api: Served) -> None:
    status, body = api.get("/api/v1/alerts?state=bogus")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "state"]
    assert "'firing', 'resolved' or 'all'" in body["detail"][0]["msg"]
    status, body = api.get("/api/v1/alerts?severity=urgent")
    assert status == 422 and "'info', 'warning' or 'critical'" in body["detail"][0]["msg"]
    # "all" is a value (what the console asks), the same as no filter.
    status, every = api.get("/api/v1/alerts?state=all")
    assert status == 200 and every == api.get("/api/v1/alerts")[1] and len(every) == 1
    assert api.get("/api/v1/alerts?state=firing")[1] == every
    assert api.get("/api/v1/alerts?state=resolved")[1] == []


def test_times_have_their_iso_twin_in_vietnams_time(api: Served) -> None:
    status, report = api.get(f"/api/v1/availability?commune=la-nga&from={T0}&to={T0 + 3600}")
    assert status == 200
    assert report["window_start"] == T0
    assert report["window_start_iso"] == dt.datetime.fromtimestamp(T0, VN).isoformat()
    assert report["window_start_iso"].endswith("+07:00")
    [outage] = report["line"]["outages"]
    assert outage["start_iso"] == dt.datetime.fromtimestamp(T0 + 1200, VN).isoformat()
    [alert] = api.get("/api/v1/alerts")[1]
    assert dt.datetime.fromisoformat(alert["fired_at_iso"]).timestamp() == int(alert["fired_at"])
    assert alert["resolved_at"] is None and alert["resolved_at_iso"] is None
    [agent] = [a for a in api.get("/api/v1/agents?commune=la-nga")[1] if a["agent"] == "pc-01"]
    assert agent["last_seen_iso"].endswith("+07:00")


def test_percentages_are_rounded_to_two_decimals(api: Served) -> None:
    province = api.get("/api/v1/province?province=dong-nai")[1]
    commune = api.get("/api/v1/communes/la-nga")[1]
    shown = [
        province["percent_protected"],
        commune["antimalware"]["percent_protected"],
        *commune["line"]["availability"].values(),
        *(p["availability"]["last_24h"] for p in commune["line"]["targets"]),
    ]
    assert [p for p in shown if p is not None]
    for percent in shown:
        assert percent is None or TWO_DECIMALS.match(repr(percent)), percent


def test_the_line_lists_its_probes_the_other_links_stand_apart(api: Served) -> None:
    commune = api.get("/api/v1/communes/la-nga")[1]
    assert {t["network"] for t in commune["line"]["targets"]} == {"tslcd"}
    assert {(t["name"], t["network"]) for t in commune["links"]} == {
        ("nas", "lan"),
        ("tax-portal", "internet"),
    }


def test_the_lines_week_is_filled_day_by_day(api: Served) -> None:
    for commune in (
        api.get("/api/v1/communes/la-nga")[1],
        next(c for c in api.get("/api/v1/communes")[1] if c["slug"] == "la-nga"),
    ):
        days = commune["line"]["days"]
        assert len(days) == 7
        starts = [d["start"] for d in days]
        assert starts == sorted(starts) and all(
            d["start_iso"].endswith("T00:00:00+07:00") for d in days
        )


def test_the_provinces_availability_in_one_call(api: Served) -> None:
    window = f"from={T0}&to={T0 + 3600}"
    status, province = api.get(f"/api/v1/availability?province=dong-nai&{window}")
    assert status == 200 and province["province"] == "dong-nai"
    lines = {c["commune"]: c["line"] for c in province["communes"]}
    # La Ngà's two probes were both down 1200-1500 only; Phú Hòa's line down from 3000.
    assert lines["la-nga"]["percent"] == round(100 * 3300 / 3600, 2)
    assert lines["phu-hoa"]["percent"] == round(100 * 3000 / 3600, 2)
    assert lines["bien-hoa"] is None
    assert province["lines_monitored"] == 3  # Tân Tiến's, of the alert, too
    # Tân Tiến's probe began now, after the window: monitored, not observed in it.
    assert lines["tan-tien"]["percent"] is None
    mean = (100 * 3300 / 3600 + 100 * 3000 / 3600) / 2
    assert province["percent"] == round(mean, 2)
    # The same figure as the commune's own call.
    one = api.get(f"/api/v1/availability?commune=la-nga&{window}")[1]
    assert one["line"]["percent"] == lines["la-nga"]["percent"]
    assert api.get(f"/api/v1/availability?province=lam-dong&{window}")[0] == 404


def test_percent_protected_says_of_which_figure(api: Served) -> None:
    province = api.get("/api/v1/province?province=dong-nai")[1]
    # The inventory expects 4 PCs in La Ngà and 30 in Biên Hòa, says nothing of Phú Hòa
    # (its one PC known counts) nor of Tân Tiến (its PC reports no anti-malware).
    assert province["pcs_expected"] == 34
    assert province["pcs_denominator"] == 4 + 1 + 30
    assert province["percent_protected_of"] == "mixed"
    # One PC protected and reporting (La Ngà's pc-03 is protected but silent: unknown).
    assert province["pcs_protected"] == 1
    assert province["percent_protected"] == round(100 * 1 / 35, 2)
    la_nga = api.get("/api/v1/communes/la-nga")[1]["antimalware"]
    assert (la_nga["denominator"], la_nga["denominator_of"]) == (4, "expected")
    phu_hoa = api.get("/api/v1/communes/phu-hoa")[1]["antimalware"]
    assert (phu_hoa["denominator"], phu_hoa["denominator_of"]) == (1, "known")


def test_the_audit_has_its_iso_times_too(api: Served) -> None:
    """Not only the figures: the audit (and the enrollment tokens and rollouts, which
    share its answer class) give each time its ISO twin."""
    _, [alert] = api.get("/api/v1/alerts")
    status, _ = api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", TOKEN, {"comment": "VNPT"})
    assert status == 200
    status, entries = api.get("/api/v1/audit")
    assert status == 200 and entries, entries
    entry = entries[0]
    assert dt.datetime.fromisoformat(entry["at_iso"]).timestamp() == int(entry["at"])
    assert entry["at_iso"].endswith("+07:00")
