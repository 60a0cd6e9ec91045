"""The audit's rows of what operators do through the API, the console and the command
line.

Each function returns what the action calls inside its own transaction (``also``):
the row is written with the action or not at all. ``removable`` also checks, in
that transaction, that a silence or window to be removed lies within the caller's
scope: one outside is not there for them (404), and stays.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Protocol, TypeVar

from collector.alerts.records import Alert, Silence
from collector.state import audit
from collector.state.maintenance import Window
from collector.web.scope import Scope


class Placed(Protocol):
    @property
    def province(self) -> str: ...

    @property
    def commune(self) -> str: ...


P = TypeVar("P", bound=Placed)
Write = Callable[[sqlite3.Connection, P], None]


def ack(
    actor: audit.Actor, alert: Alert, by: str, comment: str, now: float
) -> Callable[[sqlite3.Connection, bool], None]:
    """One alert acknowledged in the name of ``by`` (``acknowledged`` False: someone had
    already)."""

    def write(db: sqlite3.Connection, acknowledged: bool) -> None:
        audit.record(
            db, actor, "ack", now, province=alert.province, commune=alert.commune,
            agent=alert.agent, object=str(alert.id),
            before={"rule": alert.rule, "state": alert.state, "acked_by": alert.acked_by},
            after={
                "acked_by": by if acknowledged else alert.acked_by,
                "comment": comment if acknowledged else alert.ack_comment,
            },
        )  # fmt: skip

    return write


def ack_group(
    actor: audit.Actor, province: str, commune: str, rule: str, comment: str, now: float
) -> Callable[[sqlite3.Connection, list[int]], None]:
    def write(db: sqlite3.Connection, ids: list[int]) -> None:
        audit.record(
            db, actor, "ack_group", now, province=province, commune=commune, object=rule,
            after={"acknowledged": ids, "comment": comment},
        )  # fmt: skip

    return write


class Muting(Placed, Protocol):
    """A silence or a maintenance window: a place, an agent, an id."""

    @property
    def agent(self) -> str: ...

    @property
    def id(self) -> int: ...


M = TypeVar("M", bound=Muting)


def _muting(actor: audit.Actor, action: str, now: float) -> Write[M]:
    """``<kind>_create`` (the thing after) or ``<kind>_delete`` (the thing before)."""

    def write(db: sqlite3.Connection, found: M) -> None:
        made = action.endswith("_create")
        audit.record(
            db, actor, action, now, province=found.province, commune=found.commune,
            agent=found.agent, object=str(found.id),
            before=None if made else found, after=found if made else None,
        )  # fmt: skip

    return write


def silence(actor: audit.Actor, action: str, now: float) -> Write[Silence]:
    """silence_create (the silence after) or silence_delete (the silence before)."""
    return _muting(actor, action, now)


def window(actor: audit.Actor, action: str, now: float) -> Write[Window]:
    """maintenance_create (the window after) or maintenance_delete (before)."""
    return _muting(actor, action, now)


def removable(scope: Scope, missing: Callable[[], Exception], then: Write[P]) -> Write[P]:
    """Before a silence or a window goes: ``missing()`` (raised, it undoes the removal)
    unless it lies within the scope; then ``then``."""

    def check(db: sqlite3.Connection, found: P) -> None:
        if scope.reach(found.province, found.commune) != "inside":
            raise missing()
        then(db, found)

    return check
