"""Valid-but-extreme envelopes (hypothesis) through the whole path, not only the decoder:
decode -> store and alert rules -> the API and the console -> the sink into a real
VictoriaMetrics -> notifications to a real HTTP receiver.

Whatever the contract admits (numbers at its bounds, the largest floats, 1,024-character
texts of any characters, markup, quotes and backslashes in names and targets, reserved tag
names) must be applied or refused by name; every view must answer 200 with strict JSON;
every admitted point must reach the time-series server under its own tags; every alert's
message must go out.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent import wire
from collector.alerts.engine import AlertEngine
from collector.alerts.notify import Notifier, Route
from collector.alerts.rules import default_rules
from collector.config import ApiSection, ConsoleSection
from collector.ingest.ingestor import Ingestor, Message
from collector.outputs.sink import Sink, SinkSettings
from collector.outputs.spool import Spool
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.web.factory import create_app
from tests.hostile.province import Http
from tests.servers import AppServer, VictoriaMetrics

NUMBERS = (
    st.integers(min_value=-(2**53), max_value=2**53)
    | st.sampled_from([2**53, -(2**53), 0, -1, 2**31, 2**32 + 1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([sys.float_info.max, -sys.float_info.max, 5e-324, -0.0, 1e-300])
)
TEXT = st.text(max_size=60) | st.sampled_from(
    [
        "x" * wire.MAX_TEXT,
        '<a href="http://evil.example">C:</a><b>',
        "C:\\",
        "a,b=c d\\",
        'quote " and \\" and \n newline \r\t tab',
        "Xã La Ngà — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "{commune} {0} %s",
        "\u00b2",  # a digit to str.isdigit(), not to int()
        "Gi0/\u0663/1\u00b22",
        "1" * wire.MAX_TEXT,
    ]
)
VALUES = st.booleans() | NUMBERS | TEXT
KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True) | st.sampled_from(
    ["used_percent", "up", "rtt_ms", "loss_percent", "verdict", "ready", "state"]
)
TAG_KEYS = KEYS | st.sampled_from([*sorted(wire.RESERVED_TAGS), "network", "fstype"])
KINDS = st.sampled_from(
    [
        ("link", ""),
        ("host", "disk"),
        ("host", ""),
        ("antivirus", ""),
        ("antivirus", "product"),
        ("polycom", ""),
        ("snmp", "interface"),
        ("agent", ""),
        ("custom_check", "x_1"),
    ]
)


@st.composite
def samples(draw: st.DrawFn) -> wire.Sample:
    check, item = draw(KINDS)
    fields = draw(st.dictionaries(KEYS, VALUES, max_size=8))
    if check == "host" and item == "disk":  # often over the disk_full rule's 90 %
        fields["used_percent"] = draw(NUMBERS | st.just(97.5))
    return wire.Sample(
        ts=time.time() - 60 - draw(st.floats(min_value=0, max_value=3600)),
        check=check,
        name=draw(TEXT),
        outcome=draw(st.sampled_from(wire.OUTCOMES)),
        item=item,
        target=draw(TEXT),
        fields=fields,
        tags=draw(st.dictionaries(TAG_KEYS, TEXT, max_size=5)),
        error=draw(TEXT),
    )


def unicode_digits(target: str) -> wire.Sample:
    """A sample whose names hold characters str.isdigit() accepts and int() refuses."""
    return wire.Sample(
        ts=time.time() - 120, check="link", name="tslcd", outcome="ok", target=target
    )


class Receiver:
    """A real HTTP endpoint for apprise's json:// notifications."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"


@dataclass
class WholePath:
    store: StateStore
    ingestor: Ingestor
    engine: AlertEngine
    sink: Sink
    vm: VictoriaMetrics
    http: Http
    notifier: Notifier
    receiver: Receiver
    agents: Iterator[int]


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WholePath]:
    workdir = tmp_path_factory.mktemp("extremes")
    vm = VictoriaMetrics(workdir / "vm").start()
    store = StateStore(workdir / "state.sqlite")
    engine = AlertEngine(default_rules(), late_after=1e9)
    engine.install(store)
    Spool(store).attach()
    ingestor = Ingestor(store, "commune")
    app = create_app(
        HealthModel(store), store, ApiSection(open_on_loopback=True), console=ConsoleSection()
    )
    served = AppServer(app).start()
    receiver = Receiver()
    notifier = Notifier(store, [Route("hook", (receiver.url,))], default_rules(), group_wait=0)
    sink = Sink(Spool(store), SinkSettings(vm.url, "", "o", "b"))
    yield WholePath(
        store,
        ingestor,
        engine,
        sink,
        vm,
        Http(served.port),
        notifier,
        receiver,
        itertools.count(),
    )
    sink.close()
    served.stop()
    receiver.server.shutdown()
    receiver.server.server_close()
    store.close()
    vm.stop()


