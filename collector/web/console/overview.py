"""The overview's table for a province: which communes need someone now.

Filtered by status and by a search on the official name, the slug or the code
(communes have had no district since July 2025, so the code is how offices name
them); sorted by severity first, or by a column; each commune with its line's
availability day by day over the last seven days.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collector.state.health import CommuneHealth

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
