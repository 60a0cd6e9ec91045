"""Small SVG charts drawn on the server: the line's up/down over a week and its RTT."""

from __future__ import annotations

from html import escape

from collector.common.localtime import local
from collector.state.availability import Outage


def line_week(
    outages: list[Outage],
    since: float,
    rtt: list[tuple[float, float]],
    start: float,
    end: float,
    labels: tuple[str, str, str],
) -> str:
    """A band (green up, red down, grey not watched) over [start, end) with the RTT above."""
    width, height, band = 720.0, 150.0, 18.0
    span = end - start

    def x(ts: float) -> float:
        return round(40 + (width - 50) * (min(max(ts, start), end) - start) / span, 1)

    up, down, unwatched = labels
    parts = [
        f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-label="{escape(up)}/{escape(down)}">',
        f'<rect x="40" y="{height - band - 14}" width="{width - 50:g}" height="{band}" '
        f'fill="#2e7d32"><title>{escape(up)}</title></rect>',
    ]
    if since > start:
        parts.append(
            f'<rect x="40" y="{height - band - 14}" width="{x(since) - 40}" height="{band}" '
            f'fill="#bbb"><title>{escape(unwatched)}</title></rect>'
        )
    for outage in outages:
        lo, hi = x(outage.start), x(outage.end if outage.end is not None else end)
        when = local(outage.start).strftime("%d/%m %H:%M")
        parts.append(
            f'<rect class="down" x="{lo}" y="{height - band - 14}" width="{max(hi - lo, 1.5)}" '
            f'height="{band}" fill="#c62828"><title>{escape(down)} {when}</title></rect>'
        )
    if rtt:
        top = max(r for _, r in rtt) or 1.0
        points = " ".join(
            f"{x(ts)},{round(8 + (height - band - 30) * (1 - r / top), 1)}" for ts, r in rtt
        )
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="#1565c0" stroke-width="1.5"/>'
        )
        parts.append(f'<text x="0" y="14" font-size="11">{top:.0f} ms</text>')
        parts.append(f'<text x="0" y="{height - band - 20}" font-size="11">0</text>')
    for day in range(7):  # the last day's label would run off the edge
        ts = start + day * 86400
        label = local(ts).strftime("%d/%m")
        parts.append(f'<text x="{x(ts) - 12}" y="{height - 2}" font-size="10">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
