"""The console's pages over HTTP without a browser: a collector of several provinces
shows one at a time, chosen by the overview's selector; a hostile query changes nothing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.config import ApiSection, ConsoleSection
from collector.state.health import HealthModel
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from tests.factories import envelope, link
from tests.servers import AppServer
from tests.test_health import INVENTORY, build_province

HA_NOI = Inventory(
    province="ha-noi",
    name="Hà Nội",
    communes=[Commune(slug="hoan-kiem", name="Phường Hoàn Kiếm", code="00070")],
)


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    from collector.web.factory import create_app

    store = build_province(tmp_path)
    settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
    app = create_app(HealthModel(store, [INVENTORY, HA_NOI]), store, settings,
                     console=ConsoleSection())  # fmt: skip
    served = AppServer(app).start()
    yield served.url
    served.stop()
    store.close()


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_one_province_at_a_time(base: str) -> None:
    first = get(base + "/")
    assert '<select name="province"' in first and 'data-commune="la-nga"' in first
    assert "hoan-kiem" not in first.split('id="communes"')[1]
    other = get(base + "/?province=ha-noi")
    table = other.split('id="communes"')[1]
    assert 'data-commune="hoan-kiem"' in table and "la-nga" not in table
    assert "00070" in table and 'href="/?province=ha-noi&status=critical' in other


@pytest.mark.parametrize(
    "query",
    [
        {"province": "<script>", "status": "x'\"", "sort": "DROP", "q": "%00"},
        {"q": "ă" * 100},
    ],
)
def test_a_hostile_query_is_bounded_and_escaped(base: str, query: dict[str, str]) -> None:
    page = get(base + "/?" + urllib.parse.urlencode(query))
    assert "<script>" not in page  # not echoed, or escaped
    assert 'data-commune="la-nga"' in page or "0 / 3" in page  # Đồng Nai, searched
    too_long = base + "/?" + urllib.parse.urlencode({"q": "x" * 101})
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(too_long)
    assert refused.value.code == 422
    refused.value.close()


def line_down(store: StateStore, province: str, commune: str) -> None:
    """The commune's line down for three minutes: one firing alert, by the real engine."""
    AlertEngine(default_rules()).install(store)
    now = time.time()
    for minute in range(4):
        ts = now - 240 + 60 * minute
        sample = link(ts, up=False, name="tslcd", target="10.0.0.1")
        store.apply([envelope(minute, sample, ts=ts, province=province, commune=commune)])


def test_two_provinces_communes_of_one_slug_each_have_their_page(tmp_path: Path) -> None:
    """367 slugs of the register are shared across provinces: a national collector has
    Đồng Nai's la-nga and another province's; links and pages keep them apart."""
    from collector.web.factory import create_app

    twin = Inventory(province="lam-dong", name="Lâm Đồng",
                     communes=[Commune(slug="la-nga", name="Xã La Ngà Lâm Đồng")])  # fmt: skip
    store = build_province(tmp_path)
    line_down(store, "lam-dong", "la-nga")
    settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
    app = create_app(HealthModel(store, [INVENTORY, twin]), store, settings,
                     console=ConsoleSection())  # fmt: skip
    served = AppServer(app).start()
    try:
        overview = get(served.url + "/?province=lam-dong")
        assert 'href="/communes/la-nga?province=lam-dong"' in overview
        theirs = get(served.url + "/communes/la-nga?province=lam-dong")
        ours = get(served.url + "/communes/la-nga?province=dong-nai")
        assert "Xã La Ngà Lâm Đồng" in theirs and "Xã La Ngà Lâm Đồng" not in ours
        # The line alert is Lâm Đồng's: on its page, not on Đồng Nai's.
        assert "10.0.0.1" in theirs and "10.0.0.1" not in ours
        alerts = get(served.url + "/alerts")
        assert 'href="/communes/la-nga?province=lam-dong"' in alerts
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(served.url + "/communes/la-nga?province=ha-noi")
        missing.value.close()
        assert missing.value.code == 404
        api = served.url + "/api/v1/alerts?state=firing&commune=la-nga"
        assert {a["province"] for a in json.loads(get(api + "&province=lam-dong"))} == {"lam-dong"}
        assert json.loads(get(api + "&province=dong-nai")) == []
    finally:
        served.stop()
        store.close()
