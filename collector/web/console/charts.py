"""Small SVG charts drawn on the server: the line's up/down with its RTT and loss, and a
commune's seven-day availability strip."""

from __future__ import annotations

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


def line_chart(
    outages: list[Outage],
    since: float,
    rtt: list[tuple[float, float]],
    loss: list[tuple[float, float]],
    start: float,
    end: float,
    labels: tuple[str, str, str],
) -> str:
    """A band (green up, red down) over the monitored part of [start, end), the RTT (blue,
    its scale on the left) and the loss (red, 0-100 % on the right) above it."""
    width, height, band = 720.0, 160.0, 18.0
    start = chart_start(start, end, since)
    span = end - start
    top_y, bottom_y = 10.0, height - band - 30

    def x(ts: float) -> float:
        return round(40 + (width - 80) * (min(max(ts, start), end) - start) / span, 1)

    def points(series: list[tuple[float, float]], peak: float) -> str:
        """The series in the chart's band, ``peak`` at its top."""
        return " ".join(
            f"{x(ts)},{round(top_y + (bottom_y - top_y) * (1 - v / peak), 1)}"
            for ts, v in series
            if ts >= start
        )

    up, down, _ = labels
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-label="{escape(up)}/{escape(down)}" data-start="{start:.0f}">',
        f'<rect x="40" y="{height - band - 14}" width="{width - 80:g}" height="{band}" '
        f'fill="#2e7d32"><title>{escape(up)}</title></rect>',
    ]
    for outage in outages:
        lo, hi = x(outage.start), x(outage.end if outage.end is not None else end)
        when = local(outage.start).strftime("%d/%m %H:%M")
        parts.append(
            f'<rect class="down" x="{lo}" y="{height - band - 14}" width="{max(hi - lo, 1.5)}" '
            f'height="{band}" fill="#c62828"><title>{escape(down)} {when}</title></rect>'
        )

    if rtt:
        peak = max(r for _, r in rtt) or 1.0
        parts.append(
            f'<polyline class="rtt" points="{points(rtt, peak)}" fill="none" stroke="#1565c0" '
            'stroke-width="1.5"/>'
        )
        parts.append(f'<text x="0" y="{top_y + 4:g}" font-size="11">{peak:.0f} ms</text>')
        parts.append(f'<text x="0" y="{bottom_y:g}" font-size="11">0 ms</text>')
    if loss and any(v > 0 for _, v in loss):
        parts.append(
            f'<polyline class="loss" points="{points(loss, 100.0)}" fill="none" stroke="#e65100" '
            'stroke-width="1" stroke-dasharray="3 2"/>'
        )
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


def strip(days: Sequence[Day], label: str = "") -> str:
    """Seven small squares, one per day (its local date, its availability in %): green
    from 99.5 %, orange from 95 %, red below, grey not monitored."""
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
        shown = "—" if percent is None else f"{percent:.1f} %"
        parts.append(
            f'<rect x="{index * 12}" y="0" width="10" height="10" fill="{color}">'
            f"<title>{local(day).strftime('%d/%m')}: {shown}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)
