"""Where a caller may look and act: the one place that decides, for the API and the console.

A token (and the console session opened with it) holds a scope: every province of
the collector, some provinces, or some communes of one province. Each kind of
route asks it one question:

- a list keeps what the scope *holds* (``places`` gives the filters for a query);
- one thing (a commune, an agent, an alert, a token) is served only when its place
  is held, and answers otherwise exactly as a thing that does not exist (404, the
  route's own words): a caller learns nothing of what lies outside;
- silences and maintenance windows may be broader than a commune (a whole province,
  every commune of a slug): they are shown when they *reach into* the scope, and
  created or removed only when they lie *within* it; one reaching further is refused
  with 403 (it names nothing outside), one wholly outside with 404.

A place is (province, commune), where "" means every one: ``("dong-nai", "")`` is the
province, ``("", "la-nga")`` every province's la-nga (a silence may say that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException

from collector.alerts.records import Alert, NotFound, get_alert
from collector.rollout import registry
from collector.state.health import HealthModel
from collector.state.store import StateStore

Reach = Literal["inside", "broader", "outside"]


@dataclass(frozen=True)
class Scope:
    provinces: tuple[str, ...] = ()
    """Empty: every province."""
    communes: tuple[str, ...] = ()
    """Empty: every commune of the provinces; else communes of the one province."""

    @property
    def everything(self) -> bool:
        return not self.provinces

    def holds(self, province: str, commune: str = "") -> bool:
        """Whether the place lies inside: the commune, or with ``commune`` "", the whole
        province (a commune scope holds no whole province)."""
        if self.everything:
            return True
        if province not in self.provinces:
            return False
        return not self.communes or commune in self.communes

    def sees(self, province: str, commune: str = "") -> bool:
        """Whether a place whose "" parts match everything reaches into the scope."""
        if self.everything:
            return True
        if province and province not in self.provinces:
            return False
        return not self.communes or not commune or commune in self.communes

    def reach(self, province: str, commune: str = "") -> Reach:
        """What a silence or a window at this place would cover of the scope."""
        if self.holds(province, commune):
            return "inside"
        return "broader" if self.sees(province, commune) else "outside"

    def holds_key(self, agent_key: str) -> bool:
        """An agent's key, ``province/commune/agent``."""
        province, _, rest = agent_key.partition("/")
        return self.holds(province, rest.partition("/")[0])

    def places(
        self, province: str | None = None, commune: str | None = None
    ) -> list[tuple[str, str]]:
        """Filters ("" for any) whose union is what the scope holds of the asked-for
        province and commune; empty when none of it is held."""
        if self.everything:
            return [(province or "", commune or "")]
        provinces = [p for p in self.provinces if province in (None, "", p)]
        if not self.communes:
            return [(p, commune or "") for p in provinces]
        return [(p, c) for p in provinces for c in self.communes if commune in (None, "", c)]

    def provinces_of(self, known: list[str]) -> list[str]:
        """The known provinces the scope sees any of, in their order."""
        return [p for p in known if self.sees(p)]

    def describe(self) -> str:
        if self.everything:
            return "every province"
        if self.communes:
            return f"communes {', '.join(self.communes)} of {self.provinces[0]}"
        return f"provinces {', '.join(self.provinces)}"


EVERYWHERE = Scope()


def not_found(detail: str) -> HTTPException:
    """The answer for a thing outside the scope: the same as for one that does not exist."""
    return HTTPException(404, detail)


def need(held: bool, detail: str) -> None:
    """404 with the route's own words for a missing thing, unless the place is held."""
    if not held:
        raise not_found(detail)


def need_within(scope: Scope, province: str, commune: str, what: str, outside: str) -> None:
    """A silence, window or token to be made (or removed) at this place: 404 with
    ``outside`` when it lies outside the scope, 403 when it reaches beyond it."""
    reach = scope.reach(province, commune)
    if reach == "outside":
        raise not_found(outside)
    if reach == "broader":
        raise HTTPException(
            403,
            f"{what} would reach beyond this token's scope ({scope.describe()}): "
            "name a place inside it",
        )


# What each kind of route needs: the place of the thing it names.


def find_commune(
    model: HealthModel, scope: Scope, slug: str, province: str | None
) -> tuple[str, str] | None:
    """(province, slug) of the commune a caller means: the first of that slug its scope
    holds, or the commune a former slug now names; None when there is none for it."""
    held = [(p, c) for p, c in model.places(province) if c == slug and scope.holds(p, c)]
    if held:
        return held[0]
    renamed = model.renamed(slug, province)
    if renamed is not None and scope.holds(*renamed):
        return renamed
    return None


def alert_in_scope(store: StateStore, scope: Scope, alert_id: int) -> Alert:
    """The alert, when the scope holds its commune; NotFound in the same words otherwise."""
    found = get_alert(store, alert_id, time.time())
    if not scope.holds(found.province, found.commune):
        raise NotFound(f"no alert {alert_id}")
    return found


def events_in_scope(
    store: StateStore, scope: Scope, province: str | None, commune: str | None, limit: int
) -> list[registry.Event]:
    """The newest enrollment events the scope holds: one query per place it holds, merged."""
    found: list[registry.Event] = []
    for p, c in scope.places(province, commune):
        found += registry.events(store, p or None, c or None, limit)
    return sorted(found, key=lambda e: e.id, reverse=True)[:limit]
