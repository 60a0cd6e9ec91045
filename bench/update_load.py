"""The agents' side of the update benchmark: many PCs asking what a TUF client asks.

Each simulated agent, when its turn comes, asks what python-tuf's ngclient asks in the
agent's update process (``agent/update/fetch.py``): on one connection kept open (the
urllib3 pool of one refresh), the next root (404 when there is none), the timestamp,
the snapshot and the targets it names, then the bundle. A ``503`` ends that process
as the agent's does: it waits the answer's ``Retry-After`` and runs again on a new
connection, this time with the metadata it already holds (ngclient asks again only
for the next root and the timestamp, whose version has not moved), then the bundle.
A connection refused or cut is retried after a doubling backoff (1 s, at most 10 s).
The bundle is checked against the signed length and SHA-256 before it counts.

Plain HTTP/1.1 over asyncio streams (TLS optional), each agent from its commune's
loopback address (127.1.x.y: a commune's PCs share their router's address, which the
collector's per-address caps count): no client library whose own cost would hide the
server's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

#: An agent gives up after this many runs of its update process (none should).
MAX_ATTEMPTS = 200
MAX_HEAD = 16 * 1024
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 10.0


@dataclass
class Tally:
    """What the agents of one run asked and got."""

    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(metadata or bundle, status) -> requests answered."""
    bytes: int = 0
    """Bytes received: heads and bodies."""
    connections: int = 0
    connection_errors: int = 0
    fetch_s: list[float] = field(default_factory=list)
    """Per agent: from its first request to its bundle verified (503 waits included)."""
    bundle_s: list[float] = field(default_factory=list)
    """Per bundle served: from its request sent to its last byte."""
    got: int = 0
    gave_up: int = 0

    @property
    def busy(self) -> int:
        return sum(n for (_, status), n in self.requests.items() if status == 503)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


class ConnectionLost(Exception):
    """The server closed or cut the connection (or refused it)."""


@dataclass
class Server:
    host: str
    port: int
    prefix: str
    """The path the repository is served under: /releases."""
    tls: ssl.SSLContext | None = None


class Connection:
    """One HTTP/1.1 connection kept open across requests, as urllib3's pool keeps it."""

    def __init__(self, server: Server, source: str, tally: Tally) -> None:
        self.server = server
        self.source = source
        self.tally = tally
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, kind: str) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(
                f"GET {self.server.prefix}{path} HTTP/1.1\r\nHost: localhost\r\n"
                "User-Agent: commune-agent-update\r\nAccept-Encoding: identity\r\n\r\n".encode()
            )
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            status, headers = _parse_head(head)
            body = await self._body(headers)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            await self.close()
            raise ConnectionLost(path) from None
        self.tally.requests[(kind, status)] += 1
        self.tally.bytes += len(head) + len(body)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def _open(self) -> None:
        try:
            self.reader, self.writer = await asyncio.open_connection(
                self.server.host, self.server.port, ssl=self.server.tls,
                server_hostname="localhost" if self.server.tls else None,
                local_addr=(self.source, 0), limit=MAX_HEAD,
            )  # fmt: skip
        except OSError:
            raise ConnectionLost("connect") from None
        self.tally.connections += 1

    async def _body(self, headers: dict[str, str]) -> bytes:
        assert self.reader is not None
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readuntil(b"\r\n")
            return b"".join(parts)
        body = await self.reader.read()
        await self.close()
        return body

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is None:
            return
        writer.close()
        # A reset or a TLS close cut short at this point is not the benchmark's concern.
        try:  # noqa: SIM105
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


@dataclass
class Held:
    """The metadata an agent's TUF folder holds after a refresh."""

    targets: dict[str, object] | None = None


async def _refresh(connection: Connection, root_version: int, held: Held) -> None:
    """What ngclient asks in ``Updater.refresh()``; raises ConnectionLost, or
    RuntimeError for an answer no agent would accept."""
    status, _, _ = await connection.get(f"/metadata/{root_version + 1}.root.json", "metadata")
    if status != 404:
        raise RuntimeError(f"next root: HTTP {status}")
    status, _, body = await connection.get("/metadata/timestamp.json", "metadata")
    if status != 200:
        raise RuntimeError(f"timestamp: HTTP {status}")
    if held.targets is not None:
        return  # the same timestamp: snapshot and targets are the ones held
    meta = json.loads(body)["signed"]["meta"]
    status, _, body = await connection.get(
        f"/metadata/{meta['snapshot.json']['version']}.snapshot.json", "metadata"
    )
    if status != 200:
        raise RuntimeError(f"snapshot: HTTP {status}")
    meta = json.loads(body)["signed"]["meta"]
    status, _, body = await connection.get(
        f"/metadata/{meta['targets.json']['version']}.targets.json", "metadata"
    )
    if status != 200:
        raise RuntimeError(f"targets: HTTP {status}")
    held.targets = json.loads(body)["signed"]["targets"]


async def update(server: Server, source: str, root_version: int, target: str, tally: Tally) -> bool:
    """One agent's update process, run again until its bundle is in hand: True when it
    got the signed bytes."""
    started = time.monotonic()
    held = Held()
    failures = 0
    for _ in range(MAX_ATTEMPTS):
        connection = Connection(server, source, tally)
        wait = 0.0
        try:
            await _refresh(connection, root_version, held)
            assert held.targets is not None
            info = held.targets[target]
            assert isinstance(info, dict)
            digest = info["hashes"]["sha256"]
            asked = time.monotonic()
            status, headers, body = await connection.get(f"/targets/{digest}.{target}", "bundle")
            if status == 200:
                tally.bundle_s.append(time.monotonic() - asked)
                if len(body) != info["length"] or hashlib.sha256(body).hexdigest() != digest:
                    raise RuntimeError("the bundle is not the signed one")
                tally.fetch_s.append(time.monotonic() - started)
                tally.got += 1
                return True
            if status != 503:
                raise RuntimeError(f"bundle: HTTP {status}")
            wait = float(headers.get("retry-after", "60"))
            failures = 0
        except ConnectionLost:
            tally.connection_errors += 1
            failures += 1
            wait = min(BACKOFF_MIN_S * 2 ** (failures - 1), BACKOFF_MAX_S)
        finally:
            await connection.close()
        await asyncio.sleep(wait)
    tally.gave_up += 1
    return False
