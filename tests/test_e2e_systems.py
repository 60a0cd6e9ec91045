"""End to end: real loopback servers stand for the province's shared systems (healthy,
slow, a certificate about to expire, a login page answering 200, down); four communes'
pollers probe them with the real agent (their checks expanded from the catalogue as the
profiles do, a TCP link check for the line); their envelopes go through the collector's
ingest into the store and the alert engine with the built-in rules. One commune's line
is cut (its probes reach nothing), one commune's own firewall blocks one system.

The probes run once, for real; their envelopes are then played again minute by minute
(the same samples, later times) so that the rules' ``for`` delays pass without waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.config import load_config
from agent.runner import run_once
from agent.wire import Envelope, encode
from collector.alerts.engine import AlertEngine
from collector.alerts.records import list_alerts
from collector.alerts.rules import default_rules
from collector.ingest.ingestor import Ingestor, Message
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from collector.state.systemhealth import SystemsModel
from collector.state.systems import parse_catalogue
from tests.factories import status
from tests.servers import free_port
from tests.test_system_check import LOGIN, PAGE, RawServer, answer, pki, serve, tls  # noqa: F401
from tests.tls import Pki

COMMUNES = ["la-nga", "phu-ly", "tan-phu", "xuan-bac"]
INVENTORY = Inventory(
    province="dong-nai", communes=[Commune(slug=c, name=f"Xã {c}") for c in COMMUNES]
)
#: phu-ly's line is cut: nothing it probes answers. tan-phu's firewall blocks "healthy".
LINE_CUT = "phu-ly"
BLOCKED = ("tan-phu", "healthy")


def slowly(body: str, delay: float) -> Any:
    def respond(conn: Any, stop: Any) -> None:
        stop.wait(delay)
        answer(body)(conn, stop)

    return respond


@pytest.fixture
def systems(serve: Callable[..., RawServer], pki: Pki) -> Iterator[dict[str, str]]:  # noqa: F811
    """Each system's URL (down: a port nobody listens on)."""
    yield {
        "healthy": serve(answer(PAGE), tls(pki, days=200)).url(),
        "slow": serve(slowly(PAGE, 0.7)).url(),
        "expiring": serve(answer(PAGE), tls(pki, days=6)).url(),
        "login": serve(answer(LOGIN)).url(),
        "down": f"http://127.0.0.1:{free_port()}/",
    }


def catalogue_of(urls: dict[str, str]) -> Any:
    return parse_catalogue(
        {
            "province": "dong-nai",
            "systems": [
                {"id": system_id, "name": f"Hệ thống {system_id}", "kind": "other",
                 "network": "tslcd", "url": url, "expect_text": "Dịch vụ công",
                 # Only the slow one has a tight bound: the others, on a busy machine,
                 # may take a while and still not be "slow".
                 "slow_ms": 400 if system_id == "slow" else 2500, "owner": "Sở KH&CN"}
                for system_id, url in urls.items()
            ],
        },
        "catalogue",
        INVENTORY,
    )  # fmt: skip


def agent_config(tmp_path: Path, commune: str, catalogue: Any, line_port: int) -> Path:
    """The poller of a commune: the catalogue's probes as the profiles expand them, and
    a TCP probe of its line. A cut line: every address it asks is a closed port."""
    nowhere = f"http://127.0.0.1:{free_port()}/"
    checks = []
    for probe in catalogue.probes(commune):
        cut = commune == LINE_CUT or (commune, probe["name"]) == BLOCKED
        checks.append(
            probe | {"verify_tls": False, "timeout": "5s"} | ({"url": nowhere} if cut else {})
        )
    line = {"name": "tslcd", "method": "tcp", "target": "127.0.0.1", "network": "tslcd",
            "port": free_port() if commune == LINE_CUT else line_port, "count": 1}  # fmt: skip
    data = {
        "agent": {"province": "dong-nai", "commune": commune, "id": "poller",
                  "state_dir": str(tmp_path / commune)},
        "checks": {"system": checks, "link": [line]},
    }  # fmt: skip
    path = tmp_path / f"{commune}.toml"
    path.write_bytes(_toml(data))
    return path


