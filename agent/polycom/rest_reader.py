"""Poly VideoOS REST (Studio X, G7500): log in, read, log out — no session is held open.

Long-lived REST sessions are reported to lock these devices up, so every run
opens its own short session, re-logs in once if the device answers 403 (the
session expired), and always logs out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any

from agent.polycom.readiness import EndpointState
from agent.wire import Outcome

GOOD_STATES = frozenset({"up", "all_up", "ok", "registered"})
BAD_STATES = frozenset({"down", "all_down", "some_down", "failed", "error", "off", "unregistered"})


class RestError(Exception):
    """The device did not answer usefully; ``outcome`` says how."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome


@dataclass(frozen=True)
class RestEndpoint:
    """Where and how to reach a Poly VideoOS endpoint's REST API."""

    host: str
    port: int
    scheme: str
    user: str
    password: str
    timeout: float
    verify_tls: bool
    ca_file: str = ""


class VideoOsSession:
    def __init__(self, endpoint: RestEndpoint) -> None:
        self.endpoint = endpoint
        self.cookie = ""

    def _connection(self) -> http.client.HTTPConnection:
        e = self.endpoint
        if e.scheme == "http":
            return http.client.HTTPConnection(e.host, e.port, timeout=e.timeout)
        context = ssl.create_default_context(cafile=e.ca_file or None)
        if not e.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(e.host, e.port, timeout=e.timeout, context=context)

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        connection = self._connection()
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            payload = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read(1_000_000)
            set_cookie = response.getheader("Set-Cookie")
            if set_cookie:
                self.cookie = set_cookie.split(";", 1)[0]
            status = response.status
        except TimeoutError:
            raise RestError("timeout", f"{self.endpoint.host}: no answer to {path}") from None
        except ConnectionRefusedError:
            raise RestError("refused", f"{self.endpoint.host}: connection refused") from None
        except ssl.SSLError as exc:
            raise RestError("bad_response", f"{self.endpoint.host}: TLS: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise RestError("down", f"{self.endpoint.host}: {exc}") from None
        finally:
            connection.close()
        if not data:
            return status, None
        try:
            return status, json.loads(data)
        except json.JSONDecodeError:
            if status >= 400:
                return status, None
            raise RestError("bad_response", f"{path} answered non-JSON: {data[:80]!r}") from None

    def login(self) -> None:
        self.cookie = ""
        status, _ = self._request(
            "POST",
            "/rest/current/session",
            {"user": self.endpoint.user, "password": self.endpoint.password},
        )
        if status in (401, 403):
            raise RestError("bad_response", f"{self.endpoint.host}: login refused (HTTP {status})")
        if status >= 400:
            raise RestError("bad_response", f"{self.endpoint.host}: login answered HTTP {status}")

    def get(self, path: str) -> Any:
        status, body = self._request("GET", path)
        if status == 403:  # the session expired between requests: log in again, once
            self.login()
            status, body = self._request("GET", path)
        if status >= 400:
            raise RestError("bad_response", f"{path} answered HTTP {status}")
        return body

    def logout(self) -> None:
        if self.cookie:
            # The device may already have dropped it; nothing is held on our side.
            with contextlib.suppress(RestError):
                self._request("DELETE", "/rest/current/session")
            self.cookie = ""


def _states(status_list: Any) -> dict[str, list[str]]:
    if not isinstance(status_list, list):
        raise RestError("bad_response", "/rest/system/status is not a list")
    states: dict[str, list[str]] = {}
    for entry in status_list:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            raw = entry.get("stateList")
            states[entry["name"]] = [str(s).lower() for s in raw] if isinstance(raw, list) else []
    return states


def _flag(states: dict[str, list[str]], name: str) -> bool | None:
    values = states.get(name)
    if not values:
        return None
    if any(v in BAD_STATES for v in values):
        return False
    if all(v in GOOD_STATES for v in values):
        return True
    return None


def read_polycom_rest(endpoint: RestEndpoint) -> EndpointState:
    """Blocking: run it in a worker thread."""
    session = VideoOsSession(endpoint)
    session.login()
    try:
        system = session.get("/rest/system")
        states = _states(session.get("/rest/system/status"))
        conferences = session.get("/rest/conferences")
    finally:
        session.logout()
    if not isinstance(system, dict):
        raise RestError("bad_response", "/rest/system is not an object")
    uptime = system.get("uptime")
    return EndpointState(
        reachable=True,
        family="videoos",
        model=str(system.get("model") or ""),
        software_version=str(system.get("softwareVersion") or ""),
        serial=str(system.get("serialNumber") or ""),
        uptime_s=float(uptime) if isinstance(uptime, int | float) else None,
        h323_registered=_flag(states, "system.status.gatekeeper"),
        sip_registered=_flag(states, "system.status.sipserver"),
        camera_ok=_flag(states, "system.status.mr.camera"),
        microphone_ok=_flag(states, "system.status.mr.audio"),
        active_conferences=len(conferences) if isinstance(conferences, list) else None,
    )
