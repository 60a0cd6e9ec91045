"""The update's state files under ``<home>/state``: written atomically, read tolerantly.

Every file is written to a temporary name in the same folder, flushed to disk and
renamed over the old one, so a reader meets the old content or the new, never a mix.
A power cut can still leave a file empty or unreadable (a filesystem that lost the
rename's data, a disk error, anti-malware): each reader below then applies one stated
rule, and none of them leads to a rollback or a crash:

- ``current`` unreadable, or naming no installed version: the highest installed
  version at or below the floor that verifies and is not bad runs (and ``current`` is
  written again with it). A staged version whose ``pending`` was lost
  is above the floor: it never runs untried.
- ``previous`` unreadable: there is no rollback target but ``current``.
- ``pending`` unreadable, or naming no installed version: nothing is on trial (the
  agent stages the version again if the collector still asks for it). Naming a version
  below the floor (staging refuses those: not ours): nothing is on trial, it never runs.
- ``bad`` unreadable: no version is known bad (a bad version would have to be staged
  and fail its trial again to be listed anew).
- ``floor`` unreadable: the committed version is the floor (both unreadable: no floor,
  and ``previous`` is the first choice).
- ``decision.json`` unreadable: no decision to report.
- ``trial.json`` unreadable: the trial starts counting again from now.
- ``health/<v>.json`` unreadable: not healthy yet (the next reading decides; only T
  without health rolls a version back).

Standard library only: the launcher imports it. Its records are named tuples, not
dataclasses: the agent under the launcher reads and writes them too, and loads neither
the dataclasses module nor the methods it would generate for each class.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NamedTuple

from agent.update import versions

#: No state file is larger than this; a larger one is not ours (read as unreadable).
MAX_STATE_BYTES: Final = 256 * 1024
#: Entries kept in ``bad`` (the oldest go first).
MAX_BAD: Final = 100
MAX_REASON: Final = 300


#: How ``tempfile.mkstemp`` opens a file of its own.
_NEW_FILE: Final[int] = (
    os.O_RDWR | os.O_CREAT | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOINHERIT", 0) | getattr(os, "O_BINARY", 0)
)  # fmt: skip


def _new_temporary(folder: Path, prefix: str) -> tuple[int, str]:
    """A file nobody else has, beside the one it will replace, made as ``tempfile.mkstemp``
    makes it (0600, created exclusively): tempfile would load shutil, random and the
    compressors (0.65 MB) into the agent that writes its health file every minute."""
    for _ in range(100):
        name = os.path.join(folder, prefix + os.urandom(6).hex())
        try:
            return os.open(name, _NEW_FILE, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by a temporary file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _new_temporary(path.parent, f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` survive a power cut."""
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)


def _read(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STATE_BYTES + 1)
    except OSError:
        return None
    return data if len(data) <= MAX_STATE_BYTES else None


def read_version(path: Path) -> str | None:
    """A one-line version file; None when absent, empty, half-written or not a version."""
    data = _read(path)
    if data is None:
        return None
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    return text if versions.is_version(text) else None


def write_version(path: Path, version: str) -> None:
    versions.parse(version)
    write_atomic(path, f"{version}\n".encode())


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object; None when absent or not a whole JSON object."""
    data = _read(path)
    if data is None:
        return None
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(document, indent=1, sort_keys=True).encode() + b"\n")


def _text(value: object, limit: int = MAX_REASON) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


class Decision(NamedTuple):
    """The launcher's last decision, as ``state/decision.json`` holds it."""

    state: str
    """"trial", "committed" or "rolled_back"."""
    version: str
    """The version the decision is about (started on trial, committed, rolled back)."""
    previous: str = ""
    """The version that ran before (rolled back to, after a rollback)."""
    reason: str = ""
    ts: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "version": self.version,
            "previous": self.previous,
            "reason": self.reason[:MAX_REASON],
            "ts": self.ts,
        }


DECISION_STATES: Final = ("trial", "committed", "rolled_back")


def decision_of(document: dict[str, Any] | None) -> Decision | None:
    if document is None or document.get("state") not in DECISION_STATES:
        return None
    version = document.get("version")
    if not isinstance(version, str) or not versions.is_version(version):
        return None
    previous = _text(document.get("previous"), 27)
    return Decision(
        state=str(document["state"]),
        version=version,
        previous=previous if versions.is_version(previous) else "",
        reason=_text(document.get("reason")),
        ts=_number(document.get("ts")),
    )


class Trial(NamedTuple):
    """A version on trial: since when (wall clock), how many times it exited, how long it
    ran, and the level of resources its predecessor used (its last health record), to
    compare with."""

    version: str
    started: float
    exits: int = 0
    baseline_rss: int = 0
    baseline_cpu: float = 0.0
    ran_s: float = 0.0
    """How long it has run on trial, over all its starts (counted against it)."""
    waited_s: float = 0.0
    """How long it ran while its broker could not be reached at all (a commune line
    down): not counted against it, up to the launcher's network grace."""

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "started": self.started,
            "ran_s": self.ran_s,
            "waited_s": self.waited_s,
            "exits": self.exits,
            "baseline_rss": self.baseline_rss,
            "baseline_cpu": self.baseline_cpu,
        }


