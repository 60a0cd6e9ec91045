"""Renames benchmark: what a collector's start costs when its inventory renames communes.

    .venv/bin/python bench/renames_bench.py [--communes 95] [--pcs 50] [--alerts 100000]

Builds a store the size of a province (``--communes`` × ``--pcs`` agents, 30 latest
rows and a link subject with 20 outages each, ``--alerts`` alerts) recorded under
hand-made slugs, then starts as a collector would with an inventory giving every
commune its official slug (``formerly``): the first start moves every commune's
history; the next ones find every rename done.

Reported, with a baseline measured in the same run on the same store: opening the
store as the collector does (schema check, WAL), and a full scan of its latest rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from collector.state.renames import move_renamed  # noqa: E402
from collector.state.store import StateStore  # noqa: E402


def build(path: Path, communes: int, pcs: int, alerts: int) -> None:
    store = StateStore(path)
    with store.transaction() as db:
        for c in range(communes):
            for a in range(pcs):
                key = f"dong-nai/old-{c}/pc-{a}"
                db.execute(
                    "INSERT INTO agents (agent_key, province, commune, agent) VALUES (?,?,?,?)",
                    (key, "dong-nai", f"old-{c}", f"pc-{a}"),
                )
                db.executemany(
                    "INSERT INTO latest VALUES (?, ?, '', '', 'host', 0, 'ok', '{}', '{}', '')",
                    [(key, f"check-{n}") for n in range(30)],
                )
                subject = db.execute(
                    "INSERT INTO subjects (agent_key, kind, name, target, monitored_since, "
                    "state, since, last_ts) VALUES (?, 'link', 'tslcd', '10.0.0.1', 0, 'up', 0, 0)",
                    (key,),
                ).lastrowid
                db.executemany(
                    "INSERT INTO outages (subject_id, start, end) VALUES (?, ?, ?)",
                    [(subject, 600.0 * n, 600.0 * n + 60) for n in range(20)],
                )
        db.executemany(
            "INSERT INTO alerts (rule, subject, province, commune, severity, state, "
            "started_at, fired_at) VALUES ('line_down_tslcd', ?, 'dong-nai', ?, 'critical', "
            "'resolved', 0, 0)",
            [(f"dong-nai/old-{i % communes}", f"old-{i % communes}") for i in range(alerts)],
        )
    store.close()


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--communes", type=int, default=95)
    parser.add_argument("--pcs", type=int, default=50)
    parser.add_argument("--alerts", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.sqlite"
        build(path, args.communes, args.pcs, args.alerts)
        renames = {("dong-nai", f"old-{c}"): f"commune-{c}" for c in range(args.communes)}

        opened: list[StateStore] = []
        open_s = timed(lambda: opened.append(StateStore(path)))
        store = opened[0]
        with store.reading() as db:
            scan_s = timed(lambda: db.execute("SELECT COUNT(*), SUM(ts) FROM latest").fetchone())
        moved: dict[str, int] = {}
        first_s = timed(lambda: moved.update(move_renamed(store, renames)))
        later_s = min(timed(lambda: move_renamed(store, renames)) for _ in range(5))
        with store.reading() as db:
            left = db.execute("SELECT COUNT(*) FROM agents WHERE commune LIKE 'old-%'").fetchone()[
                0
            ]
        store.close()
    agents = args.communes * args.pcs
    print(f"store: {agents:,} agents in {args.communes} communes, {agents * 30:,} latest rows, "
          f"{agents * 20:,} outages, {args.alerts:,} alerts")  # fmt: skip
    print(f"baseline: open the store {open_s * 1000:.1f} ms; scan its latest rows "
          f"{scan_s * 1000:.1f} ms")  # fmt: skip
    print(f"first start, {len(renames)} renames: moved {sum(moved.values()):,} rows in "
          f"{first_s:.2f} s ({first_s / scan_s:.0f}x the scan)")  # fmt: skip
    print(f"later starts: {later_s * 1000:.2f} ms ({later_s / open_s:.3f}x opening the store)")
    print(f"left under a former slug: {left}")


if __name__ == "__main__":
    main()
