"""The SQLite outbox: ordering, sequence numbers across restarts, bounds, a full disk."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from agent.outbox import MAX_IDS, Outbox, OutboxError, id_lists


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        return self.now


def payload(size: int = 100) -> object:
    return lambda seq: f"{seq}:".encode().ljust(size, b"x")


def test_rows_come_back_in_order_and_go_only_when_deleted(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", 3600, 10**6, clock=clock)
    seqs = [box.put("t", payload()) for _ in range(5)]  # type: ignore[arg-type]
    first = int(clock.now * 1000)  # a new outbox numbers from its creation time in ms
    assert seqs == list(range(first, first + 5))
    rows = box.fetch_after(0, 3)
    assert [int(r.payload.split(b":")[0]) for r in rows] == seqs[:3]
    box.delete([rows[0].id, rows[1].id])
    assert [int(r.payload.split(b":")[0]) for r in box.fetch_after(0, 10)] == seqs[2:]
    assert box.stats().rows == 3
    assert box.stats().bytes == 300


def test_sequence_and_rows_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, 3600, 10**6)
    seqs = [box.put("t", payload()) for _ in range(3)]  # type: ignore[arg-type]
    box.close()
    reopened = Outbox(path, 3600, 10**6)
    assert reopened.stats().rows == 3
    assert reopened.stats().bytes == 300
    assert reopened.put("t", payload()) == seqs[-1] + 1  # type: ignore[arg-type]


def test_a_new_outbox_never_numbers_below_an_old_one(tmp_path: Path) -> None:
    """Reinstalled agent, deleted outbox: the collector must not see old numbers again."""
    path = tmp_path / "o.sqlite"
    clock = Clock()
    old = Outbox(path, 10**6, 10**9, clock=clock)
    last = [old.put("t", payload()) for _ in range(500)][-1]  # type: ignore[arg-type]
    old.close()
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    clock.now += 1  # any later start
    assert Outbox(path, 10**6, 10**9, clock=clock).put("t", payload()) > last  # type: ignore[arg-type]


def test_a_damaged_file_is_set_aside_and_the_agent_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"power cut in the middle of a page " * 200)
    box = Outbox(path, 10**6, 10**9)
    assert box.put("t", payload()) > 0  # type: ignore[arg-type]
    assert box.stats().rows == 1
    aside = [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes().startswith(b"power cut")


def test_old_envelopes_are_dropped_and_counted(tmp_path: Path) -> None:
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", max_age=3600, max_size=10**6, clock=clock)
    for _ in range(4):
        box.put("t", payload())  # type: ignore[arg-type]
    clock.now += 3601
    box.put("t", payload())  # type: ignore[arg-type]
    stats = box.stats()
    assert (stats.rows, stats.dropped_age, stats.dropped) == (1, 4, 4)


def test_full_outbox_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_age=10**6, max_size=1000)
    for _ in range(25):
        box.put("t", payload(100))  # type: ignore[arg-type]
    stats = box.stats()
    assert stats.rows == 10
    assert stats.bytes == 1000
    assert stats.dropped_size == 15
    rows = box.fetch_after(0, 100)
    numbers = [int(r.payload.split(b":")[0]) for r in rows]
    assert numbers == list(range(numbers[-1] - 9, numbers[-1] + 1))  # the newest ten


def test_counters_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_age=10**6, max_size=500)
    for _ in range(8):
        box.put("t", payload(100))  # type: ignore[arg-type]
    box.close()
    assert Outbox(path, 10**6, 500).stats().dropped_size == 3


def test_a_full_disk_drops_oldest_to_make_room_and_counts(tmp_path: Path) -> None:
    """The database is capped with max_page_count: SQLite's real 'disk is full' path."""
    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_age=10**6, max_size=10**9)
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages + 6}")
    stored = 0
    for _ in range(200):
        last = box.put("t", payload(4000))  # type: ignore[arg-type]
        stored += 1
    stats = box.stats()
    assert stored == 200  # every put succeeded by dropping the oldest
    assert stats.dropped_error > 0
    assert stats.rows + stats.dropped_error == 200
    newest = box.fetch_after(0, 1000)[-1]
    assert newest.payload.startswith(f"{last}:".encode())


def test_an_envelope_larger_than_the_whole_disk_is_refused_cleanly(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_age=10**6, max_size=10**9)
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(OutboxError, match="cannot store"):
        box.put("t", payload(100_000))  # type: ignore[arg-type]
    assert box.stats().dropped_error >= 1
    assert box.put("t", payload(10)) >= 0  # type: ignore[arg-type]  # still usable


