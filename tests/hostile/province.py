"""A province under attack, for real: Mosquitto, VictoriaMetrics and `commune-collector run`
as processes, a hostile agent and a good one publishing through the broker.

Every hostile case ends the same way: the good agent's next envelope, published after the
bad message, is committed within seconds, the API and the console answer 200, and
``/metrics`` counts the rejection by reason.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.wire import Envelope, Sample, encode
from tests import factories
from tests.servers import CollectorProcess, Mosquitto, VictoriaMetrics, wait_for

TECH_TOKEN = "technician-token-hostile-0123"
ROOT = "commune"
PROVINCE, COMMUNE = "dong-nai", "la-nga"
GOOD, BAD = "good-pc", "bad-pc"


def topic(agent: str, kind: str = "data", commune: str = COMMUNE) -> str:
    return f"{ROOT}/{PROVINCE}/{commune}/{agent}/{kind}"


def link(ts: float, up: bool = True, **fields: Any) -> Sample:
    return factories.link(ts, up, target="10.75.0.1", method="icmp", **({"rtt_ms": 4.5} | fields))


def envelope(agent: str, seq: int, samples: list[Sample], commune: str = COMMUNE) -> Envelope:
    """Stamped now: the collector refuses what is far in the past or future."""
    return factories.envelope(
        seq, *samples, agent=agent, province=PROVINCE, commune=commune, ts=time.time()
    )


def as_json(message: Envelope) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode(message))
    return decoded


@dataclass
class Http:
    """Plain HTTP to the collector, headers as the test says (Host, X-Forwarded-For)."""

    port: int
    source: str = "127.0.0.1"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=20, source_address=(self.source, 0)
        )
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def get(self, path: str, token: str | None = None, **headers: str) -> tuple[int, Any]:
        sent = dict(headers)
        if token:
            sent["Authorization"] = f"Bearer {token}"
        status, answered, body = self.request("GET", path, headers=sent)
        if "json" in answered.get("content-type", "").lower():
            return status, json.loads(body)
        return status, body.decode(errors="replace")

    def login(self, token: str) -> str:
        """The session cookie the console gives for a token."""
        status, headers, _ = self.request(
            "POST",
            "/login",
            body=urllib.parse.urlencode({"token": token}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 303, status
        match = re.search(r"commune_session=([^;]+)", headers.get("set-cookie", ""))
        assert match, headers
        return match.group(1)

    def page(self, path: str, cookie: str) -> tuple[int, str]:
        status, _, body = self.request("GET", path, headers={"Cookie": f"commune_session={cookie}"})
        return status, body.decode(errors="replace")


@dataclass
class Province:
    broker: Mosquitto
    vm: VictoriaMetrics
    collector: CollectorProcess
    publisher: mqtt.Client
    cookie: str = ""
    good_seq: int = 0
    good_sent: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def http(self) -> Http:
        return Http(self.collector.api_port)

    def publish(self, name: str, payload: bytes, qos: int = 1) -> None:
        info = self.publisher.publish(name, payload, qos=qos)
        if qos:
            info.wait_for_publish(10)
            assert info.is_published(), f"the broker did not take {name}"

    def metric(self, name: str, **labels: str) -> float:
        status, text = self.http.get("/metrics", token=TECH_TOKEN)
        assert status == 200, text
        wanted = "".join(f'{k}="{v}"' for k, v in labels.items())
        total = 0.0
        for line in str(text).splitlines():
            if line.startswith(name) and (not labels or wanted in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def good_lands(self, within_s: float = 10.0) -> int:
        """The good agent publishes one more envelope; it is committed within seconds."""
        with self._lock:
            self.good_seq += 1
            seq = self.good_seq
        self.publish(topic(GOOD), encode(envelope(GOOD, seq, [link(time.time())])))
        self.good_sent.append(seq)
        key = f"{PROVINCE}/{COMMUNE}/{GOOD}"
        try:
            wait_for(
                lambda: (
                    (self.http.get(f"/api/v1/agents/{key}", token=TECH_TOKEN)[1] or {}).get(
                        "last_seq"
                    )
                    == seq
                ),
                within_s,
                f"the good agent's envelope {seq} was not committed within {within_s} s",
            )
        except AssertionError as exc:
            # What each part was doing, for a failure that does not come again on demand.
            status, health = self.http.get("/healthz")
            raise AssertionError(
                f"{exc}\n/healthz {status}: {health}\n"
                f"collector log: {self.collector.log[-3000:]}\n"
                f"broker log: {self.broker.log[-2000:]}"
            ) from None
        return seq

    def views_answer(self) -> None:
        """Every view the IOC and the technicians read answers 200."""
        for path in (
            "/api/v1/province",
            "/api/v1/communes",
            f"/api/v1/communes/{COMMUNE}",
            "/api/v1/agents",
            "/api/v1/alerts",
            f"/api/v1/availability?commune={COMMUNE}",
            "/metrics",
            "/healthz",
        ):
            status, body = self.http.get(path, token=TECH_TOKEN)
            assert status == 200, (path, status, str(body)[:300])
        pages = ("/", f"/communes/{COMMUNE}", "/alerts", f"/agents/{PROVINCE}/{COMMUNE}/{GOOD}")
        for path in pages:
            status, body = self.http.page(path, self.cookie)
            assert status == 200, (path, status, body[:300])


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hostile-publisher")
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10)
    return client


def start_province(
    workdir: Path, limits: str = "", sections: str = "", broker_options: str = ""
) -> Iterator[Province]:
    broker = Mosquitto(workdir / "broker", extra=f"allow_anonymous true\n{broker_options}").start()
    vm = VictoriaMetrics(workdir / "vm").start()
    secret = workdir / "console-secret"
    secret.write_text("s" * 48 + "\n")
    digest = hashlib.sha256(TECH_TOKEN.encode()).hexdigest()
    collector = CollectorProcess(
        workdir / "collector",
        broker.port,
        sink_url=vm.url,
        extra=limits,
        sections=(
            f'[[api.tokens]]\nname = "tech"\nrole = "technician"\nsha256 = "{digest}"\n'
            f'[console]\nsecret_file = "{secret}"\n' + sections
        ),
    ).start()
    client = publisher(broker.port)
    province = Province(broker, vm, collector, client)
    try:
        province.good_lands(20)
        province.cookie = province.http.login(TECH_TOKEN)
        yield province
    finally:
        client.loop_stop()
        client.disconnect()
        collector.stop()
        vm.stop()
        broker.stop()
