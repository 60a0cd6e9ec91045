"""Receipts: an agent keeps what the broker acknowledged until the collector says it
committed it, and sends again what a receipt passed over.

The chaos soak (seed 26) found the loss these close: the broker killed before its
first autosave lost the collector's session and the envelopes it held for it, which
every agent had forgotten on the broker's PUBACK. The last test replays it with the
real broker as it ships, a real collector and an enrolled agent's publisher.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent.configtypes import BrokerSection, Duration
from agent.outbox import MAX_RESENDS, Outbox
from agent.publisher import BrokerSettings, Publisher, StatusMessages
from agent.stats import AgentStats
from agent.wire import WireError, decode_receipt, encode, topic
from collector.ingest.ingestor import Ingestor, Message
from collector.ingest.receipts import ReceiptBook, receipt_payload
from collector.state.store import StateStore
from tests.factories import envelope, link
from tests.servers import wait_for


def _outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite", max_age=3600, max_size=10**7)


def _fill(box: Outbox, count: int) -> list[int]:
    return [box.put("t", lambda seq: f"{seq}:x".encode()) for _ in range(count)]


def _ids(box: Outbox) -> list[int]:
    return [row.id for row in box.fetch_after(0, 1000)]


def test_without_receipts_an_acknowledged_row_is_forgotten(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    _fill(box, 3)
    box.acknowledged(_ids(box))
    assert box.stats().rows == 0
    assert not box.receipts_live()


def test_rows_the_broker_took_are_kept_until_a_receipt_covers_them(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    seqs = _fill(box, 6)
    assert box.confirm([]) == []  # the receipt left at enrollment: receipts will come
    assert box.receipts_live()
    box.acknowledged(_ids(box)[:4])  # seqs 0-3 taken by the broker
    assert box.stats().rows == 6, "acknowledged rows are kept"
    assert [int(r.payload.split(b":")[0]) for r in box.fetch_after(0, 10)] == seqs[4:]
    # The store committed 0-2: they are forgotten, 3 waits (beyond the receipt).
    assert box.confirm([[seqs[0], seqs[2]]]) == []
    assert box.stats().rows == 3
    box.close()
    box = _outbox(tmp_path)  # what waits for a receipt survives a restart of the agent
    assert box.confirm([[seqs[0], seqs[3]]]) == []
    assert box.stats().rows == 2


def test_with_no_receipt_for_a_day_what_the_broker_took_is_trusted_to_it(
    tmp_path: Path,
) -> None:
    now = [1_000_000.0]
    box = Outbox(tmp_path / "outbox.sqlite", 10**7, 10**7, clock=lambda: now[0])
    seqs = _fill(box, 3)
    box.confirm([[seqs[0] - 1, seqs[0] - 1]])
    box.acknowledged(_ids(box)[:2])
    now[0] += 86_000
    assert box.release_unconfirmed(86_400) == 0, "a receipt came within the day"
    now[0] += 1_000
    # A day without a receipt: the two taken a day ago go; what the broker takes now is
    # let go at once, as without receipts, until one comes again.
    assert box.release_unconfirmed(86_400) == 2
    assert box.stats().dropped == 0, "the broker took them: not dropped"
    assert not box.receipts_live()
    box.acknowledged(_ids(box))
    assert box.stats().rows == 0


def test_a_receipt_that_passes_over_a_seq_gives_it_back_to_send_again(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    seqs = _fill(box, 5)
    box.confirm([])
    box.acknowledged(_ids(box))
    # The broker lost 1 and 2 (say): the store has 0, 3 and 4.
    again = box.confirm([[seqs[0], seqs[0]], [seqs[3], seqs[4]]])
    assert [int(r.payload.split(b":")[0]) for r in again] == seqs[1:3]
    assert box.stats().rows == 2
    # Given back: not acknowledged any more, so a restart sends them too.
    assert [r.id for r in box.fetch_after(0, 10)] == [r.id for r in again]
    box.acknowledged(r.id for r in again)
    assert box.confirm([[seqs[0], seqs[4]]]) == []
    assert box.stats().rows == 0
    assert box.stats().dropped_error == 0


def test_a_seq_passed_over_again_and_again_is_given_up_and_counted(tmp_path: Path) -> None:
    box = _outbox(tmp_path)
    [_lost, later] = _fill(box, 2)
    [lost_id, later_id] = _ids(box)
    box.confirm([])
    box.acknowledged([lost_id, later_id])
    for _ in range(MAX_RESENDS):
        assert [r.id for r in box.confirm([[later, later]])] == [lost_id]
        box.acknowledged([lost_id])
    assert box.confirm([[later, later]]) == []
    assert box.stats().rows == 0
    assert box.stats().dropped_error == 1


def test_an_outbox_of_the_previous_release_is_taken_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
               topic TEXT NOT NULL, payload BLOB NOT NULL);
           CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
           INSERT INTO meta VALUES ('next_seq', 500), ('dropped_age', 2);
           INSERT INTO outbox (created, topic, payload)
               VALUES (1.0, 't', CAST('499:old' AS BLOB));"""
    )
    old.execute("INSERT INTO meta VALUES ('dropped_size', 0), ('dropped_error', 0)")
    old.commit()
    old.close()
    box = Outbox(path, max_age=10**10, max_size=10**7)
    assert box.stats().dropped_age == 2
    [row] = box.fetch_after(0, 10)
    assert row.payload == b"499:old"
    assert _fill(box, 1) == [500]
    box.confirm([])
    # The old row has no seq: forgotten on its PUBACK as before; the new one is kept.
    box.acknowledged(_ids(box))
    assert [r.payload for r in box.fetch_after(0, 10)] == []
    assert box.stats().rows == 1
    assert box.confirm([[400, 400], [500, 500]]) == []
    assert box.stats().rows == 0


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"seqs":[[5,1]]}',
        b'{"v":1,"seqs":[[1,5],[5,9]]}',
        b'{"v":1,"seqs":[[1,5]],"more":1}',
        b'{"v":2,"seqs":[]}',
        b'{"v":1,"seqs":[[0,1]]' + b" " * 5000 + b"}",
        b'{"v":1,"seqs":[' + b",".join(b"[%d,%d]" % (i * 2, i * 2) for i in range(65)) + b"]}",
    ],
    ids=["backwards", "overlapping", "unknown key", "other version", "too large", "too many"],
)
def test_a_receipt_out_of_its_bounds_is_refused(payload: bytes) -> None:
    with pytest.raises(WireError):
        decode_receipt(payload)