def test_unwritable_location_is_a_clean_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((OutboxError, OSError)):
        Outbox(blocker / "o.sqlite", 1, 1)


def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.sqlite", 1, 1).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_agent_reports_drops_new_since_its_last_sample_for_the_alert(tmp_path: Path) -> None:
    """The drop counter survives restarts (it is in the file); ``dropped_new`` — what the
    ``outbox_dropped`` alert watches — tells only drops since the previous sample."""

    from agent.checks.selfmetrics import SelfMetricsCheck
    from agent.stats import AgentStats

    path = tmp_path / "o.sqlite"
    box = Outbox(path, max_age=10**6, max_size=500)
    for _ in range(8):
        box.put("t", payload(100))  # type: ignore[arg-type]
    box.close()
    box = Outbox(path, max_age=10**6, max_size=500)  # restarted: 3 drops from before
    check = SelfMetricsCheck(AgentStats(), box.stats)

    def fields() -> tuple[object, object]:
        [sample, *_] = check.collect()
        return sample.fields["dropped_envelopes"], sample.fields["dropped_new"]

    assert fields() == (3, 0)  # reported before the restart
    for _ in range(4):
        box.put("t", payload(100))  # type: ignore[arg-type]
    assert fields() == (7, 4)
    assert fields() == (7, 0)


def test_acknowledged_batches_of_any_size_reuse_a_few_statements() -> None:
    """One prepared statement per batch size would fill sqlite3's cache of 128 over hours
    of varying acknowledgement batches: the memory of a slow leak."""
    lengths: set[int] = set()
    for size in range(1, 1001):
        ids = list(range(10_000, 10_000 + size))
        lists = id_lists(ids)
        assert [i for chunk in lists for i in dict.fromkeys(chunk)] == ids  # each once, in order
        assert all(len(chunk) <= MAX_IDS for chunk in lists)
        lengths.update(len(chunk) for chunk in lists)
    assert lengths == {2**k for k in range(9)}


def test_deleting_batches_of_any_size_removes_exactly_those_rows(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", 3600, 10**8)
    for _ in range(700):
        box.put("t", payload())  # type: ignore[arg-type]
    rows = box.fetch_after(0, 700)
    box.delete(r.id for r in rows[:3])
    box.delete(r.id for r in rows[3:10:2])  # not contiguous
    box.delete(r.id for r in rows[100:400])  # more than one statement takes
    left = {r.id for r in box.fetch_after(0, 1000)}
    gone = {r.id for r in rows[:3] + rows[3:10:2] + rows[100:400]}
    assert left == {r.id for r in rows} - gone
    assert box.stats().rows == len(left)
    assert box.stats().bytes == 100 * len(left)


def test_the_creation_ledger_has_a_line_per_envelope_before_it_can_be_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMUNE_MONITOR_LEDGER (the chaos soak's seam): one line per committed envelope,
    in its agent's file, readable before the publisher can fetch the row; a torn last
    line (kill -9 mid-write) is skipped by the reader."""
    from agent.ledger import ledger_name, read_ledger
    from agent.wire import encode
    from tests.factories import envelope, link

    ledger = tmp_path / "ledger"
    monkeypatch.setenv("COMMUNE_MONITOR_LEDGER", str(ledger))
    clock = Clock()
    box = Outbox(tmp_path / "o.sqlite", 3600, 10**6, clock=clock)
    t0 = clock.now - 60
    seqs = [
        box.put("t", lambda seq, i=i: encode(envelope(seq, link(t0 + i), link(t0 + i + 0.5))))
        for i in range(3)
    ]
    path = ledger / ledger_name("dong-nai", "la-nga", "pc-01")
    with path.open("ab") as torn:
        torn.write(b"99 1.0 2")
    lines = list(read_ledger(path))
    assert [line.seq for line in lines] == seqs
    assert [(line.first_ts, line.last_ts, line.samples) for line in lines] == [
        (t0 + i, t0 + i + 0.5, 2) for i in range(3)
    ]
    assert {line.created for line in lines} == {clock.now}


def test_without_the_ledger_variable_no_ledger_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMMUNE_MONITOR_LEDGER", raising=False)
    box = Outbox(tmp_path / "o.sqlite", 3600, 10**6)
    box.put("t", payload())  # type: ignore[arg-type]
    assert box._ledger is None
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("o.sqlite")) == []
