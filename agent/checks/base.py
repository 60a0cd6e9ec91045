"""The small interface every check implements, and what the scheduler gives it."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

import msgspec

from agent.configtypes import Duration
from agent.wire import MAX_TEXT, FieldValue, Outcome, Sample, clean_fields


class CheckOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Keys every ``[[checks.<kind>]]`` table accepts.

    Every key is classified where it is declared, in one of two sets of its class:
    ``remote_keys`` (data the collector may send: which checks, targets, intervals,
    thresholds, credentials as values) or ``local_only_keys`` (anything naming this PC's
    own resources: programs, files, sockets, folders). A config from the network that
    sets a local-only key is refused by the key's name; local files keep every key.
    A subclass adds its own keys to its parent's sets (a test holds every key classified).
    """

    remote_keys: ClassVar[frozenset[str]] = frozenset({"name", "interval", "timeout"})
    local_only_keys: ClassVar[frozenset[str]] = frozenset()

    name: str = ""
    """Unique among the agent's checks; defaults to the kind for host and antivirus."""
    interval: Duration | None = None
    """How often to run; defaults to the check's own default or ``[agent].interval``."""
    timeout: Duration | None = None
    """How long one run may take before it is abandoned and reported as a timeout."""

    def validate(self) -> None:
        """Cross-field checks that types alone cannot express; raise ValueError."""


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(ABC, Generic[OptionsT]):
    """A check observes one target (or this PC) and returns samples.

    Subclasses validate their options in ``__init__`` without doing I/O, and
    return failures of the target as samples (``outcome`` down/timeout/...),
    never as exceptions. The scheduler owns intervals, timeouts, overlap and
    exception capture. A check is a ``BlockingCheck`` (plain reads, each run on a
    thread of its own) or an ``AsyncCheck`` (a coroutine, on the agent's event loop).
    """

    kind: ClassVar[str]
    default_interval: ClassVar[float | None] = None
    """None: follow ``[agent].interval``."""
    default_timeout: ClassVar[float] = 30.0

    def __init__(self, options: OptionsT, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.clock = clock

    @property
    def name(self) -> str:
        return self.options.name or self.kind

    def interval(self, agent_interval: float) -> float:
        if self.options.interval is not None:
            return float(self.options.interval)
        return self.default_interval if self.default_interval is not None else agent_interval

    @property
    def timeout(self) -> float:
        return float(self.options.timeout) if self.options.timeout else self.default_timeout

    def describe(self) -> str:
        """One line for ``list-checks`` and the birth message."""
        return f"{self.kind}:{self.name}"

    def sample(
        self,
        outcome: Outcome,
        *,
        ts: float,
        item: str = "",
        target: str = "",
        fields: dict[str, FieldValue | None] | None = None,
        tags: dict[str, str] | None = None,
        error: str = "",
    ) -> Sample:
        return Sample(
            ts=ts,
            check=self.kind,
            name=self.name,
            outcome=outcome,
            item=item,
            target=target[:MAX_TEXT],
            fields=clean_fields(fields or {}),
            tags={key: value[:MAX_TEXT] for key, value in (tags or {}).items()},
            error=error[:MAX_TEXT],
        )


class BlockingCheck(Check[OptionsT]):
    """Plain blocking reads, each bounded by its own timeouts; a run has a thread of its
    own. A PC's checks are these: its agent loads no event loop (agent/eventloop.py)."""

    @abstractmethod
    def collect(self) -> list[Sample]:
        """Observe the target now; target failures are samples, not exceptions."""

    def close(self) -> None:
        """Release what the check holds when it stops."""


class AsyncCheck(Check[OptionsT]):
    """A coroutine on the agent's event loop, started with the first such check: the
    checks whose libraries are asyncio's (pysnmp) or that wait on many sockets."""

    @abstractmethod
    async def collect(self) -> list[Sample]:
        """Observe the target now; target failures are samples, not exceptions."""

    async def close(self) -> None:
        """Release what the check holds (sockets, engines) when it stops."""
