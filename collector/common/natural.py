"""Natural order of names with numbers: port 1, 2, …, 10 (not 1, 10, 11, 2)."""

from __future__ import annotations

import re

_PARTS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key: digit runs compare as numbers, the rest as case-folded text.

    ``Gi0/0/2`` < ``Gi0/0/10`` < ``Gi0/1/0``; each part is tagged so that a number
    and a text never compare with each other.
    """
    return tuple(
        (1, int(part)) if part.isdigit() else (0, part.casefold())
        for part in _PARTS.split(name)
        if part
    )
