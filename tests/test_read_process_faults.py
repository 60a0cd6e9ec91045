"""The read process under faults, and where it could answer otherwise than the
collector would:

- a commune's shared systems (``/api/v1/communes/{commune}/systems`` and the console's
  commune page) come from the catalogue files, read by the read process as by the
  collector;
- a read process alive but answering nothing (stopped, wedged) is replaced after
  ``PINGS_MISSED`` pings of the housekeeping;
- the facts feed is bounded by the envelopes it holds, not by transactions: a read
  process that stops reading costs the collector bounded memory;
- a feed blocked writing to a read process that then ends stops cleanly.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.state.factsfeed import MAX_HELD, Batch, FactsFeed
from collector.web.readprocess import PINGS_MISSED
from tests.test_livehealth import T0, envelope, line
from tests.test_read_process import Served, bearer, get, handed, served, wait_for
from tests.test_systems_web import INVENTORY as SYSTEMS_INVENTORY
from tests.test_systems_web import LIS, MOT_CUA, SITES, feed

CATALOGUE_TOML = f"""province = "dong-nai"

[[systems]]
id = "mot-cua"
name = "Hệ thống một cửa điện tử"
kind = "one-stop"
url = "{MOT_CUA}"
network = "tslcd"
owner = "Sở KH&CN"

[[systems]]
id = "lis"
name = "DongNai.LIS"
kind = "land"
host = "{LIS.split(":")[0]}"
port = {LIS.split(":")[1]}
network = "tslcd"
communes = ["la-nga", "phu-ly"]
""" + "".join(
    f'\n[[websites]]\ncommune = "{commune}"\nurl = "{url}"\n' for commune, url in SITES.items()
)
TOKEN = "systems-through-the-read-process-0123"
__all__ = ["served"]  # the fixture, shared with test_read_process


@pytest.fixture
def with_systems(tmp_path: Path) -> Iterator[Served]:
    """The systems' world of test_systems_web, with its catalogue as a file."""
    catalogue = tmp_path / "dong-nai.systems.toml"
    catalogue.write_text(CATALOGUE_TOML, encoding="utf-8")
    world = Served(tmp_path, SYSTEMS_INVENTORY, TOKEN, feed, (str(catalogue),))
    with contextlib.closing(world):
        yield world


def test_a_communes_systems_are_answered_by_the_read_process_as_by_the_collector(
    with_systems: Served,
) -> None:
    def answered() -> bool:
        before = with_systems.reads.channel.handed
        code, _, _ = get(with_systems.server.port, "/api/v1/alerts", bearer(TOKEN))
        return code == 200 and with_systems.reads.channel.handed > before

    wait_for(answered, "the read process answers")
    path = "/api/v1/communes/la-nga/systems?province=dong-nai"
    here = get(with_systems.alone.port, path, bearer(TOKEN))
    assert here[0] == 200 and json.loads(here[2])["systems"]  # the collector knows them
    before = with_systems.reads.channel.handed
    there = get(with_systems.server.port, path, bearer(TOKEN))
    assert with_systems.reads.channel.handed == before + 1
    assert json.loads(there[2]) == json.loads(here[2])


def test_a_read_process_that_answers_nothing_is_replaced(served: Served) -> None:
    wait_for(lambda: handed(served, "/api/v1/alerts"), "the read process answers")
    served.reads.channel.timeout_s = 1.0
    served.reads.ping_timeout_s = 1.0
    assert served.reads.ping()
    pid = served.reads.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # alive, answering nothing (as a wedged one)
    try:
        assert get(served.server.port, "/api/v1/alerts", bearer())[0] == 503
        for _ in range(PINGS_MISSED - 1):  # the housekeeping's rounds: not at the first
            served.reads.ensure_running()
            assert served.reads.pid == pid
        served.reads.ensure_running()
        assert served.reads.pid != pid and served.reads.restarts == 1
        wait_for(lambda: handed(served, "/api/v1/alerts"), "the new read process answers")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_stuck_read_process_costs_the_collector_bounded_memory() -> None:
    """A batch is up to 1,000 envelopes (~1.6 MB as objects): 2,000 of them held for a
    read process that reads nothing would be ~3 GB, over the unit's MemoryMax=2G."""
    feed = FactsFeed()
    receiving, sending = multiprocessing.Pipe(duplex=False)
    feed.attach(sending)  # nobody reads ``receiving``: the sender blocks on the first frame
    try:
        place = ("dong-nai", "la-nga", "pc-1")
        batch = [envelope(place, T0, [line(T0, "tslcd", "tslcd", True, 5.0)])] * 1000
        for _ in range(2010):
            feed.observe(None, batch, T0)  # type: ignore[arg-type]
            feed.committed()
        held = sum(
            len(part.envelopes)
            for item in list(feed._frames.queue)
            if item is not None
            for part in item[0]
            if isinstance(part, Batch)
        )
        assert 0 < held <= MAX_HELD, f"{held} envelopes held for the read process"
    finally:
        receiving.close()  # the blocked sender sees the pipe broken and ends
        assert not feed.flush(timeout_s=60.0)  # it ended (frames were left unsent)
        assert feed.detach()


def test_detaching_while_the_sender_writes_ends_it_cleanly() -> None:
    """Detached while the read process is reading a large frame, then the read process
    ends: the feed's thread, which alone owns the connection, ends on the broken pipe
    and closes it (closed under it, its next write would have been on a closed handle,
    or on a descriptor another thread was given meanwhile)."""
    failures: list[BaseException] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)  # type: ignore[arg-type]
    feed = FactsFeed()
    receiving, sending = multiprocessing.Pipe(duplex=False)
    feed.attach(sending)
    try:
        place = ("dong-nai", "la-nga", "pc-1")
        batch = [envelope(place, T0, [line(T0, "tslcd", "tslcd", True, 5.0)])] * 1000
        feed.observe(None, batch, T0)  # type: ignore[arg-type]
        feed.committed()  # ~300 KB: more than the pipe holds, the sender blocks writing
        assert not feed.detach(timeout_s=0.5)  # blocked writing: it waits for the reader
        assert not sending.closed
        os.read(receiving.fileno(), 1 << 16)  # it had read part of the frame,
        receiving.close()  # then ended (told to stop)
        wait_for(lambda: sending.closed, "the feed's thread ends and closes its end")
        assert failures == []
    finally:
        threading.excepthook = hook
        receiving.close()
