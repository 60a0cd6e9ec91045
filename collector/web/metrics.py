"""The collector's own figures in the Prometheus text format (version 0.0.4).

A handful of counters and gauges read from the running parts on each scrape;
the exposition format is small enough that a client library would add more
than it saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    """(name suffix, labels, value): the suffix is for a histogram's _bucket/_sum/_count."""

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        self.samples.append((suffix, labels, value))
        return self


def histogram(
    name: str, help_text: str, bounds: tuple[float, ...], counts: list[int], total: float
) -> Family:
    """A histogram from per-bucket counts (not cumulative; the last one is above every bound)."""
    family = Family(name, "histogram", help_text)
    running = 0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        family.add(running, "_bucket", le=_number(bound))
    family.add(sum(counts), "_bucket", le="+Inf")
    family.add(total, "_sum")
    family.add(sum(counts), "_count")
    return family


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(families: list[Family]) -> str:
    lines: list[str] = []
    for family in families:
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name} {help_text}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            base = family.name + suffix
            name = f"{base}{{{label_text}}}" if label_text else base
            lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"
