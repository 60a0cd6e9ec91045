"""link: is the dedicated line (TSLCD), the Internet or the LAN reachable, with RTT and loss.

Each check probes one target ``count`` times by ICMP echo, TCP connect or HTTP(S)
GET. The ``network`` tag keeps TSLCD, Internet and LAN apart so an outage of one
is not mistaken for another. A probe this process may not send (ICMP without
permission) reports ``unsupported``, never "down".
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from typing import ClassVar

from agent.checks.base import BlockingCheck
from agent.checks.options import LinkOptions
from agent.probes import (
    IcmpUnsupported,
    ProbeResult,
    http_probe,
    icmp_probe,
    open_icmp_socket,
    resolve,
    tcp_probe,
)
from agent.wire import Outcome, Sample

#: Pause between the probes of one run, so a short burst of loss is not one sample.
PROBE_SPACING_S = 0.2


class LinkCheck(BlockingCheck[LinkOptions]):
    kind: ClassVar[str] = "link"
    probe_timeout_default = 2.0

    @property
    def probe_timeout(self) -> float:
        return float(self.options.timeout) if self.options.timeout else self.probe_timeout_default

    @property
    def timeout(self) -> float:
        # "timeout" in a link table is per probe; the run may take count of them.
        return self.options.count * (self.probe_timeout + PROBE_SPACING_S) + 5.0

    @property
    def target(self) -> str:
        return self.options.url if self.options.method == "http" else self.options.target

    def describe(self) -> str:
        return f"link:{self.name} ({self.options.method} {self.target}, {self.options.network})"

    def collect(self) -> list[Sample]:
        now = self.clock()
        try:
            results = self._probe_all()
        except IcmpUnsupported as exc:
            return [self._sample(now, "unsupported", [], str(exc))]
        except OSError as exc:  # name resolution
            return [self._sample(now, "down", [], f"cannot resolve {self.options.target}: {exc}")]
        if any(r.ok for r in results):
            return [self._sample(now, "ok", results, "")]
        last = results[-1]
        return [self._sample(now, last.outcome, results, last.error)]

    def _probe_all(self) -> list[ProbeResult]:
        options = self.options
        timeout = self.probe_timeout
        results: list[ProbeResult] = []
        if options.method == "icmp":
            family, address = resolve(options.target)
            sock = open_icmp_socket(family)
            identifier = random.randrange(1, 0xFFFF)
            try:
                for sequence in range(options.count):
                    if sequence:
                        time.sleep(PROBE_SPACING_S)
                    results.append(
                        icmp_probe(sock, family, address, identifier, sequence + 1, timeout)
                    )
            finally:
                with contextlib.suppress(OSError):
                    sock.close()
            return results
        for attempt in range(options.count):
            if attempt:
                time.sleep(PROBE_SPACING_S)
            if options.method == "tcp":
                results.append(tcp_probe(options.target, options.port, timeout))
            else:
                results.append(
                    http_probe(
                        options.url, timeout, options.verify_tls, tuple(options.expect_status)
                    )
                )
        return results

    def _sample(
        self, now: float, outcome: Outcome, results: list[ProbeResult], error: str
    ) -> Sample:
        rtts = [r.rtt_s * 1000.0 for r in results if r.ok and r.rtt_s is not None]
        sent = len(results)
        received = len(rtts)
        fields: dict[str, float | int | bool | str | None] = {}
        if outcome != "unsupported":
            fields = {
                "up": 1 if received else 0,
                "sent": sent,
                "received": received,
                "loss_percent": 100.0 * (sent - received) / sent if sent else 100.0,
                # A plain mean: statistics.fmean would load statistics and fractions for it.
                "rtt_ms": math.fsum(rtts) / received if rtts else None,
                "rtt_min_ms": min(rtts) if rtts else None,
                "rtt_max_ms": max(rtts) if rtts else None,
                "status_code": next(
                    (r.status_code for r in reversed(results) if r.status_code), None
                ),
            }
        return self.sample(
            outcome,
            ts=now,
            target=self.target,
            fields=fields,
            tags={"network": self.options.network, "method": self.options.method},
            error=error,
        )
