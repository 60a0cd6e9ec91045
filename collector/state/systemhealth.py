"""How the province's shared systems answer the communes: now, over a window, a month.

Each commune's prober (``[[checks.system]]``, one agent per commune) leaves for every
system it probes an up/down history (``subjects`` of kind ``system``) and a
response-time histogram (``system_times``). This module reads them with the commune's
own dedicated line beside them, so that every "cannot reach" is told apart:

- ``line_down``: the commune's line is down (its own problem, alerted as a line);
- ``unreachable`` / ``bad_response``: the line is up and the system does not answer,
  or answers wrongly (a login page, an error, an expired certificate);
- ``silent``: the prober is not running (a PC switched off says nothing of the system);
- ``slow``: it answers, slower than the catalogue's ``slow_ms``.

A system's availability over a window is time-weighted across the communes that
probe it: the sum over communes of the time it answered, over the sum of the time
it was watched, less the time each commune's line was down and the system's
maintenance windows (both shown apart, never counted twice). Each commune's own
website is one more "system" (id ``website``), each commune probing its own.

Everything here is a view of the store, computed on request; a scope (the communes a
token holds) narrows every figure to those communes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from collector.state.inventory import Inventory
from collector.state.store import StateStore
from collector.state.systems import Catalogue

ReachState = Literal[
    "ok", "slow", "unreachable", "bad_response", "line_down", "silent", "not_probed"
]
#: The states in which the commune cannot use the system now.
CANNOT_REACH: tuple[ReachState, ...] = ("unreachable", "bad_response", "line_down")

Verdict = Literal["ok", "down", "slow", "local", "no_data"]
"""A system now: ok; down (most communes with their line up cannot reach it: the
system's problem); slow (slow from most); local (some communes cannot reach it or find
it slow while most can: their own problem); no_data (nobody probes it)."""

#: "Most" communes: the share of those probing with their line up.
WIDELY_PERCENT = 50.0


@dataclass(frozen=True)
class Reach:
    """One commune's view of one system, from its prober's latest sample."""

    commune: str
    commune_name: str
    state: ReachState
    since: float | None
    """When the prober's answer last changed between up and down (its history)."""
    agent: str
    """The prober ("" when not probed)."""
    ts: float | None
    """The latest sample's time."""
    status: int | None
    total_ms: float | None
    """Total time (HTTP) or connect time (TCP) of the latest answer."""
    cert_days: float | None
    error: str
    """Why it is not ok, as the probe said it ("" when ok)."""
    target: str
    """What the prober asks: a URL, or host:port."""


@dataclass(frozen=True)
class Incident:
    """A system's alert (unreachable, slow, certificate) overlapping a period."""

    alert_id: int
    rule: str
    severity: str
    started: float
    ended: float | None
    """None while it still fires."""
    value: str
    communes: str = ""
    """The commune the alert is about ("" for the system as a whole)."""


@dataclass(frozen=True)
class Figures:
    """A system over one window, across the communes that probe it (in scope)."""

    start: float
    end: float
    availability: float | None
    """Percent of the watched time it answered well: line outages and maintenance
    excluded; None when nobody watched."""
    availability_with_maintenance: float | None
    """The same with the maintenance windows counted like any other time."""
    observed_s: float
    """Commune-seconds watched, less the excluded time."""
    down_s: float
    """Commune-seconds it could not be used (line up, no maintenance)."""
    line_excluded_s: float
    """Commune-seconds excluded because the commune's own line was down."""
    maintenance_s: float
    """Commune-seconds excluded by the system's (or the commune's) maintenance windows."""
    p50_ms: float | None
    p95_ms: float | None
    answers: int
    """Healthy answers the response times are of."""
    communes: int
    """Communes that probed it in the window."""
    incidents: list[Incident] = field(default_factory=list)


@dataclass(frozen=True)
class SystemHealth:
    province: str
    id: str
    """The catalogue's id ("website": every commune's own site together)."""
    name: str
    kind: str
    target: str
    """The URL or host:port ("" for the websites, each commune having its own)."""
    network: str
    owner: str
    route: str
    slow_ms: float
    cert_min_days: int
    verdict: Verdict
    status: Literal["ok", "warning", "critical", "no_data"]
    communes: int
    """Communes that use it (in scope)."""
    probing: int
    """Communes whose prober is running and has answered for it."""
    reaching: int
    """Of those, the communes it answers well (ok or slow)."""
    unreachable: list[str]
    """Communes that cannot reach it with their line up (unreachable, bad_response)."""
    line_down: list[str]
    """Communes that cannot reach it because their own line is down."""
    slow: list[str]
    silent: list[str]
    """Communes whose prober is not running: nothing known of the system there."""
    cert_days: float | None
    """The fewest days left on its certificate any commune saw (HTTPS)."""
    median_ms: float | None
    """The median of the communes' latest answers."""
    reach: list[Reach]
    """Every commune that uses it, in the inventory's order."""
    last_24h: Figures | None = None
    last_30d: Figures | None = None


@dataclass(frozen=True)
class CommuneSystems:
    """One commune's shared systems: which it can and cannot reach now."""

    province: str
    commune: str
    commune_name: str
    line_up: bool | None
    systems: list[tuple[SystemHealth, Reach]]
    """Each system the commune uses (its website last) and the commune's reach of it;
    the SystemHealth is the system's province-wide view (within the scope)."""


@dataclass(frozen=True)
class SystemPeriod:
    """A system over a report's period (the monthly report's section)."""

    id: str
    name: str
    kind: str
    network: str
    owner: str
    communes: int
    """Communes that use it (in scope)."""
    figures: Figures


Scope = Collection[str] | None
"""The communes a token holds (None: every commune)."""


class SystemsModel:
    """The shared systems' views, from the store, the catalogues and the inventories."""

    def __init__(
        self,
        store: StateStore,
        inventories: Iterable[Inventory],
        catalogues: Callable[[], dict[str, Catalogue]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.inventories = {i.province: i for i in inventories}
        self.catalogues = catalogues
        """Each province's catalogue as it is now (it is reloaded when its file changes)."""
        self.clock = clock

    def systems(
        self, province: str, scope: Scope = None, *, windows: bool = True
    ) -> list[SystemHealth]:
        """Every system of the province's catalogue in its order, then "website" (when
        the catalogue lists websites); ``windows``: with ``last_24h`` and ``last_30d``."""
        raise NotImplementedError

    def system(self, province: str, system_id: str, scope: Scope = None) -> SystemHealth | None:
        """One system with its windows and incidents; None when the catalogue has no such id
        (or the scope holds none of its communes)."""
        raise NotImplementedError

    def commune(self, province: str, commune: str) -> CommuneSystems | None:
        """The systems one commune uses and its reach of each; None without a catalogue."""
        raise NotImplementedError

    def period(
        self, province: str, start: float, end: float, scope: Scope = None
    ) -> list[SystemPeriod]:
        """Each system (then "website") over [start, end): the monthly report's figures,
        incidents included."""
        raise NotImplementedError
