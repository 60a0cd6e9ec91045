"""antivirus: each anti-malware product's state, and the PC's verdict.

Windows: Security Center + Defender through one PowerShell call, processes and
services as fallback. Linux: ClamAV. Elsewhere: ``unsupported``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import ClassVar

from agent.antivirus.clamav import clamav_products
from agent.antivirus.model import Product, apply_signature_limit, verdict
from agent.checks.base import BlockingCheck
from agent.checks.options import AntivirusOptions
from agent.wire import Outcome, Sample


def running_names() -> set[str]:
    """Process names, and on Windows service names, for the fallback detection.

    Processes and services come and go while they are listed, and some refuse to be
    read: those are skipped (``psutil.Error`` covers AccessDenied and NoSuchProcess).
    Only Windows' reader asks: psutil is loaded then (agent/machine.py says why not before).
    """
    import psutil

    names: set[str] = set()
    with contextlib.suppress(psutil.Error, OSError):
        for process in psutil.process_iter(["name"]):
            names.add(process.info.get("name") or "")
    if sys.platform == "win32":
        with contextlib.suppress(psutil.Error, OSError):
            for service in psutil.win_service_iter():
                with contextlib.suppress(psutil.Error, OSError):
                    if service.status() == "running":
                        names.add(service.name())
    return {n.lower() for n in names if n}


class AntivirusCheck(BlockingCheck[AntivirusOptions]):
    kind: ClassVar[str] = "antivirus"
    default_interval = 600.0
    default_timeout = 90.0

    def source(self) -> str:
        if self.options.source != "auto":
            return self.options.source
        if sys.platform == "win32":
            return "windows"
        if sys.platform.startswith("linux"):
            return "clamav"
        return "unsupported"

    def powershell(self) -> str:
        from agent.antivirus.windows import windows_powershell

        return self.options.powershell or windows_powershell(os.environ, sys.maxsize <= 2**32)

    def collect(self) -> list[Sample]:
        now = self.clock()
        source = self.source()
        if source == "unsupported":
            return [
                self.sample(
                    "unsupported",
                    ts=now,
                    fields={"verdict": "unknown"},
                    error=f"no anti-malware reader for {sys.platform}",
                )
            ]
        if source == "clamav":
            products = clamav_products(
                self.options.clamd_socket,
                self.options.clamav_db_dir,
                now,
                timeout=min(10.0, self.timeout),
            )
            return self._report(now, "ok", products, "", source)
        return self._collect_windows(now)

    def _collect_windows(self, now: float) -> list[Sample]:
        # The Windows reader is loaded on Windows only (or with source = "windows").
        from agent.antivirus.windows import (
            POWERSHELL_SCRIPT,
            BadReport,
            parse_report,
            products_from_report,
        )

        # PowerShell gets most of the check's time; what is left parses and reports.
        budget = max(1.0, self.timeout - 5.0)
        try:
            output = run_powershell(self.powershell(), POWERSHELL_SCRIPT, budget)
        except TimeoutError:
            return self._report(
                now, "timeout", [], f"PowerShell gave no answer in {budget:g}s", "windows"
            )
        except OSError as exc:
            return self._report(
                now, "error", [], f"cannot run {self.powershell()}: {exc}", "windows"
            )
        try:
            report = parse_report(output)
        except BadReport as exc:
            return self._report(now, "bad_response", [], str(exc), "windows")
        names: set[str] = set() if report.security_center else running_names()
        products = products_from_report(report, names)
        note = ""
        if report.security_center is None:
            where = "Windows Server" if report.is_server else report.os_caption or "this Windows"
            note = f"no Security Center on {where} ({report.security_center_error[:160]})"
        return self._report(now, "ok", products, note, "windows")

    def _report(
        self, now: float, outcome: Outcome, products: list[Product], error: str, source: str
    ) -> list[Sample]:
        limit = float(self.options.max_signature_age) / 86400.0
        products = [apply_signature_limit(p, limit) for p in products]
        pc_verdict = verdict(products) if outcome == "ok" else "unknown"
        samples = [
            self.sample(
                outcome,
                ts=now,
                fields={
                    "verdict": pc_verdict,
                    "protected": pc_verdict == "protected",
                    "products": len(products),
                    "products_on": sum(1 for p in products if p.state == "on"),
                },
                tags={"source": source},
                error=error,
            )
        ]
        samples.extend(
            self.sample(
                "ok",
                ts=now,
                item="product",
                target=p.name,
                fields={
                    "state": p.state,
                    "enabled": p.enabled,
                    "up_to_date": p.up_to_date,
                    "realtime": p.realtime,
                    "signature_age_days": p.signature_age_days,
                    "last_scan_age_days": p.last_scan_age_days,
                    "product_state": p.product_state,
                    "version": p.version or None,
                    "detail": p.detail or None,
                },
                tags={"source": p.source},
            )
            for p in products
        )
        return samples


def run_powershell(executable: str, script: str, timeout: float) -> str:
    """Run the script and return what it printed; TimeoutError kills the process."""
    import subprocess  # Windows' reader only

    from agent.antivirus.windows import decode_output, oem_codec

    process = subprocess.Popen(
        [
            executable,
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-Command",
            script,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Its own process group, so a hang is ended with everything it started.
        start_new_session=sys.platform != "win32",
    )
    with process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if sys.platform == "win32":
                    process.kill()
                else:
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()  # not its pipes: what it started may hold them open
            raise TimeoutError(f"no answer within {timeout:g}s") from None
    text = decode_output(stdout, oem_codec()).strip()
    if not text and stderr:
        return decode_output(stderr, oem_codec()).strip()
    return text
