"""An envelope delivered again is spooled once: the store's record of each agent's seqs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from collector.outputs.spool import Spool
from collector.state.seqranges import MAX_RANGES, SeqRanges
from collector.state.store import StateStore
from tests.factories import envelope, link


def test_a_seq_is_new_once_in_any_order() -> None:
    rng = random.Random(7)
    seqs = [s for s in range(1000, 1200) if s % 17]  # gaps: envelopes an outbox dropped
    delivered = []
    for start in range(0, len(seqs), 8):  # out of order within a few, some twice
        window = seqs[start : start + 8] + rng.sample(seqs[max(0, start - 8) : start + 8], 4)
        rng.shuffle(window)
        delivered += window
    ranges = SeqRanges([])
    new = [s for s in delivered if ranges.add(s)]
    assert sorted(new) == seqs
    again = SeqRanges.parse(ranges.text())
    assert not any(again.add(s) for s in seqs)
    assert len(again.ranges) == len({s // 17 for s in range(1000, 1200)})


def test_only_the_newest_ranges_are_kept_and_an_older_seq_counts_as_new() -> None:
    ranges = SeqRanges([])
    for start in range(0, 40 * 10, 10):  # 40 ranges of 5 (a gap of 5 after each)
        for seq in range(start, start + 5):
            assert ranges.add(seq)
    assert len(ranges.ranges) == MAX_RANGES
    assert not ranges.add(399 - 5 - 2)  # within a range kept: applied
    assert ranges.add(3)  # older than every range kept: written twice rather than lost
    assert len(ranges.ranges) == MAX_RANGES


def test_envelopes_sent_again_in_one_gap_share_its_end() -> None:
    """What tells a late sample whether nothing came in order since the previous late one
    (collector/state/latesamples.py): the first seq applied after the gap each fills."""
    ranges = SeqRanges([[1, 4], [8, 9], [12, 20]])
    assert [ranges.gap_end(s) for s in (5, 6, 7, 10, 11, 0)] == [8, 8, 8, 12, 12, 1]
    assert ranges.add(5) and ranges.gap_end(7) == 8  # filled in part: the same gap
    # The newest seq, and one applied already, fill none.
    assert [ranges.gap_end(s) for s in (21, 4, 5, 9, 20)] == [None] * 5


def test_a_redelivered_envelope_is_applied_but_spooled_once(tmp_path: Path) -> None:
    """The collector killed between commit and acknowledge, the outbox sending again after
    a lost PUBACK: the same envelope comes again, in the same batch or a later one."""
    with StateStore(tmp_path / "state.sqlite") as store:
        spool = Spool(store).attach()
        one, two, three = (envelope(100 + i, link(2e9 + 60 * i)) for i in range(3))
        store.apply([one, two], spool=[None, None])
        store.apply([two, three, three], spool=[None, None, None])
        store.apply_each([one, three], spool=[None, None])
        assert spool.stats().rows == 3
        # Out of order is not a duplicate: a gap filled later is spooled.
        store.apply([envelope(105, link(2e9 + 300))], spool=[None])
        store.apply([envelope(104, link(2e9 + 240))], spool=[None])
        assert spool.stats().rows == 5
        [agent] = store.agents()
        assert agent.last_seq == 105
        with store.reading() as db:
            assert db.execute("SELECT seqs FROM agents").fetchone() == ("100-102 104-105",)


def test_a_rolled_back_batch_leaves_its_seqs_new(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite") as store:
        spool = Spool(store).attach()

        def fail(*_: object) -> None:
            raise RuntimeError("the batch fails after its envelopes were seen")

        store.observers.append(fail)
        with pytest.raises(RuntimeError):
            store.apply([envelope(7, link(2e9))], spool=[None])
        store.observers.remove(fail)
        store.apply([envelope(7, link(2e9))], spool=[None])
        assert spool.stats().rows == 1