def test_the_book_owes_each_agent_one_receipt_at_a_time_with_its_newest_seqs() -> None:
    now = [1000.0]
    book = ReceiptBook("commune", every_s=300.0, clock=lambda: now[0])
    book.note({"dong-nai/la-nga/pc-01": "5-9", "dong-nai/la-nga/pc-02": "1-1"})
    sent = dict(book.take_due())
    place = "commune/dong-nai/la-nga"
    assert set(sent) == {f"{place}/pc-01/receipt", f"{place}/pc-02/receipt"}
    assert decode_receipt(sent[f"{place}/pc-01/receipt"]).seqs == [[5, 9]]
    book.note({"dong-nai/la-nga/pc-01": "5-10"})
    book.note({"dong-nai/la-nga/pc-01": "5-11 13-13"})
    now[0] += 299.0
    assert book.take_due() == [] and book.owed() == 1
    now[0] += 1.0
    [(_name, payload)] = book.take_due()
    assert decode_receipt(payload).seqs == [[5, 11], [13, 13]]
    assert receipt_payload("5-11 13-13") == payload
    assert book.send(lambda _t, _p: True) == 0


def _batch(store_env: list[bytes], received: float) -> list[Message]:
    return [Message("commune/dong-nai/la-nga/pc-01/data", p, received) for p in store_env]


