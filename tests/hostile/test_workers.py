"""What the collector does when a message breaks something inside it, or a worker dies:
the message is rejected alone and acknowledged (never redelivered for ever), and a dead
worker is seen (/healthz 503 naming it) and ends the process with exit status 1, for the
service manager to restart it. Through a real Mosquitto, in process, where a fault can be
injected as a bug of ours would be."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from agent.wire import Envelope
from collector.app import Collector
from collector.config import parse_collector_config
from collector.ingest.ingestor import Ingestor
from collector.state.store import StateStore
from tests.servers import Mosquitto, free_port
from tests.test_ingest import TOPIC, envelope, publish_all, publisher, source, wait


class Poisoned:
    """An observer failing on one agent's envelopes: a bug of ours, triggered by data."""

    def __call__(self, db: sqlite3.Connection, envelopes: Sequence[Envelope], _: float) -> None:
        if any(e.agent == "poison" for e in envelopes):
            raise KeyError("a bug of ours")


def test_a_message_that_breaks_the_apply_is_rejected_alone_and_not_redelivered(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    store.observers.append(Poisoned())
    ingestor = Ingestor(store, "commune")
    collector = source(mosquitto.port, ingestor)
    agent = publisher(mosquitto.port)
    items = [(f"{TOPIC}/data", envelope(seq)) for seq in range(5)]
    items.insert(2, ("commune/dong-nai/la-nga/poison/data", envelope(1, agent="poison")))
    try:
        publish_all(agent, items)
        wait(lambda: ingestor.stats.acked == 6)
        assert ingestor.stats.rejected == {"apply_failed": 1}
        assert ingestor.stats.applied_envelopes == 5
        assert [a.agent for a in store.agents()] == ["pc-01"]
        assert store.agents()[0].last_seq == 4
    finally:
        collector.stop()
    # Acknowledged: a new session of the same collector gets nothing again.
    again = Ingestor(store, "commune")
    second = source(mosquitto.port, again)
    try:
        publish_all(agent, [(f"{TOPIC}/data", envelope(5))])
        wait(lambda: again.stats.acked == 1)
        assert again.stats.received == 1
    finally:
        agent.loop_stop()
        second.stop()
        store.close()


def collector_config(tmp_path: Path, port: int) -> Collector:
    config = parse_collector_config(
        {
            "mqtt": {"url": f"mqtt://127.0.0.1:{port}"},
            "store": {"path": str(tmp_path / "state.sqlite")},
            "api": {"listen": f"127.0.0.1:{free_port()}", "open_on_loopback": True},
            "collector": {"client_id": "collector-workers"},
        }
    )
    return Collector(config)


class Dead(BaseException):
    """What no handler of ours catches: the ingest worker ends."""


# The worker's death is reported by Python's thread hook too, as it should be in production.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_ingest_worker_is_seen_and_ends_the_collector(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    collector = collector_config(tmp_path, mosquitto.port)

    def die(_: object) -> None:
        raise Dead()

    collector.ingestor.process = die  # type: ignore[method-assign,assignment]
    collector.start()
    try:
        wait(collector.source.connected.is_set)
        ok, detail = collector.healthz()
        assert ok and detail["parts"]["ingest"] == "ok"
        agent = publisher(mosquitto.port)
        publish_all(agent, [(f"{TOPIC}/data", envelope(1))])
        agent.loop_stop()
        wait(lambda: "ingest" in collector.dead_workers())
        ok, detail = collector.healthz()
        assert not ok and detail["parts"]["ingest"] == "dead"
        # The supervising loop ends at once with 1: `run` then exits with that status.
        assert collector.supervise(threading.Event(), every_s=0.2) == 1
    finally:
        collector.stop()


def test_a_store_that_cannot_commit_makes_healthz_say_so(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = collector_config(tmp_path, mosquitto.port)

    def full(*_: object, **__: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(collector.store, "apply", full)
    stop = threading.Event()
    runner = threading.Thread(target=collector.run, args=(stop, 0.2))
    runner.start()
    try:
        wait(collector.source.connected.is_set)
        agent = publisher(mosquitto.port)
        publish_all(agent, [(f"{TOPIC}/data", envelope(1))])
        agent.loop_stop()
        wait(lambda: bool(collector.source.store_error))
        ok, detail = collector.healthz()
        assert not ok and detail["parts"]["ingest"] == "store_failing"
        assert "disk" not in str(detail)  # the part and its state; the error is in the log
        monkeypatch.undo()  # the disk has room again: the held batch commits
        wait(lambda: collector.ingestor.stats.applied_envelopes == 1)
        wait(lambda: collector.healthz()[0])
    finally:
        stop.set()
        runner.join(15)
