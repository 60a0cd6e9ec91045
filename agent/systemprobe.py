"""One bounded look at a shared system: an HTTP(S) GET as a browser's first request sees
it, or a TCP connect for a system with no HTTP face.

Everything a server sends is bounded twice: by the whole request's deadline (a
slowloris, a body that never ends) and by read caps (headers, body), so a hostile or
broken server costs at most the timeout and a few hundred KiB. Redirects are not
followed: a 302 to a login page is the answer, for the check to judge. The peer's
certificate is read even when it is not verified (its days left are data either
way); when verification fails it is read again over an unverified handshake, so an
expired certificate is told apart from an untrusted one.

Nothing here raises for a target's failure: it is described in the result.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote, urlsplit

#: The body is read this far (the expected text must appear in it), then dropped.
MAX_BODY = 256 * 1024
#: The status line and headers together; a line alone at most the reader's limit.
MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
LINE_LIMIT = 16 * 1024
#: Informational answers (100 Continue, 103 Early Hints) skipped before the real one.
MAX_INTERIM = 4
#: How long a finished exchange may take to close politely before it is cut.
CLOSE_GRACE_S = 1.0

_STATUS_LINE = re.compile(rb"HTTP/[0-9.]{1,5} +([0-9]{3})(?:[ \t][^\r\n]*)?\r?\n")
_ERRNO = re.compile(r"\[Errno (\d+)\]")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(?:;[^\r\n]*)?\r?\n")

Failure = Literal["", "dns", "refused", "timeout", "unreachable", "tls", "certificate", "protocol"]
"""Why the look failed: the first five mean no usable connection (the system is down
from here); ``certificate`` and ``protocol`` mean it answered, wrongly."""


class ProtocolError(Exception):
    """The server's answer is not HTTP as a client can read it."""


@dataclass
class Look:
    """What one look found; filled as it goes, so a timeout still tells how far it got."""

    failure: Failure = ""
    detail: str = ""
    """The failure in words (without the target, which the sample carries)."""
    connect_s: float | None = None
    """Start to connection established (name resolution and TLS handshake included)."""
    ttfb_s: float | None = None
    """Start to the answer's first byte."""
    total_s: float | None = None
    """Start to the end of the body (or of what was read of it)."""
    status: int | None = None
    location: str = ""
    """Where a redirect points."""
    cert_not_after: float | None = None
    """The peer certificate's notAfter, Unix seconds (HTTPS only)."""
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False
    """The body went on beyond MAX_BODY."""


