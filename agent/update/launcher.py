"""The launcher: runs one agent version at a time, tries a new one, goes back if it fails.

The service (systemd, or the Windows service host) runs this file; it reports running at
once and does no network work. At each start of the agent it picks a version from the
state files (``agent.update.state``; their rules for unreadable files are stated there),
checks its files against its manifest, and runs ``<python> -m agent.cli run -c CONFIG``
with ``PYTHONPATH=<home>/versions/<v>`` (on Windows ``COMMUNE_AGENT_VERSION_DIR``, which
the runtime's path hook reads) and ``COMMUNE_AGENT_HOME=<home>``.

- ``pending`` names a version on trial. It runs until its health file says healthy
  (birth acknowledged, every check sampled, its files whole, memory and CPU within a
  bound of its predecessor's level) after ``healthy_after`` seconds without a restart:
  then it is committed (``previous`` <- ``current`` <- it, ``floor`` raised), with no
  restart. It is rolled back (listed in ``bad`` with why, ``pending`` removed, the
  committed version started again) after ``max_exits`` exits, after ``trial_timeout``
  seconds without health, or as soon as its files stop verifying.
- The committed version is restarted whenever it exits. If its files stop verifying
  (anti-malware), it is listed bad and ``previous`` runs instead.
- The agent's exit code ``EXIT_UPDATE`` means a version is staged: start it now.
- Every decision is written to ``state/decision.json`` (which, when, why); the agent
  reports it in its birth. A write that fails (a full disk: any user can fill it) never
  stops the launcher: the trial goes on from what it holds, and a decision it could not
  record stops the agent and is taken again a moment later.
- Versions other than ``current``, ``previous`` and ``pending`` are removed after a
  commit; those three never are.

Standard library only (with ``agent.update``'s stdlib modules, copied beside this file
at install): a launcher broken by the update it watches could not be repaired by one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from agent.update import EXIT_UPDATE, HOME_ENV, LAUNCHER_ENV, VERSION_DIR_ENV, bundle, versions
from agent.update.lock import UpdateLock
from agent.update.state import Decision, Health, Home, Trial

log = logging.getLogger("commune-launcher")

#: The launcher's own version (it changes rarely and ships in a slower ring).
LAUNCHER_VERSION: Final = "1.0"
SERVICE_NAME: Final = "CommuneAgent"
#: Windows: restart after 5 s, 5 s, then 60 s; the failure count resets after a day.
#: How often the time a version on trial has run is written down.
TRIAL_SAVE_EVERY_S: Final = 5.0
FAILURE_ACTIONS: Final = ("reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000")
#: Windows: the home is SYSTEM's and the Administrators' alone, by SID (the names are
#: translated on a Vietnamese Windows), inherited ACEs dropped. A home outside Program
#: Files (a folder made at the top of C:) otherwise lets every user write the versions
#: and the state files, and so choose the code the service runs as SYSTEM.
HOME_ACL: Final = ("/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F")


@dataclass(frozen=True)
class Options:
    """How the launcher runs the agent and judges a version on trial."""

    home: Path
    config: Path
    python: str = sys.executable
    max_exits: int = 3
    """A version on trial that exits this many times is rolled back."""
    trial_timeout_s: float = 1800.0
    """A version on trial not healthy after running this long is rolled back (its running
    time: a PC switched off overnight does not count against it)."""
    healthy_after_s: float = 600.0
    """A version on trial must run this long without a restart to be committed."""
    restart_delay_s: float = 5.0
    grace_s: float = 15.0
    """After SIGTERM, how long the agent has to stop before it is killed."""
    poll_s: float = 1.0
    verify_every_s: float = 300.0
    """How often the running version's files are checked against its manifest."""
    rss_factor: float = 2.0
    """A new version using more than this many times its predecessor's memory is not
    healthy; CPU likewise (plus 5 points)."""
    cpu_factor: float = 2.0
    network_grace_s: float = 86400.0
    """Running time on trial while the broker cannot be reached at all (the commune's
    line down) is not counted against ``trial_timeout_s``, up to this much: a good
    version is not marked bad for a line cut, and a version that cannot connect for its
    own reasons is still judged in the end."""


class Stopped(Exception):
    """The launcher was asked to stop."""


