"""polycom: readiness for a meeting, over SNMP (snmpsim) and VideoOS REST (a replay server).

Simulated, as no Polycom runs here: SNMP answers come from recordings written
from POLYCOM-ENDPOINT-MIB (tests/data/polycom/README.md); REST answers are
recorded VideoOS JSON served by a local HTTP server that keeps sessions like
the device (login cookie, 403 when the session is gone, logout).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from agent.checks.options import PolycomOptions
from agent.checks.polycom import PolycomCheck
from agent.configtypes import Duration, Secret
from agent.snmp.client import close_engine
from agent.wire import Sample
from tests.servers import SnmpSim, free_port
from tests.tls import Pki

REST = Path(__file__).parent / "data" / "polycom" / "rest"


def snmp_sample(snmpsim: SnmpSim, community: str, **options: object) -> Sample:
    async def go() -> list[Sample]:
        check = PolycomCheck(
            PolycomOptions(
                name="polycom",
                host="127.0.0.1",
                port=snmpsim.port,
                community=Secret(community),
                **options,
            )
        )  # type: ignore[arg-type]
        try:
            return await check.collect()
        finally:
            close_engine()

    samples = asyncio.run(go())
    assert len(samples) == 1
    return samples[0]


def test_idle_registered_group_series_is_ready(snmpsim: SnmpSim) -> None:
    sample = snmp_sample(snmpsim, "polycom-idle")
    assert sample.outcome == "ok", sample.error
    f = sample.fields
    assert (f["up"], f["ready"], f["registered"], f["h323_registered"]) == (1, True, True, True)
    assert "sip_registered" not in f  # SIP disabled: neither registered nor failed
    assert (f["camera_ok"], f["microphone_ok"], f["in_call"], f["active_calls"]) == (
        True,
        True,
        False,
        0,
    )
    assert f["model"] == "RealPresence Group 500"
    assert f["software_version"] == "6.2.2.8-640008"
    assert f["serial"] == "8213440F8B2CCD"
    assert f["uptime_s"] == 86400.0
    assert sample.tags == {"method": "snmp", "family": "group_series"}


def test_in_call_reports_call_quality(snmpsim: SnmpSim) -> None:
    f = snmp_sample(snmpsim, "polycom-incall").fields
    assert (f["ready"], f["in_call"], f["active_calls"], f["active_conferences"]) == (
        True,
        True,
        1,
        1,
    )
    assert (f["loss_rx_percent"], f["loss_tx_percent"]) == (2.0, 1.0)
    assert (f["latency_rx_ms"], f["jitter_rx_ms"]) == (120.0, 15.0)


def test_unregistered_is_not_ready(snmpsim: SnmpSim) -> None:
    f = snmp_sample(snmpsim, "polycom-unregistered").fields
    assert (f["up"], f["ready"], f["registered"]) == (1, False, False)
    assert (f["h323_registered"], f["sip_registered"]) == (False, False)


def test_registered_over_sip_only_is_ready(snmpsim: SnmpSim) -> None:
    f = snmp_sample(snmpsim, "polycom-sip").fields
    assert (f["ready"], f["sip_registered"]) == (True, True)
    assert "h323_registered" not in f


def test_camera_failed_is_not_ready(snmpsim: SnmpSim) -> None:
    f = snmp_sample(snmpsim, "polycom-camera-failed").fields
    assert (f["registered"], f["camera_ok"], f["microphone_ok"], f["ready"]) == (
        True,
        False,
        True,
        False,
    )


def test_hdx_fallback_reads_quality_and_does_not_guess_readiness(snmpsim: SnmpSim) -> None:
    sample = snmp_sample(snmpsim, "polycom-hdx")
    assert sample.outcome == "ok"
    assert sample.tags["family"] == "hdx"
    f = sample.fields
    assert (f["up"], f["packet_loss"], f["jitter_ms"], f["latency_ms"]) == (1, 3.0, 14.0, 95.0)
    assert "ready" not in f and "registered" not in f
    assert "HDX" in sample.error


def test_a_device_that_is_not_a_polycom_is_a_bad_response(snmpsim: SnmpSim) -> None:
    sample = snmp_sample(snmpsim, "not-polycom")
    assert sample.outcome == "bad_response"
    assert "not a Polycom" in sample.error
    assert (sample.fields["up"], sample.fields["ready"]) == (0, False)


def test_unreachable_polycom_is_down_and_not_ready() -> None:
    async def go() -> list[Sample]:
        check = PolycomCheck(
            PolycomOptions(name="p", host="127.0.0.1", port=free_port(), timeout=Duration(2))
        )
        try:
            return await check.collect()
        finally:
            close_engine()

    sample = asyncio.run(go())[0]
    # Nothing listens on that loopback port: the kernel answers "port unreachable".
    assert sample.outcome == "refused"
    assert "no SNMP agent" in sample.error
    assert (sample.fields["up"], sample.fields["ready"]) == (0, False)


@dataclass
class Device:
    """What the replay server saw."""

    status_file: str = "status-ready.json"
    conferences_file: str = "conferences-idle.json"
    expire_after: int = 0
    """Drop the session after this many GETs (0: never), like a device timing it out."""
    logins: int = 0
    logouts: int = 0
    gets: int = 0
    sessions: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)


def replay_server(device: Device) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, status: int, body: object = None, cookie: str = "") -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if cookie:
                self.send_header("Set-Cookie", f"session_id={cookie}; Path=/; HttpOnly")
            self.end_headers()
            self.wfile.write(data)

        def _session(self) -> str:
            cookie = self.headers.get("Cookie", "")
            return cookie.split("=", 1)[1] if cookie.startswith("session_id=") else ""

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body != {"user": "admin", "password": "Polycom-Pass-1"}:
                self._send(401, {"error": "bad credentials"})
                return
            device.logins += 1
            session = f"s{device.logins}"
            device.sessions.add(session)
            self._send(200, {"success": True}, cookie=session)

        def do_GET(self) -> None:
            session = self._session()
            if session not in device.sessions:
                device.refused.append(self.path)
                self._send(403, {"error": "session expired"})
                return
            device.gets += 1
            if device.expire_after and device.gets % device.expire_after == 0:
                device.sessions.discard(session)
            files = {
                "/rest/system": "system.json",
                "/rest/system/status": device.status_file,
                "/rest/conferences": device.conferences_file,
            }
            if self.path not in files:
                self._send(404, {"error": "not found"})
                return
            self._send(200, json.loads((REST / files[self.path]).read_text()))

        def do_DELETE(self) -> None:
            device.sessions.discard(self._session())
            device.logouts += 1
            self._send(204)

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def videoos(tmp_path: Path) -> Iterator[tuple[Device, PolycomOptions]]:
    device = Device()
    server = replay_server(device)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    password = tmp_path / "polycom.password"
    password.write_text("Polycom-Pass-1\n")
    options = PolycomOptions(
        name="studio",
        host="127.0.0.1",
        port=server.server_address[1],
        method="rest",
        scheme="http",
        user="admin",
        password_file=str(password),
    )
    yield device, options
    server.shutdown()
    server.server_close()


def rest_sample(options: PolycomOptions) -> Sample:
    samples = asyncio.run(PolycomCheck(options).collect())
    assert len(samples) == 1
    return samples[0]


def test_rest_ready_and_session_closed(videoos: tuple[Device, PolycomOptions]) -> None:
    device, options = videoos
    sample = rest_sample(options)
    assert sample.outcome == "ok", sample.error
    f = sample.fields
    assert (f["up"], f["ready"], f["registered"], f["camera_ok"], f["microphone_ok"]) == (
        1,
        True,
        True,
        True,
        True,
    )
    assert (f["in_call"], f["active_conferences"]) == (False, 0)
    assert (f["model"], f["serial"], f["uptime_s"]) == ("Studio X50", "8L21304ABC12", 345600.0)
    assert sample.tags == {"method": "rest", "family": "videoos"}
    # One short session per run: logged in once, logged out, nothing left open.
    assert (device.logins, device.logouts, device.sessions) == (1, 1, set())


def test_rest_relogs_in_once_on_403(videoos: tuple[Device, PolycomOptions]) -> None:
    device, options = videoos
    device.expire_after = 1
    sample = rest_sample(options)
    assert sample.outcome == "ok", sample.error
    assert device.logins == 3  # the first login, then one per expired session
    assert device.refused == ["/rest/system/status", "/rest/conferences"]
    assert device.sessions == set()


@pytest.mark.parametrize(
    ("status_file", "conferences_file", "expected"),
    [
        (
            "status-unregistered.json",
            "conferences-idle.json",
            {"ready": False, "registered": False},
        ),
        ("status-camera-down.json", "conferences-idle.json", {"ready": False, "camera_ok": False}),
        (
            "status-ready.json",
            "conferences-active.json",
            {"ready": True, "in_call": True, "active_conferences": 1},
        ),
    ],
)
def test_rest_states(
    videoos: tuple[Device, PolycomOptions],
    status_file: str,
    conferences_file: str,
    expected: dict[str, object],
) -> None:
    device, options = videoos
    device.status_file, device.conferences_file = status_file, conferences_file
    fields = rest_sample(options).fields
    assert {k: fields[k] for k in expected} == expected


def test_rest_wrong_password_is_reported_not_raised(
    videoos: tuple[Device, PolycomOptions], tmp_path: Path
) -> None:
    _device, options = videoos
    wrong = tmp_path / "wrong.password"
    wrong.write_text("nope")
    sample = rest_sample(
        PolycomOptions(
            **{
                **{f: getattr(options, f) for f in options.__struct_fields__},
                "password_file": str(wrong),
            }
        )
    )
    assert sample.outcome == "bad_response"
    assert "login refused" in sample.error
    assert sample.fields["ready"] is False


def test_rest_unreachable_is_refused() -> None:
    options = PolycomOptions(
        name="x",
        host="127.0.0.1",
        port=free_port(),
        method="rest",
        scheme="http",
        user="admin",
        password_file=__file__,
    )
    sample = rest_sample(options)
    assert sample.outcome == "refused"
    assert sample.fields["up"] == 0


@pytest.fixture
def videoos_tls(
    tmp_path: Path, videoos: tuple[Device, PolycomOptions]
) -> Iterator[tuple[PolycomOptions, Pki]]:
    """The same recorded device behind HTTPS, its certificate signed by a CA of the test's."""
    import ssl

    from tests.tls import make_pki

    device, plain = videoos
    pki = make_pki(tmp_path / "pki")
    server = replay_server(device)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = msgspec.structs.replace(plain, scheme="https", port=server.server_address[1])
    yield options, pki
    server.shutdown()
    server.server_close()


