"""The overview's count of firing alerts, read in time at the country's size.

``firing_not_suppressed`` (alerts/records.py) counts the unsuppressed among the 500
newest firing alerts: SQLite finds the firing ones by ``alerts_by_state`` and sorts all
of them by time to take the newest. A country keeps tens of thousands firing (46,000 in
the benchmark's store: 15-40 ms, most of an overview's time). For a viewer who sees
everything, the same count is taken here from the other end: ``alerts_by_time`` walked
from the newest alert, which is already the order asked for, stopping at the 500th
firing one (or at the oldest). When a long walk passes mostly resolved alerts, the few
firing are counted by the state's index when they are within the limit, else the
plain query answers (the same figure each way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from collector.alerts.records import firing_not_suppressed
from collector.state.store import StateStore

#: Alerts walked before the plain query is cheaper (a few ms of Python).
WALK_BOUND = 10_000

_NEWEST_FIRST = """SELECT state = 'firing', suppressed FROM alerts INDEXED BY alerts_by_time
                   ORDER BY started_at DESC, id DESC"""


def firing_count(
    store: StateStore,
    places: Sequence[tuple[str, str]] | None = None,
    limit: int = 500,
    walk_bound: int = WALK_BOUND,
) -> int:
    """``firing_not_suppressed(store, places, limit)``, the same figure."""
    if places is None or list(places) != [("", "")]:
        return firing_not_suppressed(store, places, limit)
    with store.reading() as db:
        db.execute("BEGIN")  # one snapshot for the walk and what may follow it
        try:
            walked = db.execute(_NEWEST_FIRST)
            try:
                counted = _newest_firing(walked, limit, walk_bound)
            finally:
                walked.close()
            if counted is None:
                # Few firing among many resolved: when those few are within the limit,
                # each is counted (the state's index finds them).
                (firing,) = db.execute(
                    "SELECT COUNT(*) FROM alerts WHERE state = 'firing'"
                ).fetchone()
                if firing <= limit:
                    (counted,) = db.execute(
                        "SELECT COUNT(*) FROM alerts WHERE state = 'firing' AND NOT suppressed"
                    ).fetchone()
        finally:
            db.execute("COMMIT")
    return int(counted) if counted is not None else firing_not_suppressed(store, places, limit)


def _newest_firing(rows: Iterable[tuple[int, int]], limit: int, walk_bound: int) -> int | None:
    """The unsuppressed among the first ``limit`` firing rows (or among all, when all
    were walked); None when ``walk_bound`` rows did not tell."""
    found = shown = 0
    for walked, (is_firing, suppressed) in enumerate(rows, 1):
        if is_firing:
            found += 1
            shown += not suppressed
            if found == limit:
                return shown
        if walked >= walk_bound:
            return None
    return shown