def recovery_commands(system_root: str, service: str = SERVICE_NAME) -> list[list[str]]:
    """The ``sc.exe`` commands that make Windows restart the service after a failure."""
    sc = f"{system_root.rstrip(chr(92))}\\System32\\sc.exe"
    return [
        [sc, "failure", service, *FAILURE_ACTIONS],
        # Without the flag the actions apply only to crashes, not to a service that
        # stops with an error: it would stay stopped for good.
        [sc, "failureflag", service, "1"],
    ]


def home_acl_commands(system_root: str, home: Path) -> list[list[str]]:
    """The ``icacls.exe`` command that keeps the home to SYSTEM and the Administrators."""
    return [[f"{system_root.rstrip(chr(92))}\\System32\\icacls.exe", str(home), *HOME_ACL]]


def set_recovery(run: Callable[[list[str]], int], system_root: str) -> list[str]:
    """Apply ``recovery_commands`` with ``run``; what failed (the service still starts)."""
    return _apply(run, recovery_commands(system_root))


def protect_home(run: Callable[[list[str]], int], system_root: str, home: Path) -> list[str]:
    """Apply ``home_acl_commands`` with ``run``; what failed (the service still starts)."""
    return _apply(run, home_acl_commands(system_root, home))


def _apply(run: Callable[[list[str]], int], commands: list[list[str]]) -> list[str]:
    failed = []
    for command in commands:
        try:
            code = run(command)
        except OSError as exc:
            failed.append(f"{' '.join(command[1:3])}: {exc}")
            continue
        if code != 0:
            failed.append(f"{' '.join(command[1:3])}: exit {code}")
    return failed


def _run_quietly(command: list[str]) -> int:
    # No console window: the launcher runs windowless as SYSTEM (pythonw, the service).
    no_window = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return subprocess.run(
        command, capture_output=True, timeout=30, check=False, creationflags=no_window
    ).returncode


