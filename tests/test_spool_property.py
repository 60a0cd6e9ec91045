"""Review of 860cdc8: spool_bytes is the size of the waiting rows after any sequence."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.outputs.spool import Spool
from collector.state.store import StateStore

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.lists(
                st.binary(min_size=1, max_size=60).map(lambda b: b"{" + b), min_size=1, max_size=5
            ),
        ),
        st.tuples(st.just("done"), st.integers(1, 12), st.integers(-1, 30)),
        st.tuples(st.just("forget"), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops, st.integers(50, 400))
def test_spool_bytes_is_the_size_of_what_waits(sequence, bound) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "s.sqlite")
        spool = Spool(store, max_bytes=bound).attach()
        everything_sent: list[bytes] = []
        try:
            for op in sequence:
                if op[0] == "add":
                    with store.transaction() as db:
                        spool.enqueue(db, op[1])
                elif op[0] == "done":
                    rows = spool.fetch(op[1])
                    if rows:
                        forget = None if op[2] < 0 else op[2]
                        spool.done(rows[-1][0], forget_up_to=forget)
                        everything_sent += [p for _, p in rows]
                with store.reading() as db:
                    sent = db.execute(
                        "SELECT COALESCE(MAX(value),0) FROM meta WHERE key='spool_sent'"
                    ).fetchone()[0]
                    actual = db.execute(
                        "SELECT COALESCE(SUM(LENGTH(lines)),0) FROM spool WHERE id > ?", (sent,)
                    ).fetchone()[0]
                stats = spool.stats()
                assert stats.bytes == actual
                assert stats.bytes <= bound
                # what is kept is exactly a suffix of what was accepted
                kept = [p for _, p in spool.accepted(10_000)]
                assert kept == everything_sent[len(everything_sent) - len(kept) :]
                # a starting sink's batches: whole rows, in order, read back as the same
                batches = spool.accepted_batches(3, 10_000)
                again = [p for b in batches for _, p in spool.accepted_between(b[0], b[1])]
                assert again == kept
                assert all(n == len(spool.accepted_between(f, t)) for f, t, n, _ in batches)
                with store.reading() as db:
                    kept_bytes = db.execute(
                        "SELECT COALESCE(SUM(LENGTH(lines)), 0) FROM spool WHERE id <= ?", (sent,)
                    ).fetchone()[0]
                assert sum(b[3] for b in batches) == kept_bytes
        finally:
            store.close()
