"""Natural order of names with numbers: port 1, 2, …, 10 (not 1, 10, 11, 2)."""

from __future__ import annotations

import re

# ASCII digits only: str.isdigit() and \d also accept "²" or "٣", which int() refuses
# or reads differently, and a name comes from an agent.
_PARTS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key: digit runs compare as numbers, the rest as case-folded text.

    ``Gi0/0/2`` < ``Gi0/0/10`` < ``Gi0/1/0``; each part is tagged so that a number
    and a text never compare with each other. A number compares by its length
    without leading zeros and then by its digits, which orders any number of
    digits without converting it (int() refuses more than 4,300 digits).
    """
    key: list[tuple[int, int, str]] = []
    for index, part in enumerate(_PARTS.split(name)):
        if not part:
            continue
        if index % 2:  # re.split puts the captured digit runs at odd positions
            digits = part.lstrip("0") or "0"
            key.append((1, len(digits), digits))
        else:
            key.append((0, 0, part.casefold()))
    return tuple(key)
