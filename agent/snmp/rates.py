"""Per-second rates from SNMP counters, with wrap, reboot and speed sanity handling."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CounterReading:
    """One reading of an SNMP counter, to make a rate with the next."""

    value: int
    bits: int
    """32 or 64: where the counter wraps."""
    at: float
    """Local monotonic seconds when it was read."""
    uptime_cs: int | None
    """The device's sysUpTime at the same poll (centiseconds), to tell reboots from wraps."""


def counter_rate(
    previous: CounterReading | None, current: CounterReading, ceiling: float | None = None
) -> float | None:
    """Units per second between two readings, or None when no honest rate exists.

    - first reading, or a change of counter width (64-bit appeared or vanished): None;
    - device uptime went down: it rebooted and counters restarted, drop the sample;
    - a 32-bit counter went down while uptime did not: it wrapped, add 2**32;
      a 64-bit counter does not wrap in practice, so a decrease is a reset: None;
    - a rate above ``ceiling`` (the interface speed) is a glitch: None.
    """
    if previous is None or previous.bits != current.bits:
        return None
    elapsed = current.at - previous.at
    if elapsed <= 0:
        return None
    if (
        previous.uptime_cs is not None
        and current.uptime_cs is not None
        and current.uptime_cs < previous.uptime_cs
    ):
        return None
    delta = current.value - previous.value
    if delta < 0:
        if current.bits == 64:
            return None
        delta += 2**current.bits
    rate = delta / elapsed
    if ceiling is not None and ceiling > 0 and rate > ceiling:
        return None
    return rate
