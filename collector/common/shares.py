"""Shares (percentages) as people read them."""

from __future__ import annotations


def below_whole(value: float, digits: int) -> float:
    """A share under 100 % never rounds up to it: 99.9996 % is "99.99", not "100.00"
    (a system down ten minutes in a month was not available all of it)."""
    step = 10.0**-digits
    return min(value, 100.0 - step) if value < 100.0 else value
