"""A backlog drained over TLS: the drain thread publishes while paho's network thread reads
the acknowledgements, on one connection (agent/publisher.py)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from agent.outbox import Outbox
from bench.pc_agent import USER, tls_broker
from tests.factories import agent_toml
from tests.servers import AgentProcess, wait_for

#: Enough that the two threads met in one connection dozens of times.
BACKLOG = 20_000


def rows(outbox: Path) -> int:
    with contextlib.closing(sqlite3.connect(outbox)) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


@pytest.mark.servers
def test_a_backlog_drains_over_tls_on_one_connection(tmp_path: Path) -> None:
    """Both threads once wrote the connection: packets cut into each other made the broker
    close it (a dozen times in 20,000 envelopes) and OpenSSL's buffers corrupted the heap
    (the agent died)."""
    broker = tls_broker(tmp_path / "tls")
    try:
        outbox = tmp_path / "state" / "outbox.sqlite"
        Outbox(outbox, 10**9, 10**10).close()
        with contextlib.closing(sqlite3.connect(outbox)) as db, db:  # one transaction
            row = (time.time(), "commune/dong-nai/la-nga/pc-01/data", bytes(range(256)) * 2)
            db.executemany(
                "INSERT INTO outbox (created, topic, payload) VALUES (?, ?, ?)", [row] * BACKLOG
            )
        config = tmp_path / "agent.toml"
        config.write_text(
            agent_toml(extra=f'interval = "1h"\nstate_dir = "{tmp_path / "state"}"\n')
            + f'[mqtt]\nurl = "mqtts://localhost:{broker.tls_port}"\nca_file = "{broker.ca}"\n'
            f'username = "{USER}"\npassword_file = "{broker.password_file}"\n[[checks.host]]\n'
        )
        agent = AgentProcess(config).start()
        try:
            wait_for(lambda: rows(outbox) == 0, 120, "the backlog was not drained")
        finally:
            agent.stop()
    finally:
        broker.stop()
    assert agent.log.count("agent.publisher: connected to") == 1, agent.log[-3000:]
    assert "disconnected from broker" not in agent.log
    assert "Traceback" not in agent.log