class Health(NamedTuple):
    """What a running agent says of itself in ``state/health/<v>.json``."""

    version: str
    pid: int
    ts: float
    birth_acked: bool
    checks_total: int
    checks_sampled: int
    files_problem: str
    """Empty: its own files verify against its manifest."""
    rss_bytes: int
    cpu_fraction: float
    """CPU time over wall time since it started (1.0: one core busy)."""
    broker_unreachable: bool = False
    """Its last attempt to reach the broker failed below MQTT and TLS (refused,
    unreachable, timed out, no name): the network's fault, not the version's."""

    @property
    def sampled_all(self) -> bool:
        return self.checks_sampled >= self.checks_total

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "pid": self.pid,
            "ts": self.ts,
            "birth_acked": self.birth_acked,
            "checks_total": self.checks_total,
            "checks_sampled": self.checks_sampled,
            "files_problem": self.files_problem[:MAX_REASON],
            "rss_bytes": self.rss_bytes,
            "cpu_fraction": self.cpu_fraction,
            "broker_unreachable": self.broker_unreachable,
        }


def health_of(document: dict[str, Any] | None) -> Health | None:
    if document is None:
        return None
    version = document.get("version")
    if not isinstance(version, str) or not versions.is_version(version):
        return None
    return Health(
        version=version,
        pid=int(_number(document.get("pid"))),
        ts=_number(document.get("ts")),
        birth_acked=document.get("birth_acked") is True,
        checks_total=int(_number(document.get("checks_total"))),
        checks_sampled=int(_number(document.get("checks_sampled"))),
        files_problem=_text(document.get("files_problem")),
        rss_bytes=int(_number(document.get("rss_bytes"))),
        cpu_fraction=_number(document.get("cpu_fraction")),
        broker_unreachable=document.get("broker_unreachable") is True,
    )


class Home:
    """Paths of one agent home (``agent.update``'s layout) and its state files."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.clock = clock

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    def version_dir(self, version: str) -> Path:
        return self.versions / version

    def health_path(self, version: str) -> Path:
        return self.state / "health" / f"{version}.json"

    # one-line files ------------------------------------------------------------
    def current(self) -> str | None:
        return read_version(self.state / "current")

    def previous(self) -> str | None:
        return read_version(self.state / "previous")

    def pending(self) -> str | None:
        return read_version(self.state / "pending")

    def floor(self) -> str:
        """The floor; unreadable or absent: the committed version (or none)."""
        return read_version(self.state / "floor") or self.current() or ""

    def set_current(self, version: str) -> None:
        write_version(self.state / "current", version)

    def set_previous(self, version: str) -> None:
        write_version(self.state / "previous", version)

    def set_pending(self, version: str) -> None:
        write_version(self.state / "pending", version)

    def clear_pending(self) -> None:
        remove(self.state / "pending")

    def raise_floor(self, version: str) -> None:
        floor = read_version(self.state / "floor")
        if not floor or versions.newer(version, floor):
            write_version(self.state / "floor", version)

    # bad -------------------------------------------------------------------------
    def bad(self) -> dict[str, dict[str, Any]]:
        """Version -> {"reason", "ts"}; unreadable: empty."""
        document = read_json(self.state / "bad")
        found: dict[str, dict[str, Any]] = {}
        for version, entry in (document or {}).items():
            if versions.is_version(version) and isinstance(entry, dict):
                found[version] = {
                    "reason": _text(entry.get("reason")),
                    "ts": _number(entry.get("ts")),
                }
        return found

    def mark_bad(self, version: str, reason: str) -> None:
        entries = self.bad()
        entries[version] = {"reason": reason[:MAX_REASON], "ts": self.clock()}
        kept = sorted(entries.items(), key=lambda item: float(item[1]["ts"]))[-MAX_BAD:]
        write_json(self.state / "bad", dict(kept))

    # decision, trial, health ---------------------------------------------------------
    def decision(self) -> Decision | None:
        return decision_of(read_json(self.state / "decision.json"))

    def decide(self, decision: Decision) -> None:
        write_json(self.state / "decision.json", decision.to_json())

    def trial(self, version: str) -> Trial | None:
        """The trial record of ``version``; None when absent, unreadable or another's."""
        document = read_json(self.state / "trial.json")
        if document is None or document.get("version") != version:
            return None
        return Trial(
            version=version,
            started=_number(document.get("started")),
            exits=int(_number(document.get("exits"))),
            baseline_rss=int(_number(document.get("baseline_rss"))),
            baseline_cpu=_number(document.get("baseline_cpu")),
            ran_s=_number(document.get("ran_s")),
            waited_s=_number(document.get("waited_s")),
        )

    def set_trial(self, trial: Trial) -> None:
        write_json(self.state / "trial.json", trial.to_json())

    def clear_trial(self) -> None:
        remove(self.state / "trial.json")

    def health(self, version: str) -> Health | None:
        found = health_of(read_json(self.health_path(version)))
        return found if found is not None and found.version == version else None

    def write_health(self, health: Health) -> None:
        write_json(self.health_path(health.version), health.to_json())
