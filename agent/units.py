"""Human-readable durations ("90s", "10m", "72h", "3d") and sizes ("64MiB")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string such as "90s", "10m", "72h", "3d"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '60s' or '10m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"expected a duration such as '60s', '10m', '72h' or '3d', got {value!r}"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration such as '60s' or '10m', got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from a number of bytes or a string such as "64MiB", "500KB"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '64MiB', got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"expected a size such as '64MiB' or '500KB', got {value!r}")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2) or "B"])
    else:
        raise ValueError(f"expected a size such as '64MiB', got {value!r}")
    if size <= 0:
        raise ValueError(f"expected a positive size, got {value!r}")
    return size


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for printing configs back."""
    for unit in ("w", "d", "h", "m", "s"):
        factor = _DURATION_UNITS[unit]
        if seconds >= factor and seconds % factor == 0:
            return f"{int(seconds // factor)}{unit}"
    return f"{seconds:g}s"
