"""The console overview's count of firing alerts, counted rather than read one by one."""

from __future__ import annotations

from pathlib import Path

from collector.alerts.records import firing_not_suppressed, list_alerts
from tests.test_alerts import T0, Harness


def listed(h: Harness, places: list[tuple[str, str]] | None, limit: int = 500) -> int:
    found = list_alerts(h.store, h.now, state="firing", places=places, limit=limit)
    return len([a for a in found if not a.suppressed])


def test_the_count_is_the_firing_alerts_listed_that_are_not_suppressed(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for agent in ("pc-01", "pc-02", "poller"):
        h.status(T0, "online", agent=agent)
    for offset, agent in enumerate(("pc-01", "pc-02", "poller")):
        h.status(T0 + 600 + 20 * offset, "offline", "connection lost", agent=agent)
    h.tick(T0 + 960)  # the commune's alert fires; its agents' are held back (suppressed)
    assert len(list_alerts(h.store, h.now, state="firing")) == 4
    for places in ([("", "")], None, [("dong-nai", "la-nga")], [("dong-nai", "phu-hoa")], []):
        assert firing_not_suppressed(h.store, places) == listed(h, places)
    assert firing_not_suppressed(h.store, [("", "")]) == 1
    for limit in (1, 2, 3):  # of the newest only, as the list is
        assert firing_not_suppressed(h.store, None, limit) == listed(h, None, limit)
