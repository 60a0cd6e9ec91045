"""What the time-series server may have lost is written again, whatever the outage's
length, and only then (a fake server that loses what it holds in memory when killed,
a fake clock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.wire import Envelope
from collector.outputs import recent
from collector.outputs import sink as sink_module
from collector.outputs.influx import WriteRefused
from collector.outputs.sink import Sink, SinkSettings
from collector.outputs.spool import Spool
from collector.state.store import StateStore
from tests.test_sink import T0, envelope, ingest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Server:
    """Holds what it accepted in memory until ``flush``; ``kill`` loses it."""

    def __init__(self) -> None:
        self.up = True
        self.memory: set[bytes] = set()
        self.disk: set[bytes] = set()
        self.hang_ups = 0
        self.bodies: list[bytes] = []

    def write(self, body: bytes) -> None:
        if not self.up:
            raise ConnectionRefusedError("down")
        self.bodies.append(body)
        self.memory.update(body.split(b"\n"))

    def ping(self) -> bool:
        return self.up

    def close(self) -> None:
        pass

    def flush(self) -> None:
        self.disk |= self.memory
        self.memory = set()

    def kill(self) -> None:
        self.memory = set()
        self.hang_ups += 1  # the kept-alive connection it closed


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sink_module, "time", clock)
    return clock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite") as opened:
        yield opened


def _sink(store: StateStore, server: Server, batch_rows: int = 2000) -> Sink:
    """A sink writing to the fake ``server``, ``batch_rows`` envelopes a write."""
    settings = SinkSettings("http://127.0.0.1:9", "", "o", "b", batch_rows=batch_rows)
    sink = Sink(Spool(store), settings)
    sink._writer = server  # type: ignore[assignment]
    return sink


def _drain(sink: Sink, clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds)):
        sink.step(0.0)
        clock.now += 1


def _all_points(store: StateStore) -> set[bytes]:
    spool = Spool(store)
    return {line for _, p in spool.fetch(10_000) for line in Sink.convert(p).split(b"\n")}


def _accepted(store: StateStore, sink: Sink) -> set[bytes]:
    """Twenty envelopes ingested and written by ``sink`` in one step: their points."""
    ingest(store, [envelope(seq) for seq in range(20)])
    points = _all_points(store)
    assert sink.step(0.0) == 0.0  # accepted, in the server's memory
    return points


def test_an_outage_longer_than_replay_s_still_writes_again_what_the_kill_lost(
    store: StateStore, clock: Clock
) -> None:
    server = Server()
    sink = _sink(store, server)
    first = _accepted(store, sink)
    server.kill()
    server.up = False  # down for a minute (restarted by systemd, an OOM kill, a reboot)
    ingest(store, [envelope(seq) for seq in range(20, 40)])
    _drain(sink, clock, 60)
    server.up = True
    _drain(sink, clock, 60)
    server.flush()
    assert first <= server.disk, f"{len(first - server.disk)} points lost"


def test_a_hang_up_after_a_quiet_spell_writes_again_what_the_kill_lost(
    store: StateStore, clock: Clock
) -> None:
    server = Server()
    sink = _sink(store, server)
    first = _accepted(store, sink)
    clock.now += 2
    server.kill()  # 2 s after the write, and back at once; nothing to send for 30 s
    _drain(sink, clock, 30)
    ingest(store, [envelope(seq) for seq in range(20, 40)])
    _drain(sink, clock, 30)
    server.flush()
    assert first <= server.disk, f"{len(first - server.disk)} points lost"


def test_a_sink_started_while_the_server_is_down_for_a_while_writes_again(
    store: StateStore, clock: Clock
) -> None:
    server = Server()
    first = _accepted(store, _sink(store, server))
    server.kill()  # a power cut: the sink and the server with it
    server.up = False
    sink = _sink(store, server)  # the collector is back first
    ingest(store, [envelope(seq) for seq in range(20, 40)])
    _drain(sink, clock, 40)
    server.up = True
    _drain(sink, clock, 60)
    server.flush()
    assert first <= server.disk, f"{len(first - server.disk)} points lost"


class IdleServer(Server):
    """Closes a connection idle for ``keepalive`` seconds (a proxy's keepalive_timeout)."""

    def __init__(self, clock: Clock, keepalive: float) -> None:
        super().__init__()
        self.clock, self.keepalive, self.last = clock, keepalive, clock.now

    def _request(self) -> None:
        if self.clock.now - self.last > self.keepalive:
            self.hang_ups += 1
        self.last = self.clock.now

    def write(self, body: bytes) -> None:
        self._request()
        super().write(body)

    def ping(self) -> bool:
        self._request()
        return super().ping()


@pytest.mark.parametrize("keepalive", [1.0, 60.0])
def test_a_server_closing_idle_connections_is_not_written_again_and_again(
    store: StateStore, clock: Clock, keepalive: float
) -> None:
    """An envelope every 1.5 s (the sink's loop: a step at once after a write, 0.5 s
    after an idle one), an envelope a minute later: the server closing idle connections
    after ``keepalive`` s is no restart."""
    server = IdleServer(clock, keepalive)
    sink = _sink(store, server)
    new = 0
    delay = 0.0
    for tick in range(1200):
        if (tick % 3 == 0 and tick < 600) or tick == 1190:
            ingest(store, [envelope(tick)])
            new += len(_all_points(store))
        delay = sink.step(delay)
        clock.now += delay or 0.001
    sent = sum(body.count(b"\n") + 1 for body in server.bodies)
    assert sent <= 2 * new, f"{sent} points written for {new}"


def test_a_quiet_sink_lets_the_spool_forget_what_is_past_the_flush(
    store: StateStore, clock: Clock
) -> None:
    sink = _sink(store, Server())
    _accepted(store, sink)
    _drain(sink, clock, 3600)  # an hour without an envelope (a night, a sink disabled next)
    assert Spool(store).accepted(100_000) == []


def test_a_starting_sink_writes_again_in_batches_of_the_usual_size(
    store: StateStore, clock: Clock
) -> None:
    server = Server()
    killed = _sink(store, server)
    for seq in range(0, 600, 20):
        ingest(store, [envelope(s) for s in range(seq, seq + 20)])
    while killed.step(0.0) == 0.0:
        pass
    server.bodies.clear()
    sink = _sink(store, server, batch_rows=100)
    sink.step(0.0)
    assert server.bodies and all(body.count(b"\n") + 1 <= 2 * 120 for body in server.bodies)


@pytest.mark.parametrize("held", [recent.REPLAY_BYTES, 4096])
def test_a_kill_at_more_than_the_countrys_rate_loses_nothing_it_had_accepted(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    """25,000 envelopes written in a second (three times the country's rate) are
    all still to be written again when the server is killed; with the sink's memory
    bounded to less than a batch, the older ones are read back from the spool."""
    monkeypatch.setattr(recent, "REPLAY_BYTES", held)
    server = Server()
    sink = _sink(store, server)
    for seq in range(100):  # 250 PCs, 100 envelopes each
        ingest(store, [envelope(seq, agent=f"pc-{pc:03d}") for pc in range(250)])
        while sink.step(0.0) == 0.0:
            pass
        clock.now += 0.01
    accepted = set(server.memory)
    assert len(accepted) == 2 * 25_000  # two points an envelope
    newest = list(sink._recent)[-1].size
    assert sink._recent.held_bytes <= max(held, newest)  # the bound, or the newest batch
    server.kill()  # and back at once: it closed the kept-alive connection
    _drain(sink, clock, 5)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


class KilledMidReplay(Server):
    """Killed (and back at once) just before accepting write number ``at``."""

    def __init__(self) -> None:
        super().__init__()
        self.at = -1

    def write(self, body: bytes) -> None:
        if len(self.bodies) == self.at:
            self.kill()
        super().write(body)


def test_a_server_killed_again_during_a_replay_has_it_all_written_again(
    store: StateStore, clock: Clock
) -> None:
    """A hang-up found by the batch written next starts a replay; the server killed again
    after one batch of it has the replay started over, the new batch with it."""
    server = KilledMidReplay()
    sink = _sink(store, server, batch_rows=20)
    for seq in range(0, 100, 20):  # five batches accepted
        ingest(store, [envelope(s) for s in range(seq, seq + 20)])
        while sink.step(0.0) == 0.0:
            pass
    accepted = set(server.memory)
    server.kill()  # killed, back at once
    server.at = len(server.bodies) + 2  # again, after the new batch and one replayed
    ingest(store, [envelope(s) for s in range(100, 120)])
    accepted |= {line for _, p in Spool(store).fetch(100) for line in Sink.convert(p).split(b"\n")}
    _drain(sink, clock, 30)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


def test_a_drain_faster_than_the_bounds_waits_for_the_servers_flush(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the bound of envelopes kept (here 4,000: a backlog drained at 6,000 in a
    second), the sink waits until the oldest are past the server's flush rather than
    forget what the server may still hold."""
    monkeypatch.setattr(recent, "REPLAY_ENVELOPES", 4_000)
    server = Server()
    sink = _sink(store, server, batch_rows=200)
    for seq in range(30):
        ingest(store, [envelope(seq, agent=f"pc-{pc:03d}") for pc in range(200)])
    for _ in range(30):
        sink.step(0.0)
        clock.now += 1 / 30  # as fast as it goes: the backlog in about a second
    accepted = set(server.memory)
    assert len(accepted) < 2 * 6_000  # it waited
    server.kill()
    _drain(sink, clock, 60)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"
    assert Spool(store).stats().rows == 0  # and then drained it all


class Committing(Server):
    """The collector commits a batch while the sink's write is in flight."""

    def __init__(self, store: StateStore, batches: list[list[Envelope]]) -> None:
        super().__init__()
        self.store, self.batches = store, batches

    def write(self, body: bytes) -> None:
        super().write(body)
        if self.batches:
            ingest(self.store, self.batches.pop(0))


def test_rows_being_written_are_not_dropped_by_the_spools_bound(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound drops the oldest waiting rows: not those the sink is writing (the server
    may accept them, and a replay reads them back from the spool)."""
    monkeypatch.setattr(recent, "REPLAY_BYTES", 1)  # every older batch read back
    Spool(store, max_bytes=6_000).attach()  # the collector's spool, small
    server = Committing(store, [[envelope(s, agent="pc-b") for s in range(20)]])
    sink = _sink(store, server, batch_rows=20)
    ingest(store, [envelope(s, agent="pc-a") for s in range(20)])
    assert sink.step(0.0) == 0.0  # written; meanwhile the collector's batch hit the bound
    accepted = set(server.memory)
    ingest(store, [envelope(0, agent="pc-c")])
    while sink.step(0.0) == 0.0:
        pass
    server.kill()
    _drain(sink, clock, 5)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


class Poisoned(Server):
    """A 500 for any body with envelope 3's link point, while /ping says all is well."""

    poison = f" {int((T0 + 180) * 1000)}".encode()

    def write(self, body: bytes) -> None:
        if self.up and any(line.endswith(self.poison) for line in body.split(b"\n")):
            raise WriteRefused(500, "internal")
        super().write(body)


@pytest.mark.parametrize("held", [recent.REPLAY_BYTES, 1])
def test_a_row_dropped_as_suspect_is_not_written_again_with_its_batch(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch, held: int
) -> None:
    """Written again (the server restarted), a batch leaves out the row the healthy server
    kept failing (dropped and counted once), held in memory or read back from the
    spool: else the replay fails for ever and the spool never drains."""
    monkeypatch.setattr(recent, "REPLAY_BYTES", held)
    server = Poisoned()
    sink = _sink(store, server)
    ingest(store, [envelope(s) for s in range(10)])
    for _ in range(6):
        sink.step(0.0)
    ingest(store, [envelope(s) for s in range(10, 20)])  # a second batch: the first read back
    sink.step(0.0)
    assert sink.stats.rejected_rows == 1 and Spool(store).stats().rows == 0
    server.kill()  # a restart: the batches (without the dropped row) written again
    ingest(store, [envelope(s) for s in range(20, 30)])
    _drain(sink, clock, 30)
    assert Spool(store).stats().rows == 0, sink.last_error
    assert sink.stats.rejected_rows == 1
    assert sink.stats.replayed_batches >= 2


def test_a_row_that_cannot_be_converted_is_counted_once_however_often_replayed(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recent, "REPLAY_BYTES", 1)  # batches read back from the spool
    converted = Sink.convert

    def convert(payload: bytes) -> bytes:
        if b'"seq":3,' in payload:
            raise ValueError("not an envelope we can write")
        return converted(payload)

    monkeypatch.setattr(Sink, "convert", staticmethod(convert))
    server = Server()
    sink = _sink(store, server)
    ingest(store, [envelope(s) for s in range(10)])
    ingest(store, [envelope(s) for s in range(10, 20)])
    while sink.step(0.0) == 0.0:
        pass
    assert sink.stats.rejected_rows == 1
    for restart in range(3):
        server.kill()
        ingest(store, [envelope(100 + restart)])
        sink.step(0.0)
    assert sink.stats.replayed_batches >= 3
    assert sink.stats.rejected_rows == 1


def _points(store: StateStore) -> set[bytes]:
    """Every point of what waits in the spool."""
    rows = Spool(store).fetch(100_000)
    return {line for _, p in rows for line in Sink.convert(p).split(b"\n")}


def test_a_server_killed_between_a_batch_and_the_replay_it_starts_loses_neither(
    store: StateStore, clock: Clock
) -> None:
    server = KilledMidReplay()
    sink = _sink(store, server, batch_rows=20)
    for seq in range(0, 100, 20):
        ingest(store, [envelope(s) for s in range(seq, seq + 20)])
        while sink.step(0.0) == 0.0:
            pass
    accepted = set(server.memory)
    server.kill()
    server.at = len(server.bodies) + 1  # again, after the new batch, before the replay
    ingest(store, [envelope(s) for s in range(100, 120)])
    accepted |= _points(store)
    _drain(sink, clock, 30)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


def test_a_server_killed_while_a_bad_row_is_split_out_loses_no_half(
    store: StateStore, clock: Clock
) -> None:
    """A batch with a bad row goes in several requests; the server killed between two of
    them loses the halves before: written again."""
    ingest(store, [envelope(s) for s in range(20)])
    server = KilledMidReplay()
    sink = _sink(store, server, batch_rows=20)
    while sink.step(0.0) == 0.0:
        pass  # one batch accepted before (the replay is not empty)
    ingest(store, [envelope(s) for s in range(20, 40)])
    rows = Spool(store).fetch(100)
    bad_envelope = set(Sink.convert(rows[15][1]).split(b"\n"))
    accepted = _points(store) - bad_envelope
    bad = min(bad_envelope)

    class Refusing(KilledMidReplay):
        def write(self, body: bytes) -> None:
            if len(self.bodies) == self.at:
                self.kill()
            if bad in body:
                self.bodies.append(b"")  # a request all the same
                raise WriteRefused(400, "bad")
            super().write(body)

    server.__class__ = Refusing
    server.at = len(server.bodies) + 2  # the batch refused, its first half taken, killed
    _drain(sink, clock, 30)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


def test_a_sink_started_again_gets_past_a_row_the_one_before_dropped(
    store: StateStore, clock: Clock
) -> None:
    """The row a healthy server keeps failing, dropped by the sink before, is in what a
    new sink writes again first: dropped alone again, not a stall for ever."""
    server = Poisoned()
    sink = _sink(store, server)
    ingest(store, [envelope(s) for s in range(10)])
    for _ in range(6):
        sink.step(0.0)
    assert sink.stats.rejected_rows == 1 and Spool(store).stats().rows == 0
    again = _sink(store, server)  # the sink process restarted (killed, upgraded)
    ingest(store, [envelope(s) for s in range(10, 20)])
    _drain(again, clock, 120)
    assert Spool(store).stats().rows == 0, again.last_error


def test_a_bad_row_is_counted_once_by_a_sink_started_again_however_often_replayed(
    store: StateStore, clock: Clock
) -> None:
    ingest(store, [envelope(s) for s in range(10)])
    bad = Sink.convert(Spool(store).fetch(100)[3][1]).split(b"\n")[0]

    class Refusing(Server):
        def write(self, body: bytes) -> None:
            if bad in body:
                raise WriteRefused(400, "bad")
            super().write(body)

    server = Refusing()
    sink = _sink(store, server)
    while sink.step(0.0) == 0.0:
        pass
    assert sink.stats.rejected_rows == 1
    again = _sink(store, server)
    for restart in range(3):
        server.kill()
        ingest(store, [envelope(100 + restart)])
        again.step(0.0)
    assert again.stats.rejected_rows <= 1


def test_rows_waiting_while_a_replay_is_written_are_not_dropped_by_the_bound(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recent, "REPLAY_BYTES", 1)
    Spool(store, max_bytes=6_000).attach()
    server = Committing(store, [])
    sink = _sink(store, server, batch_rows=20)
    ingest(store, [envelope(s, agent="pc-a") for s in range(20)])
    assert sink.step(0.0) == 0.0  # A accepted
    server.up = False
    sink.step(0.0)  # idle: the ping fails, a replay is due
    server.up = True
    ingest(store, [envelope(s, agent="pc-b") for s in range(20)])  # B waits
    b_points = _points(store)
    # The collector commits C while A's replay is written: over the bound.
    server.batches = [[envelope(s, agent="pc-c") for s in range(20)]]
    assert sink.step(0.0) == 0.0  # A again, then B
    assert b_points <= server.memory
    while sink.step(0.0) == 0.0:  # C: B's lines leave memory
        pass
    server.kill()
    _drain(sink, clock, 5)
    server.flush()
    assert b_points <= server.disk, f"{len(b_points - server.disk)} of B's points lost"


def test_a_sink_started_again_writes_again_all_the_one_before_kept(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However much that is (the bounds are the sink's to keep while it runs)."""
    monkeypatch.setattr(recent, "REPLAY_ENVELOPES", 400)
    server = Server()
    sink = _sink(store, server, batch_rows=200)
    for seq in range(3):
        ingest(store, [envelope(seq, agent=f"pc-{pc:03d}") for pc in range(200)])
    for _ in range(3):
        assert sink.step(0.0) == 0.0
        clock.now += 0.1
    accepted = set(server.memory)
    assert len(accepted) == 2 * 600
    server.kill()  # a power cut within a second of the writes
    again = _sink(store, server, batch_rows=200)
    _drain(again, clock, 30)
    server.flush()
    assert accepted <= server.disk, f"{len(accepted - server.disk)} points lost"


class Unpinged(Server):
    """A proxy passing writes, not ``/ping``."""

    def ping(self) -> bool:
        return False


def test_a_server_whose_ping_fails_is_not_written_to_again_and_again(
    store: StateStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor does the sink stall: over the bounds it writes on, what it keeps bounded by
    its writes' own confirmation."""
    monkeypatch.setattr(recent, "REPLAY_ENVELOPES", 400)
    server = Unpinged()
    sink = _sink(store, server, batch_rows=20)
    for seq in range(100):
        ingest(store, [envelope(s, agent=f"pc-{seq:03d}") for s in range(20)])
    for _ in range(200):
        sink.step(0.0)
        clock.now += 0.1
    assert Spool(store).stats().rows == 0
    sent = sum(body.count(b"\n") + 1 for body in server.bodies)
    assert sent <= 2 * 2 * 2_000, f"{sent} points written for 4,000"
