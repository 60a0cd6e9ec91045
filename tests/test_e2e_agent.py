"""The agent as a real process against a real Mosquitto: birth, data, outages, kill -9.

Every envelope must arrive once or as an exact repeat, in order, with the time
it was collected — whatever happens to the broker or the agent in between.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

from agent import wire
from agent.wire import Envelope, Status
from tests.servers import AgentProcess, Mosquitto, Received, SnmpSim, Subscriber

PLACE = 'province = "dong-nai"\ncommune = "la-nga"\nid = "pc-01"\n'


def agent_config(
    tmp_path: Path,
    port: int,
    interval: str = "0.5s",
    checks: str = "",
    mqtt_extra: str = "",
    url: str = "",
) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\n{PLACE}interval = "{interval}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nurl = "{url or f"mqtt://127.0.0.1:{port}"}"\n'
        'keepalive = "5s"\nreconnect_max = "1s"\n'
        f"{mqtt_extra}\n"
        f"{checks or '[[checks.host]]'}\n"
    )
    return config


def envelopes(messages: list[Received]) -> list[Envelope]:
    identity = wire.TopicIdentity("dong-nai", "la-nga", "pc-01", "data")
    return [
        wire.decode_envelope(m.payload, identity) for m in messages if m.topic.endswith("/data")
    ]


def statuses(messages: list[Received]) -> list[Status]:
    return [wire.decode_status(m.payload) for m in messages if m.topic.endswith("/status")]


def assert_complete_and_ordered(messages: list[Received]) -> list[Envelope]:
    """Every seq from 0 to the last, in order; a repeat must be byte-identical."""
    first_payload: dict[int, bytes] = {}
    order: list[int] = []
    for message in messages:
        if not message.topic.endswith("/data"):
            continue
        seq = envelopes([message])[0].seq
        if seq in first_payload:
            assert first_payload[seq] == message.payload, f"seq {seq} repeated with other content"
            continue
        first_payload[seq] = message.payload
        order.append(seq)
    assert order == sorted(order), "envelopes arrived out of order"
    missing = sorted(set(range(order[0], order[-1] + 1)) - set(order))
    assert order == list(range(order[0], order[0] + len(order))), f"missing: {missing}"
    return envelopes([m for m in messages if m.topic.endswith("/data")])


def outbox_rows(tmp_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "outbox.sqlite")) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_birth_and_data_for_every_configured_check(
    tmp_path: Path, mosquitto: Mosquitto, snmpsim: SnmpSim
) -> None:
    checks = f"""
