"""Agent release versions: one to four dot-separated numbers, ordered as numbers.

Standard library only: the launcher imports it too.
"""

from __future__ import annotations

import re
from typing import Final

_VERSION: Final = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}")


class BadVersion(ValueError):
    pass


def parse(text: str) -> tuple[int, ...]:
    """``"0.3.10"`` -> ``(0, 3, 10, 0)``: padded to four so ``0.3`` equals ``0.3.0``."""
    if not _VERSION.fullmatch(text):
        raise BadVersion(f"not a release version (1 to 4 dot-separated numbers): {text!r}")
    numbers = tuple(int(part) for part in text.split("."))
    return numbers + (0,) * (4 - len(numbers))


def is_version(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None


def newer(a: str, b: str) -> bool:
    """Whether release ``a`` is above release ``b``."""
    return parse(a) > parse(b)


def at_least(a: str, floor: str) -> bool:
    """Whether ``a`` is at or above ``floor`` (an empty floor admits everything)."""
    return not floor or parse(a) >= parse(floor)
