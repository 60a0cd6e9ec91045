"""system: can this commune use one of the province's shared systems, and how fast.

Each check looks at one system of the collector's catalogue (the one-stop shop,
document management, official email, a commune's website...) the way a user's
browser would: one HTTP(S) GET, redirects not followed, its status, time to first
byte, total time and the certificate's days left, and a text the healthy page
contains (a login or captive page answers 200 too); or a TCP connect for a system
with no HTTP face. One sample per run, named after the catalogue's id, with the
network that reaches the system, so the collector can tell the system's trouble
from the commune's line.

- ``ok``: the answer is the healthy one;
- ``down``: no usable connection (name resolution, refused, timeout, TLS handshake);
- ``bad_response``: it answered, wrongly (status, missing text, certificate expired
  or not trusted, not HTTP).
"""

from __future__ import annotations

import html
import math
import unicodedata
from typing import ClassVar

from agent.checks.base import AsyncCheck
from agent.checks.options import SystemOptions
from agent.systemprobe import MAX_BODY, Look, connect, fetch_page
from agent.wire import FieldValue, Outcome, Sample

DEFAULT_TIMEOUT_S = 10.0
#: Beyond the request's own timeout: closing, and the scheduler's margin.
RUN_MARGIN_S = 5.0
DAY_S = 86400.0

_DOWN = frozenset({"dns", "refused", "timeout", "unreachable", "tls"})


class SystemCheck(AsyncCheck[SystemOptions]):
    kind: ClassVar[str] = "system"

    @property
    def request_timeout(self) -> float:
        return float(self.options.timeout) if self.options.timeout else DEFAULT_TIMEOUT_S

    @property
    def timeout(self) -> float:
        # "timeout" in a system table is the request's; the run may close politely after.
        return self.request_timeout + RUN_MARGIN_S

    @property
    def target(self) -> str:
        options = self.options
        if options.url:
            return options.url
        host = f"[{options.host}]" if ":" in options.host else options.host
        return f"{host}:{options.port}"

    def describe(self) -> str:
        return f"system:{self.name} ({self.target}, {self.options.network})"

    async def collect(self) -> list[Sample]:
        now = self.clock()
        options = self.options
        if options.url:
            look = await fetch_page(options.url, self.request_timeout, options.verify_tls)
        else:
            look = await connect(options.host, options.port, self.request_timeout)
        outcome, error = judge(look, options, now)
        return [
            self.sample(
                outcome,
                ts=now,
                target=self.target,
                fields=measured(look, outcome, now, http=bool(options.url)),
                tags=self._tags(),
                error=error,
            )
        ]

    def _tags(self) -> dict[str, str]:
        tags: dict[str, str] = {"network": self.options.network}
        if self.options.system:
            tags["system"] = self.options.system
        if self.options.kind:
            tags["kind"] = self.options.kind
        return tags


def judge(look: Look, options: SystemOptions, now: float) -> tuple[Outcome, str]:
    """The outcome of a look, and why it is not ok in words a technician acts on."""
    days = cert_days(look, now)
    if look.failure in _DOWN:
        return "down", look.detail
    if look.failure == "certificate":
        if days is not None and days < 0:
            return "bad_response", f"certificate {_expired(days)}"
        return "bad_response", f"certificate not trusted: {look.detail}"
    if look.failure:
        return "bad_response", look.detail
    if look.status is None:  # a TCP system: connected
        return "ok", ""
    if not _expected_status(look.status, options.expect_status):
        return "bad_response", _status_error(look, options.expect_status)
    if days is not None and days < 0:  # not verified, but a browser would say the same
        return "bad_response", f"certificate {_expired(days)}"
    if options.expect_text and not contains(look.body, options.expect_text):
        within = f" (its first {MAX_BODY // 1024} KiB)" if look.truncated else ""
        return "bad_response", (
            f"answered {look.status} but {options.expect_text!r} not in the page{within} "
            "(a login or captive page?)"
        )
    return "ok", ""


def measured(
    look: Look, outcome: Outcome, now: float, *, http: bool
) -> dict[str, FieldValue | None]:
    """The sample's fields: ``up`` always, the rest as far as the look got."""
    fields: dict[str, FieldValue | None] = {
        "up": outcome == "ok",
        "status": look.status,
        "connect_ms": _ms(look.connect_s),
        "cert_days": _rounded(cert_days(look, now)),
    }
    if http:
        fields |= {
            "ttfb_ms": _ms(look.ttfb_s),
            "total_ms": _ms(look.total_s),
            "bytes": len(look.body) if look.status is not None else None,
        }
    return fields


def contains(body: bytes | bytearray, text: str) -> bool:
    """Whether the page holds the text as a browser shows it: however its Vietnamese
    letters were composed (precomposed "ị" or "i" with a combining dot) or written
    (``&#7883;``), its spaces and line breaks collapsed."""
    wanted = _shown(text)
    page = bytes(body).decode("utf-8", "replace")
    return wanted in _shown(page) or wanted in _shown(html.unescape(page))


def _shown(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def cert_days(look: Look, now: float) -> float | None:
    if look.cert_not_after is None:
        return None
    return (look.cert_not_after - now) / DAY_S


def _expected_status(status: int, expected: list[int]) -> bool:
    return status in expected if expected else 200 <= status < 400


def _status_error(look: Look, expected: list[int]) -> str:
    wanted = " or ".join(str(s) for s in expected) if expected else "2xx or 3xx"
    to = f" to {look.location}" if look.location and 300 <= (look.status or 0) < 400 else ""
    return f"answered {look.status}{to}, expected {wanted}"


def _expired(days: float) -> str:
    ago = math.floor(-days)
    if ago < 1:
        return "expired today"
    return f"expired {ago} day{'s' if ago > 1 else ''} ago"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _rounded(days: float | None) -> float | None:
    return None if days is None else round(days, 2)