def _toml(data: dict[str, Any]) -> bytes:
    """Tables and arrays of tables of strings, numbers and lists (JSON's strings and
    numbers are TOML's)."""
    lines = ["[agent]", *(f"{k} = {json.dumps(v)}" for k, v in data["agent"].items())]
    for kind, entries in data["checks"].items():
        for entry in entries:
            lines += ["", f"[[checks.{kind}]]"]
            lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items() if v is not None]
    return ("\n".join(lines) + "\n").encode()


def test_each_kind_of_trouble_is_one_right_alert(
    tmp_path: Path,
    systems: dict[str, str],
    serve: Callable[..., RawServer],  # noqa: F811
) -> None:
    line_server = serve(answer("ok"))
    catalogue = catalogue_of(systems)
    envelopes: dict[str, list[Envelope]] = {}
    for commune in COMMUNES:
        config = load_config(agent_config(tmp_path, commune, catalogue, line_server.port))
        envelopes[commune] = run_once(config)
    # What the real probes said, before any rule.
    said = {
        (commune, s.name): s.outcome
        for commune, found in envelopes.items()
        for e in found
        for s in e.samples
    }
    assert said[("la-nga", "healthy")] == "ok" and said[("la-nga", "slow")] == "ok"
    assert said[("la-nga", "login")] == "bad_response" and said[("la-nga", "down")] == "down"
    assert said[("la-nga", "expiring")] == "ok" and said[("la-nga", "tslcd")] == "ok"
    assert said[(LINE_CUT, "tslcd")] != "ok" and said[(LINE_CUT, "healthy")] == "down"
    assert said[BLOCKED] == "down"

    now = time.time()
    store = StateStore(tmp_path / "state.sqlite", clock=lambda: now)
    views = SystemsModel(store, [INVENTORY], lambda: {"dong-nai": catalogue}, lambda: now)
    engine = AlertEngine(default_rules(), systems=views, clock=lambda: now)
    engine.install(store)
    ingestor = Ingestor(store, "commune")
    start = max(s.ts for found in envelopes.values() for e in found for s in e.samples)
    try:
        for minute in range(20):
            now = start + 60 * minute
            messages = []
            if not minute:  # each poller's birth: it runs
                messages += [
                    Message(f"commune/dong-nai/{c}/poller/status",
                            encode(status("online", now, agent="poller", commune=c)), now,
                            lambda: None)
                    for c in COMMUNES
                ]  # fmt: skip
            for commune, found in envelopes.items():
                for number, envelope in enumerate(found):
                    moved = _later(envelope, 60 * minute, minute * len(found) + number + 1)
                    topic = f"commune/dong-nai/{commune}/poller/data"
                    messages.append(Message(topic, encode(moved), now, lambda: None))
            ingestor.process(messages)
            engine.tick(store, now)
        assert not ingestor.stats.rejected
        firing = sorted(
            (a.rule, a.commune, a.name)
            for a in list_alerts(store, now, state="firing")
            if a.rule != "agent_offline"
        )
        health = {h.id: h for h in views.systems("dong-nai", windows=False)}
    finally:
        store.close()
    assert firing == [
        ("line_down_tslcd", LINE_CUT, "tslcd"),  # its line: alerted as the line, once
        ("system_certificate_expiring", "", "expiring"),
        ("system_down", "", "down"),
        ("system_down", "", "login"),  # answering 200 with a login page is not up
        ("system_slow", "", "slow"),
        ("system_unreachable_here", BLOCKED[0], BLOCKED[1]),  # a local problem, its own
    ]
    assert health["healthy"].verdict == "local" and health["healthy"].line_down == [LINE_CUT]
    assert health["down"].unreachable == ["la-nga", "tan-phu", "xuan-bac"]
    assert health["expiring"].cert_days is not None and 5 <= health["expiring"].cert_days <= 6


def _later(envelope: Envelope, seconds: float, seq: int) -> Envelope:
    samples = [msgspec.structs.replace(s, ts=s.ts + seconds) for s in envelope.samples]
    return msgspec.structs.replace(envelope, samples=samples, ts=envelope.ts + seconds, seq=seq)
