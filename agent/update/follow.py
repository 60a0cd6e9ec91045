"""The running agent's side of an update: follow the release order, stage, report.

Under the launcher (``COMMUNE_AGENT_HOME`` set) the agent reads ``AgentConfig.release``
from the collector's config. An order for a version that is not running, not bad, not
below the floor and not paused is carried out at a point in ``[0, spread_s)`` after it
first arrived (``state/order.json``, so restarts do not reset it), fixed by a stable
hash of the agent's id (5,000 PCs never ask at once): the update process
(``agent.update.process``) runs in a child process, and when it has staged the
version the agent stops cleanly and exits ``EXIT_UPDATE``. A failure or a
refusal is retried after the collector's ``Retry-After`` or a doubling backoff.

What the birth says (``Status.update``): the attempt in progress (waiting, paused,
staged, refused, failed), else a trial (the running version is ``pending``), else the
launcher's last decision (committed, rolled back), else idle when the running version
is the one asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from agent.update import versions
from agent.update.state import Home, read_json, write_json
from agent.wire import ReleaseOrder, UpdateReport, UpdateState

if TYPE_CHECKING:
    import subprocess

log = logging.getLogger(__name__)

POLL_S = 1.0
MAX_OUTPUT = 64 * 1024


def spread_delay(agent_id: str, spread_s: float) -> float:
    """This agent's point in ``[0, spread_s)``: the same across restarts, uniform across
    the fleet (the first 8 bytes of SHA-256 of the id)."""
    if spread_s <= 0:
        return 0.0
    fraction = int.from_bytes(hashlib.sha256(agent_id.encode()).digest()[:8], "big") / 2**64
    return fraction * spread_s


class Attempt(NamedTuple):
    """What the follower does next about a release order, and why."""

    state: UpdateState
    version: str
    reason: str = ""
    retry_after: float | None = None


def judge(order: ReleaseOrder | None, running: str, home: Home) -> Attempt | None:
    """What to do about ``order`` now: None (nothing asked, or it runs), or a state;
    ``"staged"`` here means: go and stage it."""
    if order is None or order.version == running or home.pending() == running:
        return None  # nothing to do, or this version is on trial: its verdict comes first
    bad = home.bad()
    if order.version in bad:
        # It failed here (its self-check or its trial): said as a rollback, for as long as
        # it is asked for, so the rollout's gate keeps counting it.
        return Attempt("rolled_back", order.version, f"marked bad: {bad[order.version]['reason']}")
    floor = home.floor()
    if not versions.at_least(order.version, floor):
        return Attempt("refused", order.version, f"below the floor {floor}")
    if order.paused:
        return Attempt("paused", order.version, "the rollout is paused")
    return Attempt("staged", order.version)


class Stager(Protocol):
    def stage(self, version: str) -> Attempt:
        """Runs the update process for ``version``; its outcome."""

    def stop(self) -> None:
        """The agent stops: a staging under way ends at once."""


class ProcessStager:
    """Runs ``command`` + the version as a child in a process group of its own: past
    ``timeout_s``, or when the agent stops, the group is killed (the fetch or the
    self-check the update process runs with it)."""

    def __init__(self, command: list[str], timeout_s: float = 3600.0) -> None:
        self.command = command
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._running: subprocess.Popen[bytes] | None = None
        self._stopped = False

    def stage(self, version: str) -> Attempt:
        # Loaded here: subprocess is the update's only, when an order comes (a PC agent
        # keeps it out otherwise: tests/test_footprint.py).
        import subprocess

        with self._lock:
            if self._stopped:
                return Attempt("failed", version, "the agent stopped")
            process = subprocess.Popen(
                [*self.command, version], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=dict(os.environ), start_new_session=sys.platform != "win32",
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
            )  # fmt: skip
            self._running = process
        try:
            stdout, stderr = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            took = f"the update process took over {self.timeout_s:.0f} s"
            return Attempt("failed", version, took)
        finally:
            with self._lock:
                self._running = None
        if self._stopped:
            return Attempt("failed", version, "the agent stopped")
        return outcome_of(version, stdout[-MAX_OUTPUT:], stderr[-MAX_OUTPUT:])

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._running is not None:
                _kill_group(self._running)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    if sys.platform == "win32":
        process.kill()
    else:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.killpg(process.pid, signal.SIGKILL)


def process_stager(
    home: Path, config: Path, url: str, ca_file: str, bundle_dir: str, timeout_s: float = 3600.0
) -> ProcessStager:
    command = [sys.executable, "-m", "agent.update.process", "--home", str(home)]
    command += ["--config", str(config)]
    if bundle_dir:
        command += ["--bundle-dir", bundle_dir]
    else:
        command += ["--url", url] + (["--ca-file", ca_file] if ca_file else [])
    return ProcessStager([*command, "--version"], timeout_s)


def outcome_of(version: str, stdout: bytes, stderr: bytes) -> Attempt:
    lines = stdout.decode(errors="replace").strip().splitlines()
    try:
        document = json.loads(lines[-1]) if lines else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("state") not in (
        "staged",
        "refused",
        "failed",
    ):
        tail = stderr.decode(errors="replace").strip().splitlines()
        return Attempt("failed", version, f"update process: {tail[-1] if tail else 'no result'}")
    retry = document.get("retry_after")
    return Attempt(
        document["state"],
        version,
        str(document.get("reason") or "")[:300],
        float(retry) if isinstance(retry, int | float) and retry >= 0 else None,
    )


class UpdateFollower:
    def __init__(
        self,
        home: Home,
        agent_id: str,
        running: str,
        order: Callable[[], ReleaseOrder | None],
        stager: Stager,
        announce: Callable[[], None],
        finish: Callable[[], None],
        launcher: str = "",
        retry_min_s: float = 300.0,
        retry_max_s: float = 6 * 3600.0,
    ) -> None:
        self.home = home
        self.agent_id = agent_id
        self.running = running
        self.order = order
        self.stager = stager
        self.announce = announce
        self.finish = finish
        """Stop the agent with EXIT_UPDATE."""
        self.launcher = launcher
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.attempt: Attempt | None = None
        self.attempt_ts = 0.0
        self.stopping = threading.Event()
        self._target = ""
        self._not_before = 0.0
        self._failures = 0
        self._said: tuple[str, str, str] | None = None

    def _said_now(self) -> tuple[str, str, str] | None:
        report = self.report()
        return (report.state, report.version, report.reason) if report else None

    def _first_seen(self, order: ReleaseOrder) -> float:
        """When this order first reached this PC (``state/order.json``), so that its
        spread counts across restarts: a PC rebooted daily still gets its turn within a
        spread of days. Unreadable: first seen now."""
        path = self.home.state / "order.json"
        seen = read_json(path)
        if seen is not None and (seen.get("version"), seen.get("rollout")) == (
            order.version,
            order.rollout,
        ):
            ts = seen.get("first_seen")
            if isinstance(ts, int | float) and 0 < ts <= time.time():
                return float(ts)
        now = time.time()
        write_json(path, {"version": order.version, "rollout": order.rollout, "first_seen": now})
        return now

    def report(self) -> UpdateReport | None:
        """``Status.update`` for the birth."""
        launcher = self.launcher[:27]
        if self.attempt is not None:
            a = self.attempt
            return UpdateReport(
                a.state, a.version, self.running, a.reason, self.attempt_ts, launcher
            )
        if self.home.pending() == self.running:
            committed = self.home.current() or ""
            return UpdateReport("trial", self.running, committed, "", time.time(), launcher)
        decision = self.home.decision()
        if decision is not None and decision.state in ("committed", "rolled_back"):
            return UpdateReport(
                "committed" if decision.state == "committed" else "rolled_back",
                decision.version,
                decision.previous,
                decision.reason,
                decision.ts,
                launcher,
            )
        order = self.order()
        if order is not None and order.version == self.running:
            return UpdateReport("idle", self.running, launcher=launcher, ts=time.time())
        return UpdateReport(launcher=launcher) if launcher else None

    def _set(self, attempt: Attempt | None) -> None:
        if attempt != self.attempt:
            self.attempt = attempt
            self.attempt_ts = time.time()
            if attempt is not None:
                log.info("update %s: %s %s", attempt.version, attempt.state, attempt.reason)

    def step(self) -> bool:
        """One look at the order; True when a version was staged (the agent stops)."""
        order = self.order()
        wanted = judge(order, self.running, self.home)
        if wanted is None or wanted.state != "staged":
            self._set(wanted)
            return False
        assert order is not None
        now = time.time()
        if wanted.version != self._target:
            self._target = wanted.version
            self._failures = 0
            self._not_before = self._first_seen(order) + spread_delay(self.agent_id, order.spread_s)
        if now < self._not_before:
            if self.attempt is None or self.attempt.state not in ("refused", "failed"):
                self._set(Attempt("waiting", wanted.version))
            return False
        outcome = self.stager.stage(wanted.version)
        self._set(outcome)
        if outcome.state == "staged":
            self.announce_changes()
            self.finish()
            return True
        self._failures += 1
        backoff = min(self.retry_min_s * 2 ** (self._failures - 1), self.retry_max_s)
        self._not_before = time.time() + (
            outcome.retry_after if outcome.retry_after is not None else backoff
        )
        return False

    def announce_changes(self) -> None:
        """A new birth when what it would say changed (a commit the launcher decided)."""
        report = self.report()
        said = (report.state, report.version, report.reason) if report else None
        if said != self._said:
            if self._said is not None or said is not None:
                self.announce()
            self._said = said

    def follow(self) -> None:
        """On its thread, until a version is staged or ``stop``."""
        self._said = self._said_now()
        while not self.stopping.is_set():
            try:
                if self.step():
                    return
            except Exception:  # an update that goes wrong never stops the agent
                log.exception("the update step failed; trying again later")
                self._not_before = time.time() + self.retry_min_s
            try:
                self.announce_changes()
            except Exception:  # a state file unreadable for a moment: said next time
                log.exception("could not announce the update's state")
            self.stopping.wait(POLL_S)

    def stop(self) -> None:
        """From another thread: ``follow`` returns at once, a staging under way ends."""
        self.stopping.set()
        self.stager.stop()
