"""polycom: can this commune join a video meeting? Reachable, registered, camera and mic OK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar

from agent.checks.base import AsyncCheck
from agent.checks.options import PolycomOptions
from agent.configtypes import read_secret
from agent.polycom.readiness import EndpointState
from agent.polycom.rest_reader import RestEndpoint, RestError, read_polycom_rest
from agent.polycom.snmp_reader import read_polycom_snmp
from agent.snmp.client import SnmpClient, SnmpError
from agent.wire import Outcome, Sample


class PolycomCheck(AsyncCheck[PolycomOptions]):
    kind: ClassVar[str] = "polycom"
    default_timeout = 20.0

    def __init__(self, options: PolycomOptions, clock: Callable[[], float] = time.time) -> None:
        super().__init__(options, clock)
        self._client: SnmpClient | None = None

    def describe(self) -> str:
        options = self.options
        tls = ""
        if options.method == "rest" and options.scheme == "https":
            tls = (
                f", TLS verified with {options.ca_file or 'the system CAs'}"
                if options.verifies_tls
                else ", TLS not verified (self-signed device; set ca_file to verify)"
            )
        return f"polycom:{self.name} ({options.method} {options.host}{tls})"

    async def collect(self) -> list[Sample]:
        now = self.clock()
        try:
            state = await self._read()
        except (SnmpError, RestError) as exc:
            return [self._sample(now, exc.outcome, EndpointState(reachable=False), str(exc))]
        except (OSError, ValueError) as exc:
            return [
                self._sample(
                    now,
                    "error",
                    EndpointState(reachable=False),
                    f"cannot read {self.options.password_file}: {exc}",
                )
            ]
        return [self._sample(now, "ok", state, "; ".join(state.notes))]

    async def _read(self) -> EndpointState:
        if self.options.method == "snmp":
            if self._client is None:
                self._client = SnmpClient(self.options.snmp_target(self.timeout))
            return await read_polycom_snmp(self._client)
        password = self.options.password.reveal()
        if self.options.password_file:
            password = await asyncio.to_thread(read_secret, self.options.password_file)
        endpoint = RestEndpoint(
            host=self.options.host,
            port=self.options.port or (443 if self.options.scheme == "https" else 80),
            scheme=self.options.scheme,
            user=self.options.user,
            password=password,
            timeout=max(1.0, self.timeout / 4),
            verify_tls=self.options.verifies_tls,
            ca_file=self.options.ca_file,
        )
        return await asyncio.to_thread(read_polycom_rest, endpoint)

    def _sample(self, now: float, outcome: Outcome, state: EndpointState, error: str) -> Sample:
        return self.sample(
            outcome,
            ts=now,
            target=self.options.host,
            fields={
                "up": 1 if state.reachable else 0,
                "ready": state.ready,
                "registered": state.registered,
                "h323_registered": state.h323_registered,
                "sip_registered": state.sip_registered,
                "camera_ok": state.camera_ok,
                "microphone_ok": state.microphone_ok,
                "in_call": state.in_call,
                "active_calls": state.active_calls,
                "active_conferences": state.active_conferences,
                "uptime_s": state.uptime_s,
                "model": state.model or None,
                "software_version": state.software_version or None,
                "serial": state.serial or None,
                **state.call_quality,
            },
            tags={"method": self.options.method, "family": state.family or "unknown"},
            error=error,
        )