[[checks.host]]
[[checks.antivirus]]
source = "clamav"
clamd_socket = "{tmp_path / "no-clamd.sock"}"
clamav_db_dir = "{tmp_path}"
[[checks.link]]
name = "lan-broker"
network = "lan"
method = "tcp"
target = "127.0.0.1"
port = {mosquitto.port}
[[checks.system]]
name = "broker-as-a-system"
host = "127.0.0.1"
port = {mosquitto.port}
network = "lan"
kind = "other"
[[checks.snmp]]
name = "router"
host = "127.0.0.1"
port = {snmpsim.port}
community = "huawei-s5720"
[[checks.polycom]]
name = "polycom"
host = "127.0.0.1"
port = {snmpsim.port}
community = "polycom-idle"
"""
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    agent = AgentProcess(
        agent_config(tmp_path, mosquitto.port, interval="2s", checks=checks)
    ).start()
    try:
        wanted = {"host", "antivirus", "lan-broker", "broker-as-a-system", "router", "polycom",
                  "agent"}  # fmt: skip
        messages = subscriber.wait_for(
            lambda ms: wanted <= {s.name for e in envelopes(ms) for s in e.samples}, timeout=30
        )
        births = statuses(messages)
        assert births[0].state == "online"
        assert births[0].version
        assert births[0].interval == 2.0  # lets the collector spot a silent agent
        assert {c.split(":")[1].split(" ")[0] for c in births[0].checks} == wanted
        by_name = {s.name: s for e in envelopes(messages) for s in e.samples if not s.item}
        assert by_name["lan-broker"].fields["up"] == 1
        assert by_name["broker-as-a-system"].fields["up"] is True
        assert by_name["router"].fields["sys_name"] == "DUMSYS-05"
        assert by_name["polycom"].fields["ready"] is True
        assert by_name["antivirus"].fields["verdict"] == "none"
        assert by_name["agent"].fields["connected"] is True
        assert agent.stop() == 0
        final = subscriber.wait_for(
            lambda ms: statuses(ms)[-1].state == "offline", suffix="/status"
        )
        assert statuses(final)[-1].reason == "stopped"
    finally:
        if agent.process and agent.process.poll() is None:
            agent.kill()
        subscriber.stop()
    assert "Traceback" not in agent.log


def test_broker_outage_loses_nothing_and_keeps_collection_times(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    subscriber = Subscriber(mosquitto.port, "commune/+/+/+/data").start()
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port, interval="0.3s")).start()
    try:
        subscriber.wait_for(lambda ms: len(ms) >= 5)
        mosquitto.stop()
        outage_started = time.time()
        deadline = time.monotonic() + 20
        while outbox_rows(tmp_path) < 15 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert outbox_rows(tmp_path) >= 15, "the outbox did not grow during the outage"
        outage_ended = time.time()
        mosquitto.start()
        subscriber.wait_for(lambda ms: outbox_rows(tmp_path) <= 2 and len(ms) > 20, timeout=30)
        time.sleep(1)
        received = assert_complete_and_ordered(subscriber.snapshot())
        during = [s.ts for e in received for s in e.samples if outage_started < s.ts < outage_ended]
        assert len(during) >= 15, "samples collected during the outage keep their own timestamps"
        assert all(e.ts >= s.ts for e in received for s in e.samples)
    finally:
        agent.stop()
        subscriber.stop()
    assert "disconnected from broker" in agent.log


def test_kill_9_sends_the_last_will_and_a_restart_resumes_the_drain(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = agent_config(tmp_path, mosquitto.port, interval="0.3s")
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    agent = AgentProcess(config).start()
    try:
        subscriber.wait_for(lambda ms: len(envelopes(ms)) >= 3)
        agent.kill()
        messages = subscriber.wait_for(
            lambda ms: statuses(ms)[-1].state == "offline", suffix="/status"
        )
        will = statuses(messages)[-1]
        assert (will.reason, will.ts) == ("connection lost", 0.0)

        # A second life with the broker down, killed with a full outbox...
        agent = AgentProcess(config).start()
        subscriber.wait_for(lambda ms: statuses(ms)[-1].state == "online", suffix="/status")
        mosquitto.stop()
        deadline = time.monotonic() + 20
        while outbox_rows(tmp_path) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        agent.kill()
        stranded = outbox_rows(tmp_path)
        assert stranded >= 10
        # ...and a third that drains what the second left.
        mosquitto.start()
        agent = AgentProcess(config).start()
        subscriber.wait_for(
            lambda ms: outbox_rows(tmp_path) <= 2 and len(envelopes(ms)) > stranded + 3, timeout=30
        )
        time.sleep(1)
        assert_complete_and_ordered(subscriber.snapshot("/data"))
    finally:
        if agent.process and agent.process.poll() is None:
            agent.stop(signal.SIGTERM)
        subscriber.stop()


class UdpResponder:
    """A UDP service on the SNMP path: junk answers, or a real device's answers held back."""

    def __init__(self, upstream: int | None = None, delay: float = 0.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.upstream = upstream
        self.delay = delay
        self.requests = 0
        self._relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        peer: tuple[str, int] | None = None
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock, self._relay], [], [], 0.1)
            if self.sock in ready:
                data, peer = self.sock.recvfrom(65535)
                self.requests += 1
                if self.upstream is None:
                    self.sock.sendto(b"\x30\x82\xff\xffnot snmp at all", peer)
                else:
                    self._relay.sendto(data, ("127.0.0.1", self.upstream))
            if self._relay in ready and peer is not None:
                answer = self._relay.recv(65535)
                timer = threading.Timer(self.delay, self.sock.sendto, (answer, peer))
                self._timers.append(timer)
                timer.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for timer in self._timers:  # answers still held back: never sent
            timer.cancel()
            timer.join()
        self.sock.close()
        self._relay.close()


def test_a_garbage_device_and_a_slow_one_do_not_hold_back_the_good_one_or_lose_data(
    tmp_path: Path, mosquitto: Mosquitto, snmpsim: SnmpSim
) -> None:
    junk = UdpResponder()
    slow = UdpResponder(upstream=snmpsim.port, delay=4.0)  # beyond its 2 s timeout
    checks = "\n".join(
        f'[[checks.snmp]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
        f'community = "huawei-s5720"\ninterval = "1s"\ntimeout = "2s"\nretries = 0\n'
        for name, port in (("good", snmpsim.port), ("junk", junk.port), ("slow", slow.port))
    )
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    agent = AgentProcess(agent_config(tmp_path, mosquitto.port, "1s", checks)).start()
    try:
        messages = subscriber.wait_for(
            lambda ms: (
                sum(1 for e in envelopes(ms) for s in e.samples if s.name == "good" and not s.item)
                >= 8
            ),
            timeout=40,
        )
        assert agent.process is not None and agent.process.poll() is None, agent.log
    finally:
        agent.stop()
        subscriber.stop()
        junk.close()
        slow.close()
    received = assert_complete_and_ordered(messages)  # nothing lost, nothing out of order
    main = [s for e in received for s in e.samples if not s.item]
    good = [s.ts for s in main if s.name == "good" and s.outcome == "ok"]
    assert len(good) >= 8 and max(b - a for a, b in itertools.pairwise(good)) < 2.5, good
    assert {s.outcome for s in main if s.name == "junk"} == {"bad_response"}
    assert {s.outcome for s in main if s.name == "slow"} == {"timeout"}
    assert junk.requests >= 3 and slow.requests >= 2
    assert sum(1 for s in main if s.name == "slow") >= 2
    # The checks themselves kept running: a device's failures are samples, not errors.
    check_stats = {s.target: s.fields for e in received for s in e.samples if s.item == "check"}
    for name in ("good", "junk", "slow"):
        runs = check_stats[name]["runs"]
        assert check_stats[name]["errors"] == 0 and isinstance(runs, int) and runs >= 2
    assert "Traceback" not in agent.log
