"""The overview's table for a province: which communes need someone now.

Filtered by status and by a search on the official name, the slug or the code
(communes have had no district since July 2025, so the code is how offices name
them); sorted by severity first, or by a column; each commune with its line's
availability day by day over the last seven days.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.common.localtime import local
from collector.state.availability import all_down, availability
from collector.state.health import CommuneHealth
from collector.state.store import StateStore

DAY = 86400.0
#: Worst first; a commune never heard from is last: nothing to fix there yet.
ORDER = {"critical": 0, "warning": 1, "ok": 2, "no_data": 3}
SORTS = ("status", "name", "code", "protected", "line", "agents")


def folded(text: str) -> str:
    """Lower case without tone marks or đ: "Xã La Ngà" and "la nga" match."""
    text = text.casefold().replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def matches(commune: CommuneHealth, query: str) -> bool:
    wanted = folded(query.strip())
    return not wanted or any(
        wanted in folded(text) for text in (commune.name, commune.slug, commune.code)
    )


def _key(sort: str) -> Callable[[CommuneHealth], Any]:
    def none_last(value: float | None) -> tuple[bool, float]:
        return (value is None, -(value or 0.0))

    keys: dict[str, Callable[[CommuneHealth], Any]] = {
        "status": lambda c: (ORDER.get(c.status, 9), -len(c.reasons), folded(c.name)),
        "name": lambda c: folded(c.name.split(" ", 1)[-1]),
        "code": lambda c: (c.code == "", c.code),
        "protected": lambda c: (c.antimalware.percent_protected is None,
                                c.antimalware.percent_protected or 0.0),
        "line": lambda c: none_last(c.line.availability.last_24h),
        "agents": lambda c: (-c.agents, folded(c.name)),
    }  # fmt: skip
    return keys.get(sort, keys["status"])


@dataclass
class Table:
    rows: list[CommuneHealth]
    counts: dict[str, int]
    """Communes by status, before the status filter (the filter's buttons)."""
    shown: int
    total: int


def table(communes: list[CommuneHealth], status: str, query: str, sort: str) -> Table:
    searched = [c for c in communes if matches(c, query)]
    counts = {s: sum(1 for c in searched if c.status == s) for s in ORDER}
    rows = [c for c in searched if not status or c.status == status]
    rows.sort(key=_key(sort))
    return Table(rows, counts, len(rows), len(communes))


def days(now: float, count: int = 7) -> list[tuple[float, float]]:
    """The last ``count`` local days, today included (up to now), as [start, end)."""
    today = local(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return [(today - (count - 1 - i) * DAY, min(today - (count - 2 - i) * DAY, now))
            for i in range(count)]  # fmt: skip


def line_days(
    store: StateStore, province: str, now: float
) -> dict[str, list[tuple[float, float | None]]]:
    """Each commune's line availability per day over the last seven (None: not watched)."""
    spans = days(now)
    place = f"{province}/"
    probes: dict[str, list[Any]] = defaultdict(list)
    for subject in store.subjects("link", place=place):
        if subject.network == "tslcd":
            probes[subject.agent_key.split("/")[1]].append(subject)
    outages = store.outages_under(place, spans[0][0], now)
    result: dict[str, list[tuple[float, float | None]]] = {}
    for commune, subjects in probes.items():
        combined, since = all_down([(outages.get(s.id, []), s.monitored_since) for s in subjects])
        result[commune] = [
            (lo, availability(combined, lo, hi, since, now).percent) for lo, hi in spans
        ]
    return result
