"""The agents' side of the update benchmark: many PCs asking what a TUF client asks.

Each simulated agent, at its start time, asks for what python-tuf's ngclient asks for
in one refresh and one download: the next root (404 when there is none), the
timestamp, the snapshot and the targets it names, then the target file; a 503 is
retried after its ``Retry-After`` (as the agent's update process does), and every
answer's status and size are counted. Plain HTTP/1.1 over asyncio streams, one
connection per request as a PC behind a commune's NAT would open: no client library
whose own cost would hide the server's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    requests: int = 0
    bytes: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retried: int = 0
    failed: int = 0
    download_s: list[float] = field(default_factory=list)
    """Per agent: from its first request to its target in hand."""
    done_at: list[float] = field(default_factory=list)


async def get(host: str, port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            "User-Agent: commune-agent-update\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.read()
        return status, headers, body
    finally:
        writer.close()
        # The server closes first; a reset at this point is not the benchmark's concern.
        try:  # noqa: SIM105
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def fetch(
    host: str, port: int, path: str, tally: Tally, ok: tuple[int, ...] = (200,)
) -> bytes | None:
    """One file, retried after a 503's Retry-After; None if it could not be had."""
    for _ in range(200):
        try:
            status, headers, body = await get(host, port, path)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            tally.failed += 1
            await asyncio.sleep(1.0)
            continue
        tally.requests += 1
        tally.bytes += len(body)
        tally.statuses[status] += 1
        if status == 503:
            tally.retried += 1
            await asyncio.sleep(float(headers.get("retry-after", "1")))
            continue
        return body if status in ok else None
    return None


async def one_agent(
    host: str, port: int, prefix: str, root_version: int, target: str, tally: Tally
) -> bool:
    started = time.monotonic()
    await fetch(host, port, f"{prefix}/metadata/{root_version + 1}.root.json", tally, (404,))
    timestamp = await fetch(host, port, f"{prefix}/metadata/timestamp.json", tally)
    if timestamp is None:
        return False
    snapshot_version = json.loads(timestamp)["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = await fetch(host, port, f"{prefix}/metadata/{snapshot_version}.snapshot.json", tally)
    if snapshot is None:
        return False
    targets_version = json.loads(snapshot)["signed"]["meta"]["targets.json"]["version"]
    targets = await fetch(host, port, f"{prefix}/metadata/{targets_version}.targets.json", tally)
    if targets is None:
        return False
    hashes = json.loads(targets)["signed"]["targets"][target]["hashes"]["sha256"]
    body = await fetch(host, port, f"{prefix}/targets/{hashes}.{target}", tally)
    if body is None:
        return False
    tally.download_s.append(time.monotonic() - started)
    tally.done_at.append(time.monotonic())
    return True


async def agents(
    host: str,
    port: int,
    prefix: str,
    root_version: int,
    target: str,
    start_after_s: list[float],
    tally: Tally,
    max_open: int,
) -> int:
    """Run one agent per entry of ``start_after_s`` (seconds from now); how many got the
    target. At most ``max_open`` requests in flight (the client machine's own bound)."""
    gate = asyncio.Semaphore(max_open)

    async def paced(delay: float) -> bool:
        await asyncio.sleep(delay)
        async with gate:
            return await one_agent(host, port, prefix, root_version, target, tally)

    results = await asyncio.gather(*(paced(delay) for delay in start_after_s))
    return sum(results)
