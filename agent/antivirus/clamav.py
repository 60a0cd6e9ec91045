"""ClamAV on Linux: clamd liveness over its socket, signature age from the database header."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import msgspec

from agent.antivirus.model import Product
from agent.deadline import recv_before

DEFAULT_SOCKETS = (
    "/var/run/clamav/clamd.ctl",
    "/run/clamav/clamd.ctl",
    "/var/run/clamd.scan/clamd.sock",
)
DEFAULT_TCP = ("127.0.0.1", 3310)
DEFAULT_DB_DIR = "/var/lib/clamav"
HEADER_BYTES = 512


class DatabaseInfo(msgspec.Struct, frozen=True):
    """The newest daily signature database: its file, version and build time."""

    path: str
    version: int
    build_epoch: float


class ClamdInfo(msgspec.Struct, frozen=True):
    """Whether clamd answered PING, and its engine version when it did."""

    alive: bool
    engine: str = ""
    error: str = ""


def parse_database_header(header: bytes) -> tuple[int, float]:
    """``ClamAV-VDB:<build time>:<version>:<sigs>:<flevel>:<md5>:<dsig>:<builder>:<epoch>``.

    The build time itself contains colons ("24 Nov 2026 09-18 -0500" uses dashes,
    but be safe) so fields are counted from the end: epoch is the last, version
    the seventh from the end.
    """
    text = header[:HEADER_BYTES].decode("ascii", "replace").rstrip(" \x00\r\n")
    if not text.startswith("ClamAV-VDB:"):
        raise ValueError(f"not a ClamAV database header: {text[:40]!r}")
    parts = text.split(":")
    if len(parts) < 9:
        raise ValueError(f"ClamAV header has {len(parts)} fields, expected 9")
    try:
        version = int(parts[-7])
        epoch = float(parts[-1].strip())
    except ValueError:
        raise ValueError(f"ClamAV header fields are not numbers: {text[:120]!r}") from None
    return version, epoch


def newest_daily_database(db_dir: str) -> DatabaseInfo | None:
    """daily.cvd or daily.cld, whichever has the higher version."""
    best: DatabaseInfo | None = None
    for name in ("daily.cvd", "daily.cld"):
        path = Path(db_dir) / name
        try:
            with path.open("rb") as handle:
                version, epoch = parse_database_header(handle.read(HEADER_BYTES))
        except (OSError, ValueError):
            continue
        if best is None or version > best.version:
            best = DatabaseInfo(str(path), version, epoch)
    return best


#: The longest answer taken (PING's and VERSION's are one short line).
MAX_ANSWER = 64 * 1024


class ClamdAnswerError(Exception):
    """clamd closed before the end of its answer, or sent one too long."""


def _clamd_command(address: str, command: bytes, timeout: float) -> bytes:
    """Send ``command`` and read clamd's answer up to its NUL, each step within ``timeout``."""
    if address.startswith("tcp://"):
        host, _, port = address[len("tcp://") :].rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    with sock:
        sock.settimeout(timeout)
        sock.sendall(command)
        deadline = time.perf_counter() + timeout
        answer = b""
        while b"\0" not in answer:
            if len(answer) > MAX_ANSWER:
                raise ClamdAnswerError(f"an answer longer than {MAX_ANSWER} bytes")
            chunk = recv_before(sock, deadline)
            if not chunk:
                raise ClamdAnswerError(f"{len(answer)} bytes, then the connection closed")
            answer += chunk
        return answer[: answer.index(b"\0") + 1]


def candidate_addresses(configured: str) -> list[str]:
    if configured:
        return [configured]
    sockets = [s for s in DEFAULT_SOCKETS if os.path.exists(s)]
    return [*sockets, f"tcp://{DEFAULT_TCP[0]}:{DEFAULT_TCP[1]}"]


def query_clamd(address: str, timeout: float) -> ClamdInfo:
    try:
        pong = _clamd_command(address, b"zPING\0", timeout)
        if pong.rstrip(b"\0").strip() != b"PONG":
            return ClamdInfo(False, error=f"clamd at {address} answered {pong[:40]!r} to PING")
        version = (
            _clamd_command(address, b"zVERSION\0", timeout).rstrip(b"\0").decode("utf-8", "replace")
        )
    except (OSError, ClamdAnswerError) as exc:
        return ClamdInfo(False, error=f"clamd at {address}: {exc or type(exc).__name__}")
    # "ClamAV 1.0.7/27470/Mon Nov 24 09:18:00 2026": engine / daily version / its date
    return ClamdInfo(True, engine=version.partition("/")[0].strip())


def clamav_products(
    configured_socket: str, db_dir: str, now: float, timeout: float
) -> list[Product]:
    """Empty when ClamAV is not installed (neither clamd nor a database)."""
    database = newest_daily_database(db_dir)
    clamd = ClamdInfo(False, error="no clamd socket")
    for address in candidate_addresses(configured_socket):
        clamd = query_clamd(address, timeout)
        if clamd.alive:
            break
    if database is None and not clamd.alive:
        return []
    age = None if database is None else max(0.0, (now - database.build_epoch) / 86400.0)
    return [
        Product(
            name="ClamAV",
            source="clamav",
            # Without clamd nothing scans; a database alone means installed but off.
            state="on" if clamd.alive else "off",
            up_to_date=None if age is None else True,
            signature_age_days=age,
            version=clamd.engine or (f"daily {database.version}" if database else ""),
            detail="" if clamd.alive else clamd.error,
        )
    ]
