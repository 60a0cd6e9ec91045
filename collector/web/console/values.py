"""Sample values as a technician reads them: with their unit and a sensible precision.

The unit comes from the wire contract's catalogue (``agent/catalogue.py``): bit/s as
kbit/s, Mbit/s or Gbit/s; bytes as KB, MB, GB; seconds as a duration (0.4 ms, 2.1 s,
3 min, 5 h 12 min, 3 d); Unix times as Vietnam's local time; days with one decimal;
percentages and milliseconds with a precision that fits their size; flags as yes/no.
A field the catalogue does not know is shown as it came, numbers rounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from agent.catalogue import CATALOGUE
from agent.wire import FieldValue
from collector.common import words
from collector.common.localtime import local
from collector.state.store import LatestSample


def _scaled(value: float, steps: tuple[tuple[float, str], ...], base: str) -> str:
    for size, name in steps:
        if abs(value) >= size:
            return f"{_number(value / size)} {name}"
    return f"{_number(value)} {base}"


def _number(value: float) -> str:
    """Three significant digits below 100, whole numbers above: 0.000371, 3.14, 12.3, 4097."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) < 100:
        return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.1e}"
    return f"{value:.0f}"


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{_number(seconds * 1000)} ms"
    if seconds < 60:
        return f"{_number(seconds)} s"
    minutes = seconds / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h {int(minutes % 60):02d} min"
    return f"{hours / 24:.1f} d"


_UNITS: dict[str, Callable[[float], str]] = {
    "bit/s": lambda v: _scaled(v, ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")), "bit/s"),
    "bytes": lambda v: _scaled(v, ((1024**3, "GB"), (1024**2, "MB"), (1024, "KB")), "B"),
    "s": duration,
    "Unix s": lambda v: local(v).strftime("%d/%m/%Y %H:%M"),
    "days": lambda v: f"{v:.1f} d",
    "ms": lambda v: f"{_number(v)} ms",
    "%": lambda v: f"{_number(v)} %",
    "1/s": lambda v: f"{_number(v)}/s",
}


def shown(check: str, item: str, name: str, value: FieldValue, yes: str, no: str) -> str:
    """One value, as the console shows it."""
    if isinstance(value, bool):
        return yes if value else no
    if isinstance(value, int | float):
        described = CATALOGUE.get((check, item))
        field = described.fields.get(name) if described else None
        unit = field.unit if field else ""
        formatter = _UNITS.get(unit)
        if formatter is not None:
            return formatter(float(value))
        return f"{_number(float(value))} {unit}".rstrip()
    return str(value)


def decimal(language: str, value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals and the language's decimal sign (85,4 in
    Vietnamese, as the monthly report writes it); "—" for none."""
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if language == "vi" else text


def localised(language: str, text: str, value: FieldValue) -> str:
    """A shown value in the page's language: a number with its decimal sign, a state of
    the catalogue's enumerations (``up``, ``protected``) in words."""
    if isinstance(value, bool):
        return text
    if isinstance(value, int | float):
        return text.replace(".", ",") if language == "vi" else text
    return words.word(language, "value_", text)


def grouped(samples: Sequence[LatestSample]) -> dict[str, list[LatestSample]]:
    """Samples by check, in the order checks first appear."""
    groups: dict[str, list[LatestSample]] = {}
    for sample in samples:
        groups.setdefault(sample.check, []).append(sample)
    return groups
