"""Maintenance windows: planned time a commune, a device or the province is expected down.

The power company's cut schedule, VNPT's works on the dedicated line, a PC room
rebuilt: during a window, notifications are muted (like a silence) and the
availability figures exclude the time, as Zabbix's SLA does with excluded downtime,
so the report can give availability with and without maintenance, and the
maintenance time itself.

A window is one span ``[starts, ends)`` or a recurring one (``every`` day, week or
month, in Vietnam's time, until ``until``). Its scope: a province, optionally one
commune, one agent of it, one device; an empty part matches everything. Overlapping
windows (and overlapping occurrences) are merged before anything is counted: never
twice.

A device is a word of ``DEVICES`` (``tslcd``: the commune's dedicated line, whatever
its checks are named, by their network; ``polycom``; ``router``…), or the name of a
check or of a PC the place has reported: the profiles name checks freely
(``tslcd-province``, ``tslcd-gateway``), and a word that matched no name would mute
nothing while looking planned. A shared system's id (``mot-cua``) is its probes' check
name: a window on it mutes the system's alerts, and its probes' time is left out of its
availability, from every commune the window's place holds. Anything else is refused by
name.

Bounds: a window must end after it starts; it and its repetitions lie within a
year of now (a window "for ever" is a rule turned off or a commune removed); an
occurrence is no longer than its period.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from agent.wire import IDENT_PATTERN
from collector.common.localtime import VIETNAM
from collector.state.availability import merged
from collector.state.store import StateStore

Every = Literal["", "day", "week", "month"]
EVERY: tuple[str, ...] = ("", "day", "week", "month")
YEAR_S = 366 * 86400.0
MAX_TEXT = 1000
_PERIOD_S = {"day": 86400.0, "week": 7 * 86400.0, "month": 28 * 86400.0}
"""The shortest each period can be: an occurrence may not last longer."""
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

#: The device words a window may say, and what each holds.
DEVICES: dict[str, str] = {
    "tslcd": "the dedicated line: every link check on network tslcd, whatever its name, "
    "and the agents' falling silent (they report over the line)",
    "internet": "every link check on network internet",
    "lan": "every link check on network lan",
    "polycom": "every Polycom check",
    "router": "the SNMP checks named router, router-2, router_core…",
    "switch": "the SNMP checks named switch, switch-2, switch_floor1…",
}
_NETWORKS = ("tslcd", "internet", "lan")

Span = tuple[float, float]


class MaintenanceError(ValueError):
    """A window refused, by name of what is wrong."""


class NotFound(LookupError):
    pass


#: Called inside the change's transaction with the window (the audit's row goes there);
#: raising undoes the change.
Also = Callable[[sqlite3.Connection, "Window"], None]


@dataclass(frozen=True)
class Window:
    id: int
    province: str
    commune: str
    """Empty: every commune of the province."""
    agent: str
    device: str
    """A word of ``DEVICES``, a check's or a PC's name; empty: everything of the place."""
    starts: float
    ends: float
    every: str
    """"", day, week or month: the window repeats, in Vietnam's time."""
    until: float | None
    """A recurring window's last occurrence starts before this."""
    reason: str
    comment: str
    created_by: str
    created_at: float

    def covers(self, province: str, commune: str, device: Device) -> bool:
        """Whether the window's scope holds this device of this place (an empty part of
        the window matches all)."""
        return (
            self.province == province
            and self.commune in ("", commune)
            and self.agent in ("", device.agent)
            and device_covered(self.device, device)
        )

    def occurrences(self, start: float, end: float) -> Iterator[Span]:
        """The window's spans that overlap [start, end), clipped to it, in order."""
        length = self.ends - self.starts
        last = (
            self.starts if not self.every else min(self.until or self.starts, self.starts + YEAR_S)
        )
        index = 0
        if self.every in ("day", "week") and start > self.starts:
            # Fixed periods: begin at the last repetition that can still reach ``start``
            # (asked for every alert the notifier sends, a daily window of a year is long).
            index = max(0, int((start - self.starts - length) // _PERIOD_S[self.every]))
        while True:
            lo = _shifted(self.starts, self.every, index)
            if lo >= end or (index and lo >= last):
                return
            hi = lo + length
            if hi > start:
                yield max(lo, start), min(hi, end)
            if not self.every:
                return
            index += 1

    def active(self, now: float) -> bool:
        return any(True for _ in self.occurrences(now, now + 1e-6))


@dataclass(frozen=True)
class Device:
    """What a window's ``device`` is compared with: one check of an agent, or (no check)
    the agent's or the commune's being heard from."""

    agent: str = ""
    check: str = ""
    """The kind of check: link, polycom, snmp, host, antivirus; empty for the agent's
    state (offline) or the commune's (unreachable)."""
    name: str = ""
    """The check's name in the profile."""
    network: str = ""
    """A link check's network: tslcd, internet, lan."""


def device_covered(word: str, device: Device) -> bool:
    """Whether a window's ``device`` word holds this device (empty holds everything)."""
    if not word:
        return True
    if word == "tslcd" and not device.check:
        return True  # the agents talk to the collector over the line: its works silence them
    if word in _NETWORKS:
        return device.check == "link" and device.network == word
    if word == "polycom":
        return device.check == "polycom"
    if word in ("router", "switch"):
        named = re.fullmatch(rf"{word}([-_.0-9][A-Za-z0-9_.-]*)?", device.name)
        return device.check == "snmp" and named is not None
    return word in (device.name, device.agent)


def line_windows(windows: Iterable[Window], probe_names: Iterable[str]) -> list[Window]:
    """The windows over a commune's dedicated line as a whole (not one PC's probe of it):
    the commune's, or a device that holds one of the line's probes (``tslcd``, a probe's
    name)."""
    probes = [Device(check="link", name=name, network="tslcd") for name in probe_names]
    return [
        w for w in windows
        if not w.agent and (not w.device or any(device_covered(w.device, p) for p in probes))
    ]  # fmt: skip


def device_of(db: sqlite3.Connection, province: str, commune: str, agent: str, name: str) -> Device:
    """The device an alert is about, from the latest sample of its check (its kind and
    network); no check name: the agent's or the commune's state; a check name without an
    agent: a shared system as a whole (its id is its probes' check name)."""
    if name and not agent:
        return Device(check="system", name=name)  # a shared system as a whole
    if not name or not agent:
        return Device(agent=agent)
    row = db.execute(
        "SELECT check_kind, tags FROM latest WHERE agent_key = ? AND name = ? "
        "ORDER BY item LIMIT 1",
        (f"{province}/{commune}/{agent}", name),
    ).fetchone()
    if row is None:
        return Device(agent=agent, name=name)
    tags = json.loads(row[1]) if row[1] else {}
    network = tags.get("network", "") if isinstance(tags, dict) else ""
    return Device(agent=agent, check=str(row[0]), name=name, network=str(network))


def _known_device(db: sqlite3.Connection, province: str, commune: str, agent: str,
                  device: str) -> None:  # fmt: skip
    """MaintenanceError unless ``device`` is a word of ``DEVICES`` or a check's or a PC's
    name the place has reported."""
    if device in DEVICES:
        return
    place = "/".join(p for p in (province, commune, agent) if p)
    # An agent's own key, or every key under a commune or a province.
    lo, hi = (place, place + "\x00") if agent else (place + "/", place + "/\U0010ffff")
    found = (
        db.execute(
            "SELECT 1 FROM latest WHERE agent_key >= ? AND agent_key < ? AND name = ? LIMIT 1",
            (lo, hi, device),
        ).fetchone()
        or db.execute(
            "SELECT 1 FROM agents WHERE agent_key >= ? AND agent_key < ? AND agent = ? LIMIT 1",
            (lo, hi, device),
        ).fetchone()
    )
    if found is None:
        raise MaintenanceError(
            f"device: {device[:64]!r} is unknown: one of {', '.join(DEVICES)}, or the name "
            f"of a check or a PC that {place} has reported"
        )


def _shifted(starts: float, every: str, count: int) -> float:
    """The ``count``-th occurrence's start: the same local time a day, a week or a
    month later (the same day of the month, or its last day)."""
    if not count or not every:
        return starts
    if every in ("day", "week"):
        return starts + count * _PERIOD_S[every]  # Vietnam keeps +07:00 all year
    first = dt.datetime.fromtimestamp(starts, VIETNAM)
    months = first.month - 1 + count
    year, month = first.year + months // 12, months % 12 + 1
    next_month = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=VIETNAM)
    last_day = (next_month - dt.timedelta(days=1)).day
    return first.replace(year=year, month=month, day=min(first.day, last_day)).timestamp()


def spans(windows: Iterable[Window], start: float, end: float) -> list[Span]:
    """The merged time the windows cover inside [start, end)."""
    return merged(span for window in windows for span in window.occurrences(start, end))


def check(
    *,
    province: str,
    commune: str,
    agent: str,
    device: str,
    starts: float,
    ends: float,
    every: str,
    until: float | None,
    reason: str,
    comment: str,
    created_by: str,
    now: float,
) -> None:
    """MaintenanceError naming what is wrong with a window to be added."""
    times = {"starts": starts, "ends": ends} | ({"until": until} if until is not None else {})
    for name, value in times.items():
        if not math.isfinite(value):
            raise MaintenanceError(f"{name}: not a time")
        if abs(value - now) > YEAR_S:
            raise MaintenanceError(
                f"{name}: beyond a year from now: a window lies within a year "
                "(turn a rule off, or remove the commune, for longer)"
            )
    if ends <= starts:
        raise MaintenanceError("ends: the window ends before it starts")
    if every not in EVERY:
        raise MaintenanceError(f"every: one of day, week, month, not {every[:20]!r}")
    if every:
        if until is None:
            raise MaintenanceError("until: a recurring window needs the date it stops")
        if until <= starts:
            raise MaintenanceError("until: the repetition stops before the first window")
        if ends - starts > _PERIOD_S[every]:
            raise MaintenanceError(f"ends: a window repeated every {every} lasts at most one")
    elif until is not None:
        raise MaintenanceError("until: only for a recurring window (every)")
    for name, place in (("province", province), ("commune", commune), ("agent", agent)):
        if (place or name == "province") and not re.fullmatch(IDENT_PATTERN, place):
            raise MaintenanceError(f"{name}: {place[:64]!r} is not a slug")
    if device and not _DEVICE.fullmatch(device):
        raise MaintenanceError(f"device: {device[:64]!r} is not a check name")
    if agent and not commune:
        raise MaintenanceError("agent: an agent is named within its commune")
    for name, text in (("reason", reason), ("comment", comment), ("created_by", created_by)):
        if len(text) > MAX_TEXT:
            raise MaintenanceError(f"{name}: at most {MAX_TEXT} characters")


#: Fixed text: every value is a bound parameter.
SELECT = (
    "SELECT id, province, commune, agent, device, starts, ends, every, until, reason, "
    "comment, created_by, created_at FROM maintenance"
)


def add(
    store: StateStore,
    *,
    province: str,
    starts: float,
    ends: float,
    created_by: str,
    now: float,
    commune: str = "",
    agent: str = "",
    device: str = "",
    every: str = "",
    until: float | None = None,
    reason: str = "",
    comment: str = "",
    also: Also | None = None,
) -> Window:
    check(
        province=province,
        commune=commune,
        agent=agent,
        device=device,
        starts=starts,
        ends=ends,
        every=every,
        until=until,
        reason=reason,
        comment=comment,
        created_by=created_by,
        now=now,
    )
    with store.transaction() as db:
        if device:
            _known_device(db, province, commune, agent, device)
        cursor = db.execute(
            "INSERT INTO maintenance (province, commune, agent, device, starts, ends, every, "
            "until, reason, comment, created_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (province, commune, agent, device, starts, ends, every, until, reason, comment,
             created_by, now),
        )  # fmt: skip
        window = Window(
            int(cursor.lastrowid or 0), province, commune, agent, device, starts, ends, every,
            until, reason, comment, created_by, now,
        )  # fmt: skip
        if also is not None:
            also(db, window)
    return window


def windows(
    store: StateStore,
    province: str | None = None,
    start: float = -math.inf,
    end: float = math.inf,
) -> list[Window]:
    """Windows (of a province) with an occurrence that may overlap [start, end)."""
    query = SELECT + " WHERE starts < ? AND MAX(ends, COALESCE(until, ends) + (ends - starts)) > ?"
    params: list[object] = [end, start]
    if province is not None:
        query += " AND province = ?"
        params.append(province)
    with store.reading() as db:
        rows = db.execute(query + " ORDER BY starts, id", params).fetchall()
    found = [Window(*row) for row in rows]
    return [w for w in found if next(w.occurrences(start, end), None) is not None]


def remove(store: StateStore, window_id: int, also: Also | None = None) -> None:
    """``also`` is given the window, before it goes."""
    with store.transaction() as db:
        row = db.execute(SELECT + " WHERE id = ?", (window_id,)).fetchone()
        if row is None:
            raise NotFound(f"no maintenance window {window_id}")
        if also is not None:
            also(db, Window(*row))
        db.execute("DELETE FROM maintenance WHERE id = ?", (window_id,))
