"""Alerts grouped by rule and commune, and the actions on a group: acknowledge, silence.

Every PC of an office losing the line is twenty alerts of one kind in one place: a
technician acts on them once. A group holds its members (newest first), its worst
severity, how many fire and how many are acknowledged, and when its first and last
member started. Groups are ordered as a technician works through them: firing
before resolved, those still waiting for someone before those acknowledged (a
handled critical must not sit above a fresh one), critical before warning, then
the most recent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from collector.alerts.records import (
    MAX_COMMENT,
    Alert,
    Also,
    Silence,
    acknowledge_in,
    add_silence,
    list_alerts,
)
from collector.state.store import StateStore

_RANK = {"critical": 0, "warning": 1, "info": 2}


@dataclass
class AlertGroup:
    rule: str
    province: str
    commune: str
    severity: str
    """The worst of its members."""
    count: int
    firing: int
    unacked: int
    """Firing and not acknowledged: what still needs someone."""
    first_started: float
    last_started: float
    members: list[Alert] = field(default_factory=list)

    @property
    def handled(self) -> bool:
        """Firing, and every firing member acknowledged: someone is on it."""
        return self.firing > 0 and self.unacked == 0

    @property
    def key(self) -> str:
        return f"{self.province}/{self.commune}/{self.rule}"


def groups(
    store: StateStore,
    now: float,
    *,
    state: str | None = "firing",
    commune: str | None = None,
    rule: str | None = None,
    limit: int = 5000,
    places: Sequence[tuple[str, str]] | None = None,
) -> list[AlertGroup]:
    """The alerts (as ``list_alerts`` filters them) grouped by rule and commune."""
    found: dict[tuple[str, str, str], AlertGroup] = {}
    for alert in list_alerts(
        store, now, state=state, commune=commune, rule=rule, limit=limit, places=places
    ):
        key = (alert.province, alert.commune, alert.rule)
        group = found.get(key)
        if group is None:
            group = found[key] = AlertGroup(
                alert.rule, alert.province, alert.commune, alert.severity, 0, 0, 0,
                alert.started_at, alert.started_at,
            )  # fmt: skip
        group.members.append(alert)
        group.count += 1
        firing = alert.state == "firing"
        group.firing += firing
        group.unacked += firing and alert.acked_at is None
        if _RANK.get(alert.severity, 9) < _RANK.get(group.severity, 9):
            group.severity = alert.severity
        group.first_started = min(group.first_started, alert.started_at)
        group.last_started = max(group.last_started, alert.started_at)
    return sorted(
        found.values(),
        key=lambda g: (not g.firing, g.handled, _RANK.get(g.severity, 9), -g.last_started, g.key),
    )


def acknowledge_group(
    store: StateStore,
    *,
    province: str,
    commune: str,
    rule: str,
    by: str,
    comment: str,
    now: float,
    also: Also[list[int]] | None = None,
) -> list[int]:
    """Acknowledge every firing, unacknowledged alert of the group at once; the ids
    (``also`` is given them)."""
    if len(comment) > MAX_COMMENT:
        raise ValueError(f"a comment is at most {MAX_COMMENT} characters")
    with store.transaction() as db:
        ids = [
            int(row[0])
            for row in db.execute(
                "SELECT id FROM alerts WHERE province = ? AND commune = ? AND rule = ? "
                "AND state = 'firing' AND acked_at IS NULL ORDER BY id",
                (province, commune, rule),
            )
        ]
        for alert_id in ids:
            acknowledge_in(db, alert_id, by, comment, now, "(group)")
        if also is not None:
            also(db, ids)
    return ids


def silence_group(
    store: StateStore,
    *,
    province: str,
    commune: str,
    rule: str,
    seconds: float,
    by: str,
    comment: str,
    now: float,
    also: Also[Silence] | None = None,
) -> Silence:
    """Mute the group (this rule in this commune) for a while: its members and any new one."""
    if not (province and commune and rule):
        raise ValueError("a group is a province, a commune and a rule")
    return add_silence(
        store,
        starts=now,
        ends=now + seconds,
        created_by=by,
        now=now,
        province=province,
        commune=commune,
        rule=rule,
        comment=comment,
        also=also,
    )