def stored(value: str) -> str:
    """A tag value as the time-series server must keep it: as sent, but for what line
    protocol cannot carry (lineproto.py): line breaks become spaces, backslashes before a
    separator or at the end (``C:\\``) go."""
    spaced = value.replace("\n", " ").replace("\r", " ")
    return re.sub(r"\\+(?=[,= ]|$)", "", spaced)


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(samples(), min_size=1, max_size=12))
@example(drawn=[unicode_digits(target="\u00b2"), unicode_digits(target="1\u00b22/\u0663")])
def test_what_the_contract_admits_goes_all_the_way_through(
    whole: WholePath, drawn: list[wire.Sample]
) -> None:
    agent = f"pc-{next(whole.agents)}"
    envelope = wire.Envelope(
        v=1,
        agent=agent,
        province="dong-nai",
        commune="la-nga",
        seq=1,
        ts=time.time(),
        samples=drawn,
    )
    payload = wire.encode(envelope)
    if len(payload) > wire.MAX_ENVELOPE_BYTES:
        return
    acked: list[bool] = []
    stats = whole.ingestor.stats
    before = (dict(stats.rejected), stats.samples_refused["reserved_name"])
    message = Message(
        f"commune/dong-nai/la-nga/{agent}/data", payload, time.time(), lambda: acked.append(True)
    )
    whole.ingestor.process([message])
    admitted = [s for s in drawn if not wire.reserved_names(s)]
    assert acked == [True]
    assert dict(stats.rejected) == before[0], "a valid envelope was rejected"
    assert stats.samples_refused["reserved_name"] - before[1] == len(drawn) - len(admitted)
    # The views: 200, strict JSON.
    key = f"dong-nai/la-nga/{agent}"
    for path in (
        "/api/v1/province",
        "/api/v1/communes",
        "/api/v1/communes/la-nga",
        f"/api/v1/agents/{urllib.parse.quote(key)}",
        "/api/v1/alerts",
        "/api/v1/availability?commune=la-nga",
    ):
        status, _, body = whole.http.request("GET", path)
        assert status == 200, (path, body[:300])
        strict_json(body.decode())
    for path in ("/", "/communes/la-nga", "/alerts", f"/agents/{key}"):
        status, _, body = whole.http.request("GET", path)
        assert status == 200, (path, body[:300])
        assert b'href="http://evil.example"' not in body  # the console escapes agents' text
    # The sink: everything admitted reaches the time-series server, under its own tags.
    rejected = whole.sink.stats.rejected_rows
    while Spool(whole.store).stats().rows:
        assert whole.sink.step(0.0) == 0.0, whole.sink.last_error
    assert whole.sink.stats.rejected_rows == rejected
    written = whole.vm.export(f'{{__name__=~".*_success",agent="{agent}"}}')
    found = {
        (s["metric"]["__name__"], s["metric"].get("name", ""), s["metric"].get("target", ""))
        for s in written
    }  # type: ignore[index,union-attr]
    for sample in admitted:
        measurement = f"{sample.check}_{sample.item}" if sample.item else sample.check
        assert (f"{measurement}_success", stored(sample.name), stored(sample.target)) in found
        assert all(s["metric"]["province"] == "dong-nai" for s in written)  # type: ignore[index]
    # Notifications: whatever fired goes out, in both languages, to a real receiver.
    failures = whole.notifier.failures
    whole.notifier.run_once()
    assert whole.notifier.failures == failures


def test_an_envelope_of_the_most_samples_the_contract_allows_goes_all_the_way(
    whole: WholePath,
) -> None:
    agent = f"pc-{next(whole.agents)}"
    samples = [
        wire.Sample(
            ts=time.time() - 120,
            check="snmp",
            name="sw",
            outcome="ok",
            item="interface",
            target=f"g{n}",
            fields={"in_bps": float(n)},
        )
        for n in range(wire.MAX_SAMPLES)
    ]
    envelope = wire.Envelope(
        v=1, agent=agent, province="dong-nai", commune="la-nga", seq=1, ts=time.time(),
        samples=samples,
    )  # fmt: skip
    payload = wire.encode(envelope)
    assert len(payload) <= wire.MAX_ENVELOPE_BYTES
    acked: list[bool] = []
    topic = f"commune/dong-nai/la-nga/{agent}/data"
    whole.ingestor.process([Message(topic, payload, time.time(), lambda: acked.append(True))])
    assert acked == [True]
    key = f"dong-nai/la-nga/{agent}"
    status, _, body = whole.http.request("GET", f"/api/v1/agents/{urllib.parse.quote(key)}")
    assert status == 200 and len(strict_json(body.decode())["samples"]) == wire.MAX_SAMPLES
    assert whole.http.request("GET", "/communes/la-nga")[0] == 200
    while Spool(whole.store).stats().rows:
        assert whole.sink.step(0.0) == 0.0
    series = whole.vm.export(f'{{__name__="snmp_interface_in_bps",agent="{agent}"}}')
    assert len(series) == wire.MAX_SAMPLES