class Launcher:
    def __init__(self, options: Options, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.home = Home(options.home, clock)
        self.clock = clock
        self.stop_requested = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self.trial_kept: Trial | None = None
        """The trial as this launcher last knew it, should its file not be written."""

    # choosing ---------------------------------------------------------------------
    def _verifies(self, version: str) -> str:
        """The first problem of an installed version ("" when whole)."""
        folder = self.home.version_dir(version)
        if not folder.is_dir():
            return f"versions/{version} is missing"
        problems = bundle.verify_tree(folder)
        return f"{len(problems)} file(s) wrong, first {problems[0]}" if problems else ""

    def _installed(self) -> list[str]:
        try:
            names = [p.name for p in self.home.versions.iterdir() if p.is_dir()]
        except OSError:
            return []
        return sorted((n for n in names if versions.is_version(n)), key=versions.parse)

    def choose(self) -> tuple[str, bool] | None:
        """The version to start, and whether it is on trial; None: nothing runnable."""
        home = self.home
        current, pending, bad = self._repaired_current(), home.pending(), home.bad()
        if pending is not None:
            if pending == current:  # a commit cut short after ``current`` was written
                self._finish_commit(pending)
            elif pending in bad:  # a rollback cut short after ``bad`` was written
                home.clear_pending()
                self._clear_trial()
                self._record_rollback(pending, str(bad[pending]["reason"]), current)
            elif not home.version_dir(pending).is_dir():  # half-written: not what was staged
                home.clear_pending()
            elif not versions.at_least(pending, home.floor()):  # never staged so: never run
                log.error("pending %s is below the floor %s: not run", pending, home.floor())
                home.clear_pending()
            else:
                problem = self._verifies(pending)
                if not problem:
                    return pending, True
                self.rollback(pending, f"files of {pending}: {problem}")
        bad = home.bad()
        if current is not None and current not in bad:
            problem = self._verifies(current)
            if not problem:
                return current, False
            self._fall_back(current, f"files of {current}: {problem}")
            return self._fallback_choice()
        return self._fallback_choice()

    def _repaired_current(self) -> str | None:
        """``current``, or when it is unreadable or names no installed version, the one
        its rule picks (written back, so a commit keeps the right ``previous``)."""
        current = self.home.current()
        if current is not None and self.home.version_dir(current).is_dir():
            return current
        chosen = self._fallback_choice()
        return chosen[0] if chosen else None

    def _fallback_choice(self) -> tuple[str, bool] | None:
        """``current`` is unreadable, bad or broken: the highest installed version at or
        below the floor (a staged version whose ``pending`` was lost is above it: it
        never runs untried; without a floor, ``previous`` first), that verifies and is
        not bad."""
        home = self.home
        bad, floor = home.bad(), home.floor()
        candidates = [
            v for v in reversed(self._installed()) if not floor or not versions.newer(v, floor)
        ]
        previous = home.previous()
        if previous is not None and not floor:  # no floor to go by: the known good one
            candidates.insert(0, previous)
        for version in candidates:
            if version not in bad and not self._verifies(version):
                home.set_current(version)
                log.warning("running %s (current was unreadable, bad or broken)", version)
                return version, False
        return None

    # deciding ---------------------------------------------------------------------
    def _finish_commit(self, version: str) -> None:
        home = self.home
        home.raise_floor(version)
        home.clear_pending()
        self._clear_trial()
        decision = home.decision()
        if decision is None or decision.version != version or decision.state != "committed":
            before = home.previous() or ""
            home.decide(Decision("committed", version, before, "healthy", self.clock()))

    def commit(self, version: str, why: str) -> None:
        home = self.home
        old = home.current()
        if old and old != version:
            home.set_previous(old)
        home.set_current(version)
        home.raise_floor(version)
        home.clear_pending()
        self._clear_trial()
        home.decide(Decision("committed", version, old or "", why, self.clock()))
        log.info("committed %s (before: %s): %s", version, old or "none", why)
        self.prune()

    def rollback(self, version: str, reason: str) -> None:
        """A version on trial failed: bad, with why; the committed version runs again."""
        home = self.home
        home.mark_bad(version, reason)
        home.clear_pending()
        self._clear_trial()
        self._record_rollback(version, reason, home.current())

    def _record_rollback(self, version: str, reason: str, to: str | None) -> None:
        self.home.decide(Decision("rolled_back", version, to or "", reason, self.clock()))
        log.error("rolled back %s to %s: %s", version, to or "nothing", reason)

    def _fall_back(self, version: str, reason: str) -> None:
        """The committed version broke (its files changed): bad, and ``previous`` next."""
        home = self.home
        home.mark_bad(version, reason)
        previous = home.previous()
        target = previous if previous and previous != version else None
        if target is not None and not self._verifies(target):
            home.set_current(target)
        self._record_rollback(version, reason, target)

    def prune(self) -> None:
        """Remove versions that are neither current, previous nor pending."""
        home = self.home
        keep = {home.current(), home.previous(), home.pending()}
        for version in self._installed():
            if version not in keep:
                shutil.rmtree(home.version_dir(version), ignore_errors=True)
                log.info("removed version %s", version)
        with contextlib.suppress(OSError):
            for record in (home.state / "health").glob("*.json"):
                if record.stem not in keep:
                    record.unlink()

    def remove_leftovers(self) -> None:
        """Half-unpacked versions of an interrupted staging (no agent runs yet), only
        under the update lock: an update process can outlive the agent that started it
        (its own process group; a launcher killed with its agent), and its
        ``.partial-*`` may be renamed to ``versions/<v>`` while rmtree empties it. Held:
        left to that process (it removes its own on failure) or the next start."""
        lock = UpdateLock(self.home.state)
        try:
            if not lock.try_acquire():
                log.info("an update process is at work: its unpacking is left to it")
                return
        except OSError:
            return
        with lock:
            try:
                leftovers = [p for p in self.home.versions.iterdir() if p.name.startswith(".")]
            except OSError:
                return
            for path in leftovers:
                shutil.rmtree(path, ignore_errors=True)

    def judge(self, health: Health | None, pid: int, up_s: float, trial: Trial) -> str:
        """Why the version on trial is not healthy yet ("" when it is)."""
        o = self.options
        if health is None or health.pid != pid:
            return "no health report from this start"
        if not health.birth_acked:
            return "birth not acknowledged by the broker"
        if not health.sampled_all:
            return f"{health.checks_sampled} of {health.checks_total} checks produced a sample"
        if health.files_problem:
            return f"its files: {health.files_problem}"
        if trial.baseline_rss and health.rss_bytes > trial.baseline_rss * o.rss_factor:
            return (
                f"memory {health.rss_bytes // 1024} KiB, above {o.rss_factor}x "
                f"the previous version's {trial.baseline_rss // 1024} KiB"
            )
        cpu_bound = trial.baseline_cpu * o.cpu_factor + 0.05
        if trial.baseline_cpu and health.cpu_fraction > cpu_bound:
            return f"CPU {health.cpu_fraction:.0%}, above {cpu_bound:.0%}"
        if up_s < o.healthy_after_s:
            return f"up {up_s:.0f} s of {o.healthy_after_s:.0f} s without a restart"
        return ""

    # running ----------------------------------------------------------------------
    def _start(self, version: str) -> subprocess.Popen[bytes]:
        folder = self.home.version_dir(version)
        environment = {
            **os.environ,
            "PYTHONPATH": str(folder),
            VERSION_DIR_ENV: str(folder),
            HOME_ENV: str(self.home.root),
            LAUNCHER_ENV: LAUNCHER_VERSION,
        }
        command = [self.options.python, "-m", "agent.cli", "run", "-c", str(self.options.config)]
        log.info("starting %s", version)
        preexec = _die_with_parent if sys.platform == "linux" else None
        # The launcher runs no other thread: preexec_fn cannot deadlock on a lock here.
        return subprocess.Popen(command, cwd=folder, env=environment, preexec_fn=preexec)  # noqa: PLW1509

    def _keep_trial(self, trial: Trial) -> None:
        """Record the trial; a full disk (any user can fill it) does not stop the launcher:
        it goes on with the record it holds and writes it when it can."""
        self.trial_kept = trial
        try:
            self.home.set_trial(trial)
        except OSError as exc:
            log.warning("could not write the trial of %s: %s", trial.version, exc)

    def _clear_trial(self) -> None:
        self.trial_kept = None
        self.home.clear_trial()

    def _stop_child(self) -> int | None:
        child, self.child = self.child, None
        if child is None:
            return None
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(self.options.grace_s)
            except subprocess.TimeoutExpired:
                log.warning("the agent did not stop in %.0f s; killing it", self.options.grace_s)
                child.kill()
                child.wait()
        return child.returncode

    def _wait(self, seconds: float) -> None:
        if self.stop_requested.wait(seconds):
            raise Stopped

    def _begin_trial(self, version: str) -> Trial:
        """The trial of ``version``: the one under way (the launcher restarted), or a new
        one measured against the committed version's last health record."""
        home = self.home
        kept = self.trial_kept
        trial = kept if kept is not None and kept.version == version else home.trial(version)
        if trial is None:
            baseline = home.health(home.current() or "")
            trial = Trial(
                version,
                self.clock(),
                baseline_rss=baseline.rss_bytes if baseline else 0,
                baseline_cpu=baseline.cpu_fraction if baseline else 0.0,
            )
            self._keep_trial(trial)
            try:
                home.decide(Decision("trial", version, home.current() or "", "", self.clock()))
            except OSError as exc:  # only reported: the trial goes on
                log.warning("could not write the decision to try %s: %s", version, exc)
        return trial

    def _watch(self, version: str, trial: Trial | None) -> tuple[int | None, Trial | None]:
        """Watch one start of ``version`` until it exits (its code) or a decision ended
        it (None); the trial (its running time counted), None once committed."""
        o, home = self.options, self.home
        child = self.child = self._start(version)
        started = verified = saved = last = time.monotonic()
        ran = trial.ran_s if trial is not None else 0.0
        waited = trial.waited_s if trial is not None else 0.0
        health = None
        while True:
            self._wait(o.poll_s)
            code = child.poll()
            now = time.monotonic()
            step, last = now - last, now
            cut_off = health is not None and health.pid == child.pid and health.broker_unreachable
            if cut_off and waited < o.network_grace_s:
                waited += step  # the line is down: the version is not to blame
            else:
                ran += step
            if trial is not None and (code is not None or now - saved >= TRIAL_SAVE_EVERY_S):
                saved = now  # the time on trial survives a power cut, give or take this
                trial = trial._replace(ran_s=ran, waited_s=waited)
                self._keep_trial(trial)
            if code is not None:
                self.child = None
                return code, trial
            if now - verified >= o.verify_every_s:
                verified = now
                problem = self._verifies(version)
                if problem:
                    self._stop_child()
                    reason = f"files of {version}: {problem}"
                    if trial is not None:
                        self.rollback(version, reason)
                    else:
                        self._fall_back(version, reason)
                    return None, trial
            if trial is None:
                continue
            health = home.health(version)
            why = self.judge(health, child.pid, now - started, trial)
            if not why:
                self.commit(version, f"healthy after {now - started:.0f} s")
                trial = None
            elif ran >= o.trial_timeout_s:
                self._stop_child()
                self.rollback(version, f"not healthy after {o.trial_timeout_s:.0f} s: {why}")
                return None, trial

    def run_version(self, version: str, on_trial: bool) -> None:
        """Run ``version`` once, until it exits or a decision ends it; the caller picks
        (and verifies) the version again before the next start."""
        o = self.options
        trial = self._begin_trial(version) if on_trial else None
        code, trial = self._watch(version, trial)
        if code is None:
            return
        if code == EXIT_UPDATE:
            log.info("%s exited to start a staged version", version)
            return
        if trial is None:
            log.warning("%s exited with %s; restarting", version, code)
            self._wait(o.restart_delay_s)
            return
        trial = trial._replace(exits=trial.exits + 1)
        self._keep_trial(trial)
        if trial.exits >= o.max_exits:
            self.rollback(version, f"exited {trial.exits} times on trial (last code {code})")
            return
        log.warning(
            "%s exited with %s on trial (%d of %d)", version, code, trial.exits, o.max_exits
        )
        self._wait(o.restart_delay_s)

    def run(self) -> int:
        self.home.state.mkdir(parents=True, exist_ok=True)
        lock = _hold_lock(self.home.state / "launcher.lock")
        if lock is None:
            log.error("another launcher runs for %s; this one stops", self.home.root)
            return 1
        with lock:
            return self._run()

    def _run(self) -> int:
        self.remove_leftovers()
        try:
            while True:
                try:
                    chosen = self.choose()
                    if chosen is None:
                        log.error("no installed version verifies; trying again")
                        self._wait(max(self.options.restart_delay_s, 1.0))
                        continue
                    self.run_version(*chosen)
                except OSError as exc:
                    # A decision not written (disk full): never two agents, never a crash
                    # (a service that fails to start is no better); chosen again later.
                    self._stop_child()
                    log.error("could not record a decision: %s; trying again", exc)
                    self._wait(max(self.options.restart_delay_s, 1.0))
        except Stopped:
            self._stop_child()
            log.info("launcher stopped")
            return 0


def _hold_lock(path: Path) -> BinaryIO | None:
    """An exclusive lock on ``path`` held until this process ends (None: another
    launcher holds it): two launchers on one home would start two agents. The file is
    the service user's alone: flock needs only a read handle, so a lock file others can
    read would let any local user keep the launcher from starting."""
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+b")
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            with contextlib.suppress(OSError):  # one an earlier launcher left readable
                os.fchmod(handle.fileno(), 0o600)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _die_with_parent() -> None:
    """Linux: the agent gets SIGTERM when the launcher dies (even by kill -9), so a
    restarted launcher never meets an agent it did not start."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="launcher.py",
        description="Run the commune agent's committed version; try a staged one; roll back.",
        epilog="Example: python /opt/commune-agent/launcher/launcher.py "
        "--home /opt/commune-agent --config /etc/commune-agent/agent.toml",
    )
    parser.add_argument("--home", type=Path, required=True, help="the agent's home")
    parser.add_argument("--config", type=Path, required=True, help="the agent's config file")
    parser.add_argument("--python", default=sys.executable, help="the runtime's interpreter")
    parser.add_argument("--max-exits", type=int, default=3)
    parser.add_argument("--trial-timeout", type=float, default=1800.0, help="seconds")
    parser.add_argument("--healthy-after", type=float, default=600.0, help="seconds")
    parser.add_argument("--restart-delay", type=float, default=5.0, help="seconds")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds")
    parser.add_argument("--verify-every", type=float, default=300.0, help="seconds")
    parser.add_argument(
        "--network-grace", type=float, default=86400.0,
        help="seconds on trial with the broker unreachable not counted against it",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return Options(
        home=args.home.absolute(),
        config=args.config.absolute(),
        python=args.python,
        max_exits=max(1, args.max_exits),
        trial_timeout_s=args.trial_timeout,
        healthy_after_s=args.healthy_after,
        restart_delay_s=args.restart_delay,
        grace_s=args.grace,
        poll_s=args.poll,
        verify_every_s=args.verify_every,
        network_grace_s=max(0.0, args.network_grace),
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s launcher: %(message)s",
        stream=sys.stderr,
    )
    launcher = Launcher(options)
    if sys.platform == "win32":
        system_root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        for problem in set_recovery(_run_quietly, system_root):
            log.warning("could not set the service's recovery actions: %s", problem)
        for problem in protect_home(_run_quietly, system_root, options.home):
            log.warning("could not keep the home to SYSTEM and the Administrators: %s", problem)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _s, _f: launcher.stop_requested.set())
    log.info("launcher %s running for %s", LAUNCHER_VERSION, options.home)
    return launcher.run()


if __name__ == "__main__":
    sys.exit(main())
