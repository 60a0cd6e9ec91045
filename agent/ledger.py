"""The creation ledger: one line per envelope an agent created, for the chaos soak's checker.

A test seam, enabled only by the environment (``COMMUNE_MONITOR_LEDGER=<directory>``),
never by a config key: a config pushed to thousands of PCs must not name paths. Unset,
nothing of this module is imported (agent/outbox.py asks the environment first).

One file per agent, ``<directory>/<province>__<commune>__<agent>.ledger``, each line
``<seq> <first_sample_ts> <last_sample_ts> <n_samples> <created_unix_ts>``, written by
one ``os.write`` on a file opened ``O_APPEND`` once the outbox has committed the
envelope and before the publisher can read it: what a kill -9 leaves is every line
of every envelope that can reach the broker, the last one torn at worst (the reader
skips it). The file is opened for each line, so that a simulator of thousands of
agents in one process holds no descriptor per agent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

ENVIRONMENT = "COMMUNE_MONITOR_LEDGER"
SUFFIX = ".ledger"


class _Timed(msgspec.Struct):
    ts: float


class _Envelope(msgspec.Struct):
    """What the ledger reads of an envelope (the rest of it is not decoded)."""

    province: str
    commune: str
    agent: str
    samples: list[_Timed]


_decoder = msgspec.json.Decoder(_Envelope)


def ledger_name(province: str, commune: str, agent: str) -> str:
    return f"{province}__{commune}__{agent}{SUFFIX}"


@dataclass(frozen=True)
class Created:
    """One line of a creation ledger."""

    seq: int
    first_ts: float
    last_ts: float
    samples: int
    created: float


class CreationLedger:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def record(self, seq: int, payload: bytes, created: float) -> None:
        """The envelope ``payload`` was committed to the outbox under ``seq``."""
        envelope = _decoder.decode(payload)
        times = [sample.ts for sample in envelope.samples]
        line = (
            f"{seq} {min(times, default=0.0)!r} {max(times, default=0.0)!r} "
            f"{len(times)} {created!r}\n"
        )
        path = self.directory / ledger_name(envelope.province, envelope.commune, envelope.agent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def from_environment() -> CreationLedger | None:
    directory = os.environ.get(ENVIRONMENT, "")
    return CreationLedger(Path(directory)) if directory else None


def read_ledger(path: Path) -> Iterator[Created]:
    """The lines of a ledger file; a torn or malformed line (a kill -9 mid-write) is skipped."""
    with path.open("rb") as lines:
        for raw in lines:
            if not raw.endswith(b"\n"):
                continue
            parts = raw.split()
            if len(parts) != 5:
                continue
            try:
                yield Created(
                    int(parts[0]), float(parts[1]), float(parts[2]), int(parts[3]), float(parts[4])
                )
            except ValueError:
                continue