async def fetch_page(url: str, timeout: float, verify_tls: bool = True) -> Look:
    """GET ``url`` once, within ``timeout`` seconds for everything."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    look = Look()
    started = time.perf_counter()
    answered: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            answered = await _exchange(
                look, parts.geturl(), host, port, secure, verify_tls, started
            )
    except TimeoutError:
        look.failure, look.detail = "timeout", _timeout_detail(look, timeout)
    if answered is not None:  # closed outside the deadline: the answer is in already
        await _close(answered)
    return look


async def connect(host: str, port: int, timeout: float) -> Look:
    """Open a TCP connection and close it: the system listens, and how soon."""
    look = Look()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            opened = await _open(look, host, port, None, None)
    except TimeoutError:
        look.failure, look.detail = "timeout", f"timed out after {timeout:g} s (no connection)"
        return look
    if opened is not None:
        look.connect_s = time.perf_counter() - started
        _abort(opened[1])
    return look


def tls_context(verify: bool) -> ssl.SSLContext:
    """The system's CAs and host name checked, or nothing checked (the certificate is
    still received and read)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _open(
    look: Look, host: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection, or None with the look's failure said."""
    try:
        return await asyncio.open_connection(
            host, port, ssl=context, server_hostname=server_hostname, limit=LINE_LIMIT
        )
    except socket.gaierror as exc:
        look.failure, look.detail = "dns", _dns_detail(host, exc)
    except ConnectionRefusedError:
        look.failure, look.detail = "refused", f"{_hostport(host, port)} refused the connection"
    except ssl.SSLCertVerificationError as exc:
        look.failure = "certificate"
        look.detail = exc.verify_message or str(exc.reason or exc)
    except ssl.SSLError as exc:
        look.failure, look.detail = "tls", f"TLS handshake failed: {exc.reason or exc}"
        if exc.reason == "WRONG_VERSION_NUMBER":
            look.detail += " (no TLS on this port: http:// rather than https://?)"
    except OSError as exc:
        if _all_refused(exc):
            look.failure, look.detail = "refused", f"{_hostport(host, port)} refused the connection"
        else:
            look.failure = "unreachable"
            look.detail = f"cannot connect to {_hostport(host, port)}: {exc.strerror or exc}"
    return None


def _all_refused(exc: OSError) -> bool:
    """A name with several addresses (IPv6 and IPv4) all refusing: asyncio says so in one
    OSError listing each attempt's ("Multiple exceptions: [Errno 111] ...")."""
    codes = _ERRNO.findall(str(exc))
    return bool(codes) and all(int(code) == errno.ECONNREFUSED for code in codes)


async def _exchange(
    look: Look, url: str, host: str, port: int, secure: bool, verify: bool, started: float
) -> asyncio.StreamWriter | None:
    """The request and its answer into ``look``; the connection to close politely when
    the answer came whole (any other ending cuts it at once)."""
    context = tls_context(verify) if secure else None
    opened = await _open(look, host, port, context, host if secure else None)
    if opened is None:
        if look.failure == "certificate":
            look.cert_not_after = await _unverified_not_after(host, port)
        return None
    reader, writer = opened
    look.connect_s = time.perf_counter() - started
    finished = False
    try:
        if secure:
            look.cert_not_after = _not_after(writer.get_extra_info("ssl_object"))
        writer.write(_request(url))
        await writer.drain()
        await _read_answer(look, reader, started)
        look.total_s = time.perf_counter() - started
        finished = True
    except ProtocolError as exc:
        look.failure, look.detail = "protocol", str(exc)
    except ssl.SSLError as exc:
        look.failure, look.detail = "tls", f"TLS failed during the answer: {exc.reason or exc}"
    except OSError as exc:
        look.failure = "unreachable"
        look.detail = f"the connection broke during the answer: {exc.strerror or exc}"
    finally:
        if not finished:
            _abort(writer)
    return writer if finished else None


def _request(url: str) -> bytes:
    parts = urlsplit(url)
    # A path written in Vietnamese is sent percent-encoded, as a browser sends it.
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    host = (parts.hostname or "").encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host += f":{parts.port}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: commune-agent\r\nAccept: text/html,*/*\r\n"
        # A compressed body could not be searched for the expected text.
        "Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


async def _read_answer(look: Look, reader: asyncio.StreamReader, started: float) -> None:
    for _ in range(MAX_INTERIM + 1):
        first = await reader.read(1)
        if look.ttfb_s is None:
            look.ttfb_s = time.perf_counter() - started
        if not first:
            raise ProtocolError("the server closed the connection without answering")
        status_line = first + await _line(reader)
        matched = _STATUS_LINE.fullmatch(status_line)
        if matched is None:
            raise ProtocolError(f"not an HTTP answer: {status_line[:60]!r}")
        status = int(matched.group(1))
        headers = await _headers(reader, len(status_line))
        if 100 <= status < 200 and status != 101:
            continue
        look.status = status
        look.location = headers.get("location", "")[:300]
        if status in (101, 204, 304):
            return
        await _read_body(look, reader, headers)
        return
    raise ProtocolError(f"more than {MAX_INTERIM} informational answers")


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readline()
    except ValueError:  # no end of line within the reader's limit
        raise ProtocolError(f"a header line longer than {LINE_LIMIT // 1024} KiB") from None


async def _headers(reader: asyncio.StreamReader, used: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = await _line(reader)
        used += len(line)
        if used > MAX_HEAD:
            raise ProtocolError(f"more than {MAX_HEAD // 1024} KiB of headers")
        if line in (b"\r\n", b"\n"):
            return headers
        if not line:
            raise ProtocolError("the answer ended within its headers")
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    raise ProtocolError(f"more than {MAX_HEADERS} headers")


async def _read_body(look: Look, reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        await _read_chunked(look, reader)
        return
    length = headers.get("content-length", "")
    expected = int(length) if length.isascii() and length.isdigit() else None
    if expected is not None and expected > MAX_BODY:
        look.truncated = True  # a huge Content-Length is believed only as far as the cap
    if expected is not None:
        await _read_up_to(look, reader, min(expected, MAX_BODY))
        return
    # Without a length the body ends when the server closes: one byte more tells a
    # body of exactly the cap from a longer one.
    await _read_up_to(look, reader, MAX_BODY + 1)
    if len(look.body) > MAX_BODY:
        del look.body[MAX_BODY:]
        look.truncated = True


async def _read_up_to(look: Look, reader: asyncio.StreamReader, limit: int) -> None:
    """Append to the body until it holds ``limit`` bytes or the server stops sending."""
    while len(look.body) < limit:
        chunk = await reader.read(min(64 * 1024, limit - len(look.body)))
        if not chunk:
            return
        look.body += chunk


async def _read_chunked(look: Look, reader: asyncio.StreamReader) -> None:
    while len(look.body) < MAX_BODY:
        size_line = await _line(reader)
        if not size_line:
            return  # closed without the last chunk: keep what came
        matched = _CHUNK_SIZE.fullmatch(size_line)
        if matched is None:
            raise ProtocolError(f"bad chunked encoding: {size_line[:40]!r}")
        size = int(matched.group(1), 16)
        if size == 0:
            return
        wanted = len(look.body) + size
        await _read_up_to(look, reader, min(wanted, MAX_BODY))
        if len(look.body) < wanted:
            look.truncated = len(look.body) >= MAX_BODY
            return
        await _line(reader)  # the chunk's CRLF
    look.truncated = True


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close politely (TLS close_notify), but never wait on the server for long."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except (OSError, ssl.SSLError, TimeoutError):
        _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


async def _unverified_not_after(host: str, port: int) -> float | None:
    """The certificate a server presents, read over a handshake that checks nothing."""
    probe = Look()
    opened = await _open(probe, host, port, tls_context(False), host)
    if opened is None:
        return None
    _abort(opened[1])
    return _not_after(opened[1].get_extra_info("ssl_object"))


def _not_after(ssl_object: object) -> float | None:
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    # Only HTTPS systems need it (a commune's poller, not its PCs): the standard library
    # gives no notAfter of an unverified certificate.
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def _dns_detail(host: str, exc: socket.gaierror) -> str:
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
        return f"DNS: no such name {host}"
    return f"DNS: cannot resolve {host} ({exc.strerror or exc})"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _timeout_detail(look: Look, timeout: float) -> str:
    waited = f"timed out after {timeout:g} s"
    if look.status is not None:
        return (
            f"{waited}: answered {look.status} but the page was still arriving "
            f"({len(look.body)} bytes read)"
        )
    if look.ttfb_s is not None:
        return f"{waited}: the answer's headers were still arriving"
    if look.connect_s is not None:
        return f"{waited}: connected, no answer"
    return f"{waited} (no connection)"
