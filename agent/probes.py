"""Single network probes: ICMP echo, TCP connect, HTTP(S) GET.

Each returns a result and never raises: a target that does not answer is data. They
are plain blocking socket calls, each bounded by its timeout, on the run's own thread
(agent/scheduler.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

import msgspec

from agent.deadline import recv_before
from agent.wire import Outcome

# An HTTP status code: three ASCII digits (str.isdigit() also accepts "²").
_STATUS = re.compile(r"[0-9]{3}")


class ProbeResult(msgspec.Struct, frozen=True):
    """One probe of a target: its outcome and, when it answered, how fast."""

    outcome: Outcome
    rtt_s: float | None = None
    error: str = ""
    status_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class IcmpUnsupported(Exception):
    """This process may not send ICMP (no unprivileged ICMP sockets, no CAP_NET_RAW)."""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, family: int) -> bytes:
    kind = 8 if family == socket.AF_INET else 128
    payload = b"commune-agent" + struct.pack("!d", time.time())
    header = struct.pack("!BBHHH", kind, 0, 0, identifier & 0xFFFF, sequence & 0xFFFF)
    # The kernel computes ICMPv6 checksums itself; for IPv4 we must.
    checksum = _checksum(header + payload) if family == socket.AF_INET else 0
    return (
        struct.pack("!BBHHH", kind, 0, checksum, identifier & 0xFFFF, sequence & 0xFFFF) + payload
    )


def parse_echo_reply(packet: bytes, family: int) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply, or None for anything else."""
    if family == socket.AF_INET and len(packet) >= 20 and packet[0] >> 4 == 4:
        packet = packet[(packet[0] & 0x0F) * 4 :]  # raw sockets include the IP header
    if len(packet) < 8:
        return None
    kind, _code, _sum, identifier, sequence = struct.unpack("!BBHHH", packet[:8])
    if kind != (0 if family == socket.AF_INET else 129):
        return None
    return int(identifier), int(sequence)


def open_icmp_socket(family: int) -> socket.socket:
    protocol = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    # Windows has no unprivileged ICMP sockets; a service running as LocalSystem may use raw.
    kinds = (socket.SOCK_RAW,) if sys.platform == "win32" else (socket.SOCK_DGRAM, socket.SOCK_RAW)
    last: OSError | None = None
    for kind in kinds:
        try:
            sock = socket.socket(family, kind, protocol)
        except OSError as exc:
            last = exc
            continue
        return sock
    reason = os.strerror(last.errno) if last and last.errno else str(last)
    raise IcmpUnsupported(f"ICMP not permitted ({reason}): {icmp_remedy(sys.platform)}")


def icmp_remedy(platform: str) -> str:
    """What a technician can do about it, on this system."""
    if platform == "win32":
        return (
            "raw ICMP sockets need administrator rights: run the agent as the CommuneAgent "
            'service (LocalSystem), or probe with method = "tcp"'
        )
    return (
        "add this process's group to net.ipv4.ping_group_range or grant CAP_NET_RAW "
        '(the systemd unit does), or probe with method = "tcp"'
    )


def resolve(host: str, port: int = 0) -> tuple[int, str]:
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host)
            return int(family), host  # an address needs no lookup
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _type, _proto, _name, address = infos[0]
    return int(family), str(address[0])


def icmp_probe(
    sock: socket.socket, family: int, address: str, identifier: int, sequence: int, timeout: float
) -> ProbeResult:
    """One echo. Datagram sockets get only their own replies (the kernel sets the
    identifier); raw sockets see every ICMP packet, so replies are matched on it."""
    raw = sock.type == socket.SOCK_RAW
    started = time.perf_counter()
    try:
        sock.settimeout(timeout)
        sock.sendto(echo_request(identifier, sequence, family), (address, 0))
        deadline = started + timeout
        while True:
            packet = recv_before(sock, deadline, 2048)
            reply = parse_echo_reply(packet, family)
            if reply is not None and reply[1] == sequence and (not raw or reply[0] == identifier):
                return ProbeResult("ok", time.perf_counter() - started)
    except TimeoutError:
        return ProbeResult("timeout", error=f"no echo reply within {timeout:g}s")
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return ProbeResult("down", error=f"unreachable: {exc.strerror}")
        return ProbeResult("down", error=str(exc))


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection within ``timeout`` in all, trying each address of the name."""
    deadline = time.perf_counter() + timeout
    last: OSError | None = None
    for family, kind, protocol, _name, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(remaining)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            last = exc
            continue
        return sock
    raise last or OSError(f"no address for {host}")


def tcp_probe(host: str, port: int, timeout: float) -> ProbeResult:
    started = time.perf_counter()
    try:
        sock = _connect(host, port, timeout)
    except TimeoutError:
        return ProbeResult("timeout", error=f"no TCP answer from {host}:{port} within {timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult(
            "refused", time.perf_counter() - started, error=f"{host}:{port} refused the connection"
        )
    except OSError as exc:
        return ProbeResult("down", error=f"{host}:{port}: {exc.strerror or exc}")
    rtt = time.perf_counter() - started
    sock.close()
    return ProbeResult("ok", rtt)


def http_probe(
    url: str, timeout: float, verify_tls: bool = True, expect_status: tuple[int, ...] = ()
) -> ProbeResult:
    """GET the URL; ok when the status is in ``expect_status`` (default: below 400)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    started = time.perf_counter()
    deadline = started + timeout
    try:
        sock = _connect(host, port, timeout)
        try:
            if secure:
                context = ssl.create_default_context()
                if not verify_tls:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(sock, server_hostname=host)  # the handshake
            sock.settimeout(max(0.001, deadline - time.perf_counter()))
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "User-Agent: commune-agent\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            status_line = _status_line(sock, deadline)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
    except TimeoutError:
        return ProbeResult("timeout", error=f"no HTTP answer from {url} within {timeout:g}s")
    except ConnectionRefusedError:
        return ProbeResult("refused", error=f"{host}:{port} refused the connection")
    except ssl.SSLError as exc:
        return ProbeResult("bad_response", error=f"TLS with {host}: {exc.reason or exc}")
    except OSError as exc:
        return ProbeResult("down", error=f"{url}: {exc.strerror or exc}")
    rtt = time.perf_counter() - started
    fields = status_line.decode("latin-1", "replace").split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not _STATUS.fullmatch(fields[1]):
        return ProbeResult("bad_response", rtt, error=f"not an HTTP answer: {status_line[:60]!r}")
    status = int(fields[1])
    good = status in expect_status if expect_status else status < 400
    if not good:
        return ProbeResult("bad_response", rtt, error=f"HTTP status {status}", status_code=status)
    return ProbeResult("ok", rtt, status_code=status)


#: The longest status line taken (a stream reader's usual limit for a line).
MAX_STATUS_LINE = 64 * 1024


def _status_line(sock: socket.socket, deadline: float) -> bytes:
    """The first line of the answer, with its end of line (what came: the peer closed)."""
    line = b""
    while b"\n" not in line and len(line) < MAX_STATUS_LINE:
        chunk = recv_before(sock, deadline)
        if not chunk:
            return line
        line += chunk
    end = line.find(b"\n")
    return line if end < 0 else line[: end + 1]
