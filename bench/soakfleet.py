"""A commune of the fleet simulator's PCs for the soak, each through the agent's own outbox
and publisher: its envelopes numbered and kept by an ``Outbox`` until the broker's PUBACK,
sent by a ``Publisher`` on its own enrolled account, exactly as ``commune-agent run`` does.
Only the checks are played (fleet/scenario.py), not run.

    python -m bench.soakfleet SPEC.json

SPEC names the agents (bench/soak.py writes it). SIGTERM: no new envelopes; the outboxes
drained (within a minute), each publisher stopped as the agent stops it.
"""

from __future__ import annotations

import heapq
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent import __version__
from agent.configtypes import BrokerSection, Duration
from agent.outbox import Outbox, OutboxError
from agent.publisher import BrokerSettings, Publisher, StatusMessages
from agent.stats import AgentStats
from agent.wire import SCHEMA_VERSION, Envelope, Sample, Status, encode
from fleet.scenario import Fleet, SimAgent

log = logging.getLogger("soakfleet")


@dataclass
class Played:
    sim: SimAgent
    outbox: Outbox
    publisher: Publisher
    data_topic: str


def status(entry: dict[str, str], state: str, reason: str = "", ts: float | None = None) -> bytes:
    return encode(Status(
        v=SCHEMA_VERSION, state="online" if state == "online" else "offline",
        agent=entry["agent"], province=entry["province"], commune=entry["commune"],
        ts=time.time() if ts is None else ts, version=__version__, reason=reason,
    ))  # fmt: skip


def envelope(entry: dict[str, str], samples: list[Sample], seq: int) -> bytes:
    return encode(Envelope(
        v=SCHEMA_VERSION, agent=entry["agent"], province=entry["province"],
        commune=entry["commune"], seq=seq, ts=time.time(), samples=samples,
    ))  # fmt: skip


def start_agent(entry: dict[str, str], sim: SimAgent, spec: dict[str, object]) -> Played:
    outbox = Outbox(
        Path(entry["state_dir"]) / "outbox.sqlite",
        float(spec["max_age"]),  # type: ignore[arg-type]
        int(spec["max_size"]),  # type: ignore[call-overload]
    )
    root = f"commune/{entry['province']}/{entry['commune']}/{entry['agent']}"
    broker = BrokerSection(
        url=entry["broker_url"], username=entry["username"],
        password_file=entry["password_file"], ca_file=str(spec["ca_file"]),
        keepalive=Duration(5),
    )  # fmt: skip
    settings = BrokerSettings(broker, f"commune-agent/{root[8:]}", reconnect_max=2.0)
    messages = StatusMessages(
        topic=f"{root}/status",
        online=partial(status, entry, "online"),
        offline=partial(status, entry, "offline", "stopped"),
        will=status(entry, "offline", "connection lost", 0.0),
    )
    # Enrolled accounts: the collector confirms what it committed (agent/outbox.py).
    publisher = Publisher(settings, outbox, messages, AgentStats(), receipt_topic=f"{root}/receipt")
    publisher.start()
    return Played(sim, outbox, publisher, f"{root}/data")


def main(spec_path: str) -> int:
    logging.basicConfig(level="WARNING", format="%(asctime)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    entries: list[dict[str, str]] = spec["agents"]
    interval = float(spec["interval"])
    fleet = Fleet(
        entries[0]["province"], [entries[0]["commune"]], len(entries),
        seed=int(spec["seed"]), outages_per_day=0.0, interval=interval,
    )  # fmt: skip
    sims = [a for a in fleet.agents if not a.poller]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    played = [start_agent(entry, sim, spec) for entry, sim in zip(entries, sims, strict=True)]
    started = time.monotonic()
    due = [(started + interval * i / len(played), i) for i in range(len(played))]
    heapq.heapify(due)
    while not stop.is_set():
        when, index = heapq.heappop(due)
        if stop.wait(max(0.0, when - time.monotonic())):
            break
        agent, entry = played[index], entries[index]
        for group in fleet.pc_samples(agent.sim, time.time()):
            try:
                agent.outbox.put(agent.data_topic, partial(envelope, entry, group))
            except OutboxError as exc:  # counted in the outbox; the agent goes on
                log.warning("%s: %s", entry["agent"], exc)
        agent.publisher.notify()
        heapq.heappush(due, (when + interval, index))
    drain(played, float(spec.get("drain_s", 60)))
    return 0


def drain(played: list[Played], timeout: float) -> None:
    """Until every outbox is empty (or ``timeout``), then every publisher stopped at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(p.outbox.stats().rows for p in played):
        time.sleep(0.2)
    stoppers = [threading.Thread(target=p.publisher.stop) for p in played]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()
    for agent in played:
        agent.outbox.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
