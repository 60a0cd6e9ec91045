"""The spool at its bound: what a batch's commit pays when the time-series server has
been away long enough for the spool to fill.

    .venv/bin/python bench/spool_bench.py [--batch 500] [--batches 100]

At the country's rate (~8,300 envelopes/s, ~400 bytes each) the spool's 1 GiB bound is
reached after about five minutes without the server; from then on every batch drops
the oldest envelopes it displaces. Measured in one run, alternating: enqueueing a
batch of ``--batch`` envelopes in one frame below the bound (the baseline) and at it
(the oldest frame trimmed or deleted), in ms a batch, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.outputs.spool import Spool  # noqa: E402
from collector.state.store import StateStore  # noqa: E402

ENVELOPE = b'{"v":1,"samples":[' + b"x" * 380 + b"]}"


def per_batch(spool: Spool, store: StateStore, batch: list[bytes], batches: int) -> float:
    """ms of one batch's enqueue (in its own transaction), the median of ``batches``."""
    times = []
    for _ in range(batches):
        began = time.perf_counter()
        with store.transaction() as db:
            spool.enqueue(db, batch)
        times.append(time.perf_counter() - began)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=500, help="envelopes in a batch")
    parser.add_argument("--batches", type=int, default=100, help="batches per measure")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batch = [ENVELOPE] * args.batch
    frame_bytes = len(ENVELOPE) * args.batch
    bound = 100 * frame_bytes
    with tempfile.TemporaryDirectory(prefix="commune-spool-") as tmp:
        below = StateStore(Path(tmp) / "below.sqlite")
        at = StateStore(Path(tmp) / "at.sqlite")
        roomy, full = Spool(below, max_bytes=10**12), Spool(at, max_bytes=bound)
        per_batch(full, at, batch, 150)  # filled to its bound (100 frames) and past it
        print(f"spool: batches of {args.batch} envelopes ({frame_bytes / 1024:.0f} KiB), "
              f"a bound of {bound / 2**20:.0f} MiB, median of {args.batches} batches")  # fmt: skip
        for turn in range(args.rounds):
            under_ms = per_batch(roomy, below, batch, args.batches)
            full_ms = per_batch(full, at, batch, args.batches)
            print(f"  round {turn + 1}: below the bound {under_ms:.2f} ms a batch, at it "
                  f"{full_ms:.2f} ms: x {full_ms / under_ms:.2f}")  # fmt: skip
        stats = full.stats()
        print(f"  at the bound: {stats.rows} envelopes held, {stats.dropped} dropped")
        below.close()
        at.close()


if __name__ == "__main__":
    main()
