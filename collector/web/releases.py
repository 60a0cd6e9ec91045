"""The release repository, read-only: ``GET /releases/metadata/<file>`` and
``GET /releases/targets/<file>``.

Public like ``/api/v1/config-keys``: everything there is signed, and an agent trusts it
for its signatures, not for where it came from. Names are checked against the two
shapes the repository writes (no traversal, no listing, nothing staged); bundles are
sent by at most ``[releases] max_downloads`` at once (``max_downloads_per_address`` to
one address), the rest answered ``503`` with a ``Retry-After`` jittered so that 5,000 PCs
told to wait do not come back together.

Files up to ``IN_MEMORY_MAX`` bytes (every metadata file, a bundle of the agent alone)
are read whole and answered by handlers that never leave the event loop: a
``FileResponse`` takes a worker thread for its stat, its open and each 64 KB chunk,
from the pool of 40 that every request shares, and under 5,000 PCs a bundle's chunks
waited behind hundreds of metadata requests while holding its place under the cap;
more PCs were told 503, came back, and asked again (bench/update_bench.py measured
the difference).
"""

from __future__ import annotations

import os
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from collector.web.auth import client_address
from collector.web.metrics import Family

router = APIRouter()

METADATA_NAME: Final = re.compile(
    r"(?:[1-9][0-9]{0,9}\.(?:root|snapshot|targets)|timestamp|root)\.json"
)
TARGET_NAME: Final = re.compile(r"[0-9a-f]{64}\.commune-agent-[0-9]{1,6}(?:\.[0-9]{1,6}){0,3}\.zip")
OUTCOMES: Final = ("served", "busy", "not_found")
#: Larger files are streamed from disk; the memory held is at most this many bytes per
#: bundle under the cap (``max_downloads``).
IN_MEMORY_MAX: Final = 4 * 1024 * 1024
_IMMUTABLE: Final = "public, max-age=31536000, immutable"


@dataclass
class ReleaseFiles:
    """Where the files are, the cap on bundles sent at once, and what was served."""

    path: Path
    max_downloads: int = 20
    retry_after_s: float = 60.0
    max_per_address: int = 4
    """Bundles sent at once to one client address (a commune's PCs share their router's):
    a few slow readers from one place cannot hold every place."""
    jitter: random.Random = field(default_factory=random.Random)
    sending: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    peak: int = 0
    """The most bundles ever sent at once."""
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, address: str = "") -> bool:
        with self._lock:
            if self.sending >= self.max_downloads:
                return False
            if self.by_address[address] >= self.max_per_address:
                return False
            self.sending += 1
            self.by_address[address] += 1
            self.peak = max(self.peak, self.sending)
            return True

    def give_back(self, address: str = "") -> None:
        with self._lock:
            self.sending -= 1
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]

    def count(self, kind: str, outcome: str, size: int = 0) -> None:
        with self._lock:
            self.requests[(kind, outcome)] += 1
            self.bytes_sent += size

    def wait_s(self) -> int:
        """What a busy answer asks for: the base, plus up to as much again."""
        return int(self.retry_after_s + self.jitter.uniform(0, self.retry_after_s)) + 1

    def figures(self) -> list[Family]:
        with self._lock:
            requests, sent, sending = dict(self.requests), self.bytes_sent, self.sending
        family = Family(
            "commune_collector_release_requests_total",
            "counter",
            "Requests for release files by kind (metadata, target) and outcome: served, "
            "busy (over [releases] max_downloads: 503 with Retry-After), not_found.",
        )
        for kind in ("metadata", "target"):
            for outcome in OUTCOMES:
                family.add(requests.get((kind, outcome), 0), kind=kind, outcome=outcome)
        return [
            family,
            Family(
                "commune_collector_release_bytes_sent_total",
                "counter",
                "Bytes of release files (metadata and bundles) served (a bundle counts when its "
                "sending starts).",
            ).add(sent),
            Family(
                "commune_collector_release_downloads_open",
                "gauge",
                "Bundles being sent now (at most [releases] max_downloads).",
            ).add(sending),
        ]


class _CappedFile(FileResponse):
    """A large bundle whose place under the cap is given back once sent (or abandoned)."""

    def __init__(self, path: Path, files: ReleaseFiles, size: int, address: str) -> None:
        super().__init__(path, media_type="application/zip", stat_result=os.stat(path))
        self.files = files
        self.size = size
        self.address = address
        self.headers["Cache-Control"] = _IMMUTABLE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.files.give_back(self.address)


class _CappedBytes(Response):
    """A bundle read whole, its place under the cap given back once sent (or abandoned)."""

    def __init__(self, body: bytes, files: ReleaseFiles, address: str) -> None:
        super().__init__(body, media_type="application/zip", headers={"Cache-Control": _IMMUTABLE})
        self.files = files
        self.size = len(body)
        self.address = address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.files.give_back(self.address)


def _files(request: Request) -> ReleaseFiles:
    files: ReleaseFiles | None = getattr(request.app.state, "releases", None)
    if files is None or not (files.path / "metadata" / "1.root.json").is_file():
        raise HTTPException(404, "no release repository on this collector")
    return files


def _small(path: Path) -> bytes | None:
    """The file whole if it is at most IN_MEMORY_MAX bytes (None: larger, stream it).
    A read from the page cache: short enough to do on the event loop."""
    with path.open("rb") as file:
        body = file.read(IN_MEMORY_MAX + 1)
    return body if len(body) <= IN_MEMORY_MAX else None


@router.get("/releases/metadata/{name}", tags=["releases"], include_in_schema=False)
async def metadata(request: Request, name: str) -> Response:
    files = _files(request)
    path = files.path / "metadata" / name
    if not METADATA_NAME.fullmatch(name) or not path.is_file():
        files.count("metadata", "not_found")
        raise HTTPException(404, "no such release metadata")
    # Versioned files never change; timestamp.json and root.json do, at any time.
    versioned = name[0].isdigit()
    headers = {"Cache-Control": _IMMUTABLE if versioned else "no-cache"}
    try:
        body = _small(path)
        size = len(body) if body is not None else path.stat().st_size
    except OSError:
        files.count("metadata", "not_found")
        raise HTTPException(404, "no such release metadata") from None
    files.count("metadata", "served", size)
    if body is None:
        return FileResponse(path, media_type="application/json", headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/releases/targets/{name}", tags=["releases"], include_in_schema=False)
async def target(request: Request, name: str) -> Response:
    files = _files(request)
    path = files.path / "targets" / name
    if not TARGET_NAME.fullmatch(name) or not path.is_file():
        files.count("target", "not_found")
        raise HTTPException(404, "no such release")
    address = client_address(request)
    if not files.take(address):
        files.count("target", "busy")
        raise HTTPException(
            503, "busy sending releases: come back later",
            headers={"Retry-After": str(files.wait_s())},
        )  # fmt: skip
    try:
        body = _small(path)
        response: _CappedBytes | _CappedFile = (
            _CappedBytes(body, files, address)
            if body is not None
            else _CappedFile(path, files, path.stat().st_size, address)
        )
    except OSError:
        files.give_back(address)
        files.count("target", "not_found")
        raise HTTPException(404, "no such release") from None
    files.count("target", "served", response.size)
    return response
