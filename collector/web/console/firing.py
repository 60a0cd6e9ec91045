"""The overview's count of firing alerts, read in time at the country's size.

``firing_not_suppressed`` (alerts/records.py) counts the unsuppressed among the 500
newest firing alerts: SQLite finds the firing ones by ``alerts_by_state`` and sorts all
of them by time to take the newest. A country keeps tens of thousands firing (46,000 in
the benchmark's store: 15-40 ms, most of an overview's time). For a viewer who sees
everything, the same count is taken here from the other end: the newest 2,000 alerts
by ``alerts_by_time``, which is already the order asked for, hold the 500 newest firing
ones when that many fire lately (or are every alert). When they do not (mostly
resolved), the few firing are counted by the state's index when they are within the
limit, else the plain query answers: the same figure each way.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.alerts.records import firing_not_suppressed
from collector.state.store import StateStore

#: Alerts walked before the plain query is cheaper.
WALK_BOUND = 2_000

# The walk and its count in SQLite: no row becomes a Python object.
_NEWEST_FIRST = """
    SELECT COUNT(*) FILTER (WHERE state = 'firing' AND nth <= ?2),
           COUNT(*) FILTER (WHERE state = 'firing' AND nth <= ?2 AND NOT suppressed),
           COUNT(*)
    FROM (SELECT state, suppressed,
                 SUM(state = 'firing') OVER (ORDER BY started_at DESC, id DESC
                                             ROWS UNBOUNDED PRECEDING) AS nth
          FROM (SELECT started_at, id, state, suppressed FROM alerts INDEXED BY alerts_by_time
                ORDER BY started_at DESC, id DESC LIMIT ?1))"""


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
            found, shown, walked = db.execute(_NEWEST_FIRST, (walk_bound, limit)).fetchone()
            counted: int | None = None
            if found == limit or walked < walk_bound:  # the limit reached, or every alert
                counted = shown
            else:
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
