"""Value types used in config files: durations, sizes and secrets.

They are decoded by ``dec_hook`` so that every error carries the key it came from.
"""

from __future__ import annotations

from typing import Any

from agent.units import format_duration, parse_duration, parse_size


class Duration(float):
    """Seconds, written in config as 60, "60s", "10m", "72h" or "3d"."""

    def __repr__(self) -> str:
        return format_duration(self)


class Size(int):
    """Bytes, written in config as 1048576, "64MiB" or "500KB"."""


class Secret:
    """A value that must never be printed or logged: repr and str show ``<secret>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "<secret>" if self._value else "''"

    __str__ = __repr__


def decode_hook(type_: type, value: Any) -> Any:
    if type_ is Duration:
        return Duration(parse_duration(value))
    if type_ is Size:
        return Size(parse_size(value))
    if type_ is Secret:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return Secret(value)
    raise NotImplementedError(type_)


def encode_hook(value: Any) -> Any:
    """For printing a config back: durations spelled out, secrets hidden."""
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, Size):
        return int(value)
    raise NotImplementedError(type(value))