def test_rest_with_a_ca_file_verifies_the_device_with_it(
    videoos_tls: tuple[PolycomOptions, Pki],
) -> None:
    options, pki = videoos_tls
    trusted = msgspec.structs.replace(options, ca_file=str(pki.ca))
    assert trusted.verifies_tls
    assert rest_sample(trusted).outcome == "ok"
    # Another CA: the certificate is checked with it, and refused (it was ignored before).
    wrong = msgspec.structs.replace(options, ca_file=str(pki.rogue_ca))
    refused = rest_sample(wrong)
    assert refused.outcome != "ok" and "certificate" in refused.error.lower()
    # Without a CA the self-signed device is read, unverified, as it ships.
    assert not options.verifies_tls and rest_sample(options).outcome == "ok"
    assert "TLS verified with" in PolycomCheck(trusted).describe()
    assert "not verified" in PolycomCheck(options).describe()


def test_rest_refuses_a_ca_file_it_would_ignore() -> None:
    from agent.configtypes import ConfigProblem

    options = PolycomOptions(
        name="studio",
        host="10.0.0.5",
        method="rest",
        user="admin",
        password_file="/etc/commune-agent/polycom.password",
        ca_file="/etc/commune-agent/polycom-ca.pem",
        verify_tls=False,
    )
    with pytest.raises(ConfigProblem, match="verify_tls"):
        options.validate()
