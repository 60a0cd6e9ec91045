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

import datetime as dt
import functools
import math
from typing import Any

from fastapi.responses import JSONResponse

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


def readable_json(content: Any, status_code: int = 200) -> JSONResponse:
    """``content`` as the API answers it, rendered here (a route that builds its answer
    itself, for speed, answers exactly as the others)."""
    return ReadableJSONResponse(content, status_code=status_code)


class ReadableJSONResponse(JSONResponse):
    """The API routers' answers: exact figures, readable times and percentages."""

    def render(self, content: Any) -> bytes:
        return super().render(readable(content))