def test_the_ingest_tells_the_receipts_what_it_committed_and_what_it_refused_for_good(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    try:
        ingestor = Ingestor(store, "commune", max_ahead_s=300.0)
        told: list[dict[str, str]] = []
        ingestor.receipts = lambda seqs: told.append(dict(seqs))
        now = time.time()
        ingestor.process(_batch([encode(envelope(seq, link(now - 60))) for seq in (10, 11)], now))
        assert told == [{"dong-nai/la-nga/pc-01": "10-11"}]
        # 12 from a clock an hour ahead: refused for good, so counted as handled;
        # 13 committed.
        ahead = encode(envelope(12, link(now + 3600)))
        ingestor.process(_batch([ahead, encode(envelope(13, link(now - 30)))], now))
        assert told[-1] == {"dong-nai/la-nga/pc-01": "10-13"}
        assert ingestor.stats.rejected["clock_ahead"] == 1
    finally:
        store.close()


@pytest.mark.timeout(300)
def test_what_a_killed_broker_lost_is_sent_again_on_the_collectors_receipt(
    tmp_path: Path,
) -> None:
    from tests.hostile.brokersite import broker_site

    # The shipped broker saves every 60 s; here it never does before the kill, so the
    # loss is certain rather than a matter of timing.
    with broker_site(tmp_path) as here:
        creds = here.enroll("pc-01", here.token())
        conf = here.broker.conf
        conf.write_text(conf.read_text().replace("autosave_interval 60", "autosave_interval 3600"))
        here.broker.restart()
        wait_for(lambda: here.health().get("broker") == "ok", 60, "the collector is back")
        password = tmp_path / "pc-01.password"
        password.write_text(creds.password)
        broker = BrokerSection(
            url=f"mqtts://localhost:{here.broker.password_port}", username=creds.username,
            password_file=str(password), ca_file=str(here.broker.pki.ca), keepalive=Duration(5),
        )  # fmt: skip
        root = "commune/dong-nai/la-nga/pc-01"
        status = StatusMessages(f"{root}/status", lambda: b"", lambda: b"", b"")
        box = _outbox(tmp_path)
        publisher = Publisher(
            BrokerSettings(broker, creds.username, reconnect_max=2.0), box, status,
            AgentStats(), receipt_topic=topic("commune", "dong-nai", "la-nga", "pc-01", "receipt"),
        )  # fmt: skip

        def put() -> int:
            seq = box.put(f"{root}/data", lambda s: encode(envelope(s, link(time.time() - 5))))
            publisher.notify()
            return seq

        publisher.start()
        try:
            first = put()
            wait_for(lambda: box.stats().rows == 0, 60, "a first receipt")
            here.collector.stop()  # the broker keeps the collector's envelopes meanwhile
            held = [put() for _ in range(20)]
            wait_for(lambda: not box.fetch_after(0, 100), 60, "the broker took all 20")
            assert box.stats().rows == 20, "the broker took them; the agent keeps them"
            here.broker.restart(crash=True)
            # Receipts every 2 s from now on, not 5 min: the one that shows the gap comes
            # first, the one that confirms what was sent again right after.
            config = here.collector.config
            config.write_text(
                config.read_text().replace(
                    "[collector]\n", '[collector]\nreceipt_interval = "2s"\n'
                )
            )
            here.collector.start()
            wait_for(lambda: here.health().get("broker") == "ok", 60, "the collector is back")
            last = put()
            wait_for(lambda: box.stats().rows == 0, 120, "every envelope confirmed")
        finally:
            publisher.stop()
            box.close()
        db = sqlite3.connect(f"{here.collector.state.resolve().as_uri()}?mode=ro", uri=True)
        try:
            [(seqs,)] = db.execute("SELECT seqs FROM agents WHERE agent = 'pc-01'").fetchall()
        finally:
            db.close()
        assert seqs == f"{first}-{last}", (held, seqs)
        assert publisher.stats.publish.resent == len(held)


def _history(store: StateStore) -> tuple[list[tuple[float, float | None]], float]:
    [subject] = store.subjects()
    return [(o.start, o.end) for o in store.outages(subject.id)], subject.since


@pytest.mark.parametrize(
    ("in_order", "late", "outages", "since"),
    [
        # The envelope seeing the line back (300) lost, sent again after the next one.
        ([(1, 100, True), (2, 200, False), (4, 400, True)], (3, 300, True), [(200, 300)], 300),
        # The envelope seeing it go down (200) lost: the outage starts when it was seen.
        ([(1, 100, True), (3, 300, False)], (2, 200, False), [(200, None)], 200),
        # A late sample from before the last change says nothing of it.
        ([(1, 100, True), (2, 200, False), (4, 400, True)], (3, 150, True), [(200, 400)], 400),
        # Nor one of the other state.
        ([(1, 100, True), (2, 200, False), (4, 400, True)], (3, 300, False), [(200, 400)], 400),
    ],
    ids=["back up earlier", "down earlier", "before the change", "the other state"],
)
def test_a_sample_sent_again_after_later_ones_moves_the_change_to_when_it_was_seen(
    tmp_path: Path,
    in_order: list[tuple[int, float, bool]],
    late: tuple[int, float, bool],
    outages: list[tuple[float, float | None]],
    since: float,
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    try:
        base = time.time() - 3600
        for seq, at, up in [*in_order, late]:
            store.apply([envelope(seq, link(base + at, up))], [], received=base + 500)
        found, found_since = _history(store)
        assert [(lo - base, None if hi is None else hi - base) for lo, hi in found] == outages
        assert found_since - base == since
    finally:
        store.close()
