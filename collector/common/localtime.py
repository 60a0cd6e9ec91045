"""Vietnam's time, in which every date of the province is read and written.

Vietnam keeps +07:00 all year (no daylight saving): a month of the report, a date on
the command line or in the API without an offset, a time shown to a technician, are
all in it.
"""

from __future__ import annotations

import datetime as dt

VIETNAM = dt.timezone(dt.timedelta(hours=7), "ICT")


def local(ts: float) -> dt.datetime:
    """A Unix time as Vietnam's clock shows it."""
    return dt.datetime.fromtimestamp(ts, VIETNAM)


def parse_time(value: str, unix_seconds: bool = False) -> float:
    """'2025-10-01', '2025-10-01 08:30', ISO 8601 with an offset, or (``unix_seconds``)
    Unix seconds; local time when no offset is given. ValueError otherwise."""
    text = value.strip()
    if unix_seconds:
        try:
            return float(text)
        except ValueError:
            pass
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=VIETNAM)
    return parsed.timestamp()
