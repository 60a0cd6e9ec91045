"""The API's JSON made readable as well as exact: each time in Unix seconds gets its ISO
8601 twin in Vietnam's time beside it (``fired_at`` and ``fired_at_iso``), and
percentages are rounded to two decimals.

Programs keep the Unix seconds (nothing is renamed or removed); a person reading an
answer, or a spreadsheet fed from it, reads the ISO time with its zone. Two decimals
keep what an SLA tells apart (99.95 % from 99.9 %) and drop the float's noise
(91.66666666666667). The figures are computed exactly before this: only their
rendering is rounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Hashable, Iterable
from typing import Any

import msgspec
from fastapi.responses import JSONResponse, Response

from agent.wire import MAX_TIME
from collector.common.localtime import VIETNAM

#: Keys whose number is a time in Unix seconds (also any key ending in ``_at``).
TIME_KEYS = frozenset({
    "start", "end", "starts", "ends", "until", "since", "ts", "last_seen", "last_ts",
    "window_start", "window_end", "down_since", "monitored_since", "expires", "at",
})  # fmt: skip
#: Keys whose number is a percentage, besides those with "percent" in their name: the
#: availability windows and the Polycom's ready share.
PERCENT_KEYS = frozenset({"last_24h", "last_7d", "last_30d", "ready_24h"})
DECIMALS = 2


@functools.lru_cache(maxsize=1 << 16)
def iso(ts: float) -> str:
    """A Unix time as ISO 8601 with Vietnam's offset: 2026-12-04T17:05:09+07:00 (the
    same times come back in every answer: a probe's ``since``, a day's start)."""
    return dt.datetime.fromtimestamp(ts, VIETNAM).isoformat(timespec="seconds")


def _is_time(key: str, value: object) -> bool:
    return (
        _is_time_key(key)
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_TIME
    )


@functools.lru_cache(maxsize=4096)
def _is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith("_at")


@functools.lru_cache(maxsize=4096)
def _is_percent_key(key: str) -> bool:
    return "percent" in key or key in PERCENT_KEYS or key.startswith("availability_")


def _is_percent(key: str, value: object) -> bool:
    return isinstance(value, float) and _is_percent_key(key)


def readable(content: Any) -> Any:
    """``content`` (JSON-ready: dicts, lists, scalars) with the ISO twins and rounding."""
    if isinstance(content, list):
        return [readable(item) for item in content]
    if not isinstance(content, dict):
        return content
    result: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, float) and _is_percent_key(key):
            result[key] = round(value, DECIMALS) if math.isfinite(value) else value
        elif isinstance(value, dict | list):
            result[key] = readable(value)
        else:
            result[key] = value
        if not _is_time_key(key):
            continue
        if _is_time(key, value) and f"{key}_iso" not in content:
            result[f"{key}_iso"] = iso(value)
        elif value is None:
            result[f"{key}_iso"] = None
    return result


def readable_of(value: Any, parts: Parts | None = None) -> Any:
    """``readable`` of what pydantic's JSON dump of ``value`` (dataclasses, lists,
    dicts, scalars) would be, in one pass: the API's largest answers (every commune's
    health) are rendered without the dump and the walk over it. ``parts``: values of
    some types already rendered, taken as they are (``msgspec.Raw``)."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else None  # pydantic's JSON: inf and nan as null
    if kind is list or kind is tuple:
        return [readable_of(item, parts) for item in value]
    if kind is dict:
        return readable({key: readable_of(item, parts) for key, item in value.items()})
    if parts is not None and kind in parts.types:
        return parts(value)
    plan = _PLANS.get(kind) or _plan(kind)
    result: dict[str, Any] = {}
    for name, percent, twin in plan:
        item = getattr(value, name)
        field_kind = type(item)
        if field_kind is float:
            if not math.isfinite(item):
                item = None
            elif percent:
                item = round(item, DECIMALS)
        elif field_kind not in _SCALARS:
            item = readable_of(item, parts)
        result[name] = item
        if twin is not None:
            if _is_time(name, item):
                result[twin] = iso(item)
            elif item is None:
                result[twin] = None
    return result


_SCALARS = frozenset({str, int, bool, type(None)})
_PLANS: dict[type, tuple[tuple[str, bool, str | None], ...]] = {}
"""Per dataclass: (field, a percentage's name, the name of its ISO twin if a time's)."""


def _plan(kind: type) -> tuple[tuple[str, bool, str | None], ...]:
    if not dataclasses.is_dataclass(kind):
        raise TypeError(f"not rendered as JSON: {kind.__name__}")
    names = [f.name for f in dataclasses.fields(kind)]
    plan = tuple(
        (
            name,
            _is_percent_key(name),
            f"{name}_iso" if _is_time_key(name) and f"{name}_iso" not in names else None,
        )
        for name in names
    )
    _PLANS[kind] = plan
    return plan


class Parts:
    """Values of these types rendered once each, kept while that very value is asked
    for again (by identity; those held are kept alive, so an id is not reused)."""

    def __init__(self, types: Iterable[type], size: int = 100_000) -> None:
        self.types = frozenset(types)
        self.size = size
        self._held: dict[int, tuple[object, msgspec.Raw]] = {}

    def __call__(self, value: object) -> msgspec.Raw:
        held = self._held.get(id(value))
        if held is not None and held[0] is value:
            return held[1]
        raw = msgspec.Raw(msgspec.json.encode(readable_of(value)))
        if len(self._held) >= self.size:
            self._held.clear()
        self._held[id(value)] = (value, raw)
        return raw


class Rendered:
    """Values' readable JSON by key, kept while the value asked for is the very one
    rendered: the live health model hands out the same figures until they change.
    ``parts``: the types whose values are kept apart (a commune's probes, of which a
    few change at a time)."""

    def __init__(self, parts: Iterable[type] = (), size: int = 8192) -> None:
        self.size = size
        self.parts = Parts(parts) if parts else None
        self._held: dict[Hashable, tuple[object, bytes]] = {}

    def __call__(self, key: Hashable, value: object) -> bytes:
        held = self._held.get(key)
        if held is not None and held[0] is value:
            return held[1]
        body = msgspec.json.encode(readable_of(value, self.parts))
        if len(self._held) >= self.size:
            self._held.clear()
        self._held[key] = (value, body)
        return body


def json_list(parts: list[bytes]) -> Response:
    """A JSON array of values already rendered."""
    return Response(b"[" + b",".join(parts) + b"]", media_type="application/json")


class ReadableJSONResponse(JSONResponse):
    """The API routers' answers: exact figures, readable times and percentages."""

    def render(self, content: Any) -> bytes:
        return super().render(readable(content))
