"""Small SVG charts drawn on the server: the line's up/down with its RTT and loss, and a
commune's seven-day availability strip."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from html import escape

from collector.common.localtime import local
from collector.state.availability import Outage
from collector.state.health import Day

#: The shortest span a chart shows, when monitoring began only just now.
MIN_SPAN_S = 3600.0
DAY = 86400.0


def chart_start(start: float, end: float, since: float) -> float:
    """The chart begins when monitoring did (not with a grey week before it)."""
    return max(start, min(since, end - MIN_SPAN_S))


def scale_top(peak: float) -> float:
    """The axis' top: the first of 1, 2, 5 times a power of ten at or above the peak, so
    a single 0.4 ms point reads "0.5 ms", not "0 ms"."""
    if peak <= 0 or not math.isfinite(peak):
        return 1.0
    power = 10.0 ** math.floor(math.log10(peak))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= peak)


def _ms(value: float, sign: str) -> str:
    return f"{value:g} ms".replace(".", sign)


def line_chart(
    outages: list[Outage],
    since: float,
    rtt: list[tuple[float, float]],
    loss: list[tuple[float, float]],
    start: float,
    end: float,
    labels: tuple[str, str, str],
    sign: str = ".",
) -> str:
    """A band over [start, end): grey before monitoring began, then green up, red down;
    the RTT (blue, its scale on the left) and the loss (red, 0-100 % on the right) above
    it, each sample marked so that a single one shows; ``sign``: the decimal sign."""
    width, height, band = 720.0, 160.0, 18.0
    start = chart_start(start, end, since)
    span = end - start
    top_y, bottom_y = 10.0, height - band - 30
    band_y = height - band - 14

    def x(ts: float) -> float:
        return round(40 + (width - 80) * (min(max(ts, start), end) - start) / span, 1)

    def y(value: float, top: float) -> float:
        return round(top_y + (bottom_y - top_y) * (1 - min(value, top) / top), 1)

    def series(name: str, values: list[tuple[float, float]], top: float, color: str) -> str:
        """A polyline through the samples, and a dot on each: one sample is a dot."""
        shown = [(x(ts), y(v, top)) for ts, v in values if start <= ts <= end]
        line = " ".join(f"{px},{py}" for px, py in shown)
        dots = "".join(f'<circle cx="{px}" cy="{py}" r="2" fill="{color}"/>' for px, py in shown)
        return (
            f'<g class="{name}"><polyline points="{line}" fill="none" stroke="{color}" '
            f'stroke-width="1.5"/>{dots}</g>'
        )

    up, down, unwatched = labels
    watched = x(max(since, start))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-label="{escape(up)}/{escape(down)}" data-start="{start:.0f}" '
        f'data-since="{since:.0f}">',
    ]
    if watched > 40:
        parts.append(
            f'<rect class="unwatched" x="40" y="{band_y}" width="{watched - 40:g}" '
            f'height="{band}" fill="#bbb"><title>{escape(unwatched)}</title></rect>'
        )
    if watched < width - 40:
        parts.append(
            f'<rect class="up" x="{watched:g}" y="{band_y}" width="{width - 40 - watched:g}" '
            f'height="{band}" fill="#2e7d32"><title>{escape(up)}</title></rect>'
        )
    for outage in outages:
        lo, hi = x(outage.start), x(outage.end if outage.end is not None else end)
        when = local(outage.start).strftime("%d/%m %H:%M")
        parts.append(
            f'<rect class="down" x="{lo}" y="{band_y}" width="{max(hi - lo, 1.5)}" '
            f'height="{band}" fill="#c62828"><title>{escape(down)} {when}</title></rect>'
        )
    shown_rtt = [(ts, v) for ts, v in rtt if start <= ts <= end]
    if shown_rtt:
        top = scale_top(max(v for _, v in shown_rtt))
        parts.append(series("rtt", shown_rtt, top, "#1565c0"))
        parts.append(
            f'<text class="rtt-top" x="0" y="{top_y + 4:g}" font-size="11">{_ms(top, sign)}</text>'
        )
        parts.append(f'<text x="0" y="{bottom_y:g}" font-size="11">0 ms</text>')
    if any(v > 0 for _, v in loss):
        parts.append(series("loss", loss, 100.0, "#e65100"))
        parts.append(f'<text x="{width - 36:g}" y="{top_y + 4:g}" font-size="11">100 %</text>')
        parts.append(f'<text x="{width - 36:g}" y="{bottom_y:g}" font-size="11">0 %</text>')
    for ts, label in _ticks(start, end):
        parts.append(f'<text x="{x(ts) - 12}" y="{height - 2}" font-size="10">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(start: float, end: float) -> list[tuple[float, str]]:
    """Day labels over two days and more, hours below; at most eight, none off the edge."""
    span = end - start
    if span >= 2 * DAY:
        step, fmt = DAY, "%d/%m"
    else:
        step = next(s for s in (900.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0) if span / s <= 8)
        fmt = "%H:%M"
    # Local midnights (or round hours): Vietnam is +07:00 all year.
    offset = 7 * 3600.0
    first = ((start + offset) // step + 1) * step - offset
    ticks: list[tuple[float, str]] = []
    ts = first
    while ts < end - step / 4 and len(ticks) < 8:
        ticks.append((ts, local(ts).strftime(fmt)))
        ts += step
    return ticks


@functools.lru_cache(maxsize=64)
def _day_month(day: float) -> str:
    # Every commune of the overview shows the same seven days: a national page would
    # otherwise format 23,247 dates to show seven.
    return local(day).strftime("%d/%m")


def strip(days: Sequence[Day], label: str = "", sign: str = ".") -> str:
    """Seven small squares, one per day (its local date, its availability in %, with the
    decimal ``sign``): green from 99.5 %, orange from 95 %, red below, grey not monitored."""
    parts = [f'<svg class="strip" viewBox="0 0 {len(days) * 12} 10" role="img" '
             f'aria-label="{escape(label)}">']  # fmt: skip
    for index, (day, percent) in enumerate((d.start, d.percent) for d in days):
        color = (
            "#bbb"
            if percent is None
            else "#2e7d32"
            if percent >= 99.5
            else "#ef6c00"
            if percent >= 95
            else "#c62828"
        )
        shown = "—" if percent is None else f"{percent:.1f} %".replace(".", sign)
        parts.append(
            f'<rect x="{index * 12}" y="0" width="10" height="10" fill="{color}">'
            f"<title>{_day_month(day)}: {shown}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
