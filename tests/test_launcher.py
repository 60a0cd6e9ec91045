"""The launcher's decisions on the state files it meets (every one half-written), what it
keeps on disk, its Windows recovery actions and its unit; the agent's order follower.

The processes themselves (trial, commit, rollback, kill -9) are in test_e2e_launcher.py.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from agent.update import EXIT_UPDATE, bundle, follow, install, launcher
from agent.update.follow import Attempt, UpdateFollower, judge, spread_delay
from agent.update.launcher import Launcher, Options
from agent.update.state import Decision, Home, Trial, read_json, write_atomic
from agent.wire import ReleaseOrder, UpdateReport
from tests.servers import wait_for
from tests.test_architecture import imports
from tests.update_home import build_bundles, new_home, stage, unpack

STATE_FILES = ("current", "previous", "pending", "bad", "floor", "decision.json", "trial.json")
HALF_WRITTEN = {
    "empty": b"",
    "cut": b"1.",
    "garbage": b"\x00\xff\xfe not a version",
    "cut json": b'{"1.1.0": {"reason": "exi',
    "huge": b"1" * (300 * 1024),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundles(tmp_path_factory.mktemp("bundles"), ["0.9.0", "1.0.0", "1.1.0"], {})


def launcher_for(home: Home) -> Launcher:
    return Launcher(Options(home=home.root, config=home.root / "agent.toml"))


def test_a_pending_version_runs_on_trial_and_the_committed_one_otherwise(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    assert launcher_for(home).choose() == ("1.0.0", False)
    stage(home, bundles, "1.1.0")
    assert launcher_for(home).choose() == ("1.1.0", True)


@pytest.mark.parametrize("kind", sorted(HALF_WRITTEN))
@pytest.mark.parametrize("name", STATE_FILES)
def test_a_half_written_state_file_never_rolls_back_nor_crashes(
    tmp_path: Path, bundles: Path, name: str, kind: str
) -> None:
    """Each file, however broken, is read by its stated rule: a complete version runs,
    nothing is marked bad, no rollback is recorded."""
    home = new_home(tmp_path / "home", bundles)
    unpack(home, bundles, "0.9.0")
    home.set_previous("0.9.0")
    stage(home, bundles, "1.1.0")
    (home.state / name).write_bytes(HALF_WRITTEN[kind])
    chosen = launcher_for(home).choose()
    assert chosen is not None
    version, on_trial = chosen
    expected = {"current": ("1.1.0", True), "pending": ("1.0.0", False)}.get(name, ("1.1.0", True))
    if name == "pending" and kind == "cut":
        expected = ("1.0.0", False)  # "1." is not a version: nothing on trial
    assert (version, on_trial) == expected
    assert home.bad() == {}
    decision = home.decision()
    assert decision is None or decision.state != "rolled_back"
    assert home.current() == "1.0.0"  # rewritten by its rule when it was unreadable
    assert not bundle.verify_tree(home.version_dir(version))


def test_a_pending_file_cut_to_another_version_is_no_trial_and_no_rollback(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    stage(home, bundles, "1.1.0")
    (home.state / "pending").write_bytes(b"1.1")  # a valid version, never installed
    assert launcher_for(home).choose() == ("1.0.0", False)
    assert home.pending() is None and home.bad() == {} and home.decision() is None


def test_a_pending_version_below_the_floor_is_never_run(tmp_path: Path, bundles: Path) -> None:
    """Staging refuses a version below the floor; a ``pending`` naming one anyway (an old
    release replayed into the state folder) is not tried: the floor holds at the last gate."""
    home = new_home(tmp_path / "home", bundles)
    unpack(home, bundles, "0.9.0")
    home.set_pending("0.9.0")
    assert launcher_for(home).choose() == ("1.0.0", False)
    assert home.pending() is None and "0.9.0" not in home.bad()


def test_an_unreadable_current_runs_the_floor_not_an_untried_version(
    tmp_path: Path, bundles: Path
) -> None:
    """Staged 1.1.0 lost its pending file and current is garbage: 1.1.0 is above the
    floor, so it never runs as if committed."""
    home = new_home(tmp_path / "home", bundles)
    unpack(home, bundles, "1.1.0")
    (home.state / "current").write_bytes(b"\x00")
    assert launcher_for(home).choose() == ("1.0.0", False)
    assert home.current() == "1.0.0"
    assert home.decision() is None and home.bad() == {}


def test_current_and_floor_both_unreadable_fall_back_to_previous(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    unpack(home, bundles, "1.1.0")
    home.set_previous("1.0.0")
    for name in ("current", "floor"):
        (home.state / name).write_bytes(b"")
    assert launcher_for(home).choose() == ("1.0.0", False)


def test_an_unreadable_health_file_is_not_healthy_and_not_a_rollback(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    stage(home, bundles, "1.1.0")
    home.health_path("1.1.0").parent.mkdir(parents=True, exist_ok=True)
    home.health_path("1.1.0").write_bytes(b'{"version": "1.1.0", "pid": 12')
    trial = Trial("1.1.0", 0.0)
    why = launcher_for(home).judge(home.health("1.1.0"), 12, 100.0, trial)
    assert why == "no health report from this start"
    assert launcher_for(home).choose() == ("1.1.0", True)


def test_files_eaten_before_the_switch_roll_the_staged_version_back(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    stage(home, bundles, "1.1.0")
    (home.version_dir("1.1.0") / "agent" / "runner.py").unlink()
    assert launcher_for(home).choose() == ("1.0.0", False)
    assert "agent/runner.py" in home.bad()["1.1.0"]["reason"]
    decision = home.decision()
    assert decision is not None and decision.state == "rolled_back"
    assert (decision.version, decision.previous) == ("1.1.0", "1.0.0")
    assert home.pending() is None


def test_files_eaten_from_the_committed_version_fall_back_to_previous(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles, committed="1.1.0")
    unpack(home, bundles, "1.0.0")
    home.set_previous("1.0.0")
    (home.version_dir("1.1.0") / "agent" / "cli.py").write_text("changed")
    assert launcher_for(home).choose() == ("1.0.0", False)
    assert home.current() == "1.0.0"
    assert "agent/cli.py: changed" in home.bad()["1.1.0"]["reason"]
    decision = home.decision()
    assert decision is not None and decision.state == "rolled_back"


@pytest.mark.parametrize("cut_after", ["previous", "current", "floor"])
def test_a_commit_cut_short_is_finished(tmp_path: Path, bundles: Path, cut_after: str) -> None:
    home = new_home(tmp_path / "home", bundles)
    stage(home, bundles, "1.1.0")
    home.set_previous("1.0.0")
    if cut_after in ("current", "floor"):
        home.set_current("1.1.0")
    if cut_after == "floor":
        home.raise_floor("1.1.0")
    chosen = launcher_for(home).choose()
    if cut_after == "previous":  # current not yet written: the trial goes on
        assert chosen == ("1.1.0", True)
        return
    assert chosen == ("1.1.0", False)
    assert home.pending() is None and home.floor() == "1.1.0" and home.previous() == "1.0.0"
    decision = home.decision()
    assert decision is not None and decision.state == "committed"


def test_a_rollback_cut_short_is_finished(tmp_path: Path, bundles: Path) -> None:
    home = new_home(tmp_path / "home", bundles)
    stage(home, bundles, "1.1.0")
    home.mark_bad("1.1.0", "exited 3 times on trial")
    assert launcher_for(home).choose() == ("1.0.0", False)
    decision = home.decision()
    assert decision is not None and decision.state == "rolled_back"
    assert decision.reason == "exited 3 times on trial"


def test_the_running_version_and_the_rollback_target_are_never_removed(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles, committed="1.0.0")
    unpack(home, bundles, "0.9.0")
    stage(home, bundles, "1.1.0")
    runner = launcher_for(home)
    for version in ("0.9.0", "1.0.0"):
        home.health_path(version).parent.mkdir(parents=True, exist_ok=True)
        home.health_path(version).write_text("{}")
    runner.commit("1.1.0", "healthy")
    installed = sorted(p.name for p in home.versions.iterdir())
    assert installed == ["1.0.0", "1.1.0"]  # 0.9.0 is neither current nor previous
    assert [p.name for p in home.health_path("1.0.0").parent.iterdir()] == ["1.0.0.json"]
    runner.rollback("1.1.0", "test")  # a later failure: both stay
    assert sorted(p.name for p in home.versions.iterdir()) == ["1.0.0", "1.1.0"]
    assert home.previous() == "1.0.0" and home.floor() == "1.1.0"


def test_leftovers_of_an_interrupted_unpacking_are_removed_at_start(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    partial = home.versions / ".partial-1.1.0-abc"
    (partial / "agent").mkdir(parents=True)
    (partial / "agent" / "__init__.py").write_text("half")
    launcher_for(home).remove_leftovers()
    assert not partial.exists() and home.version_dir("1.0.0").is_dir()


def test_the_unpacking_of_an_update_process_still_at_work_is_left_to_it(
    tmp_path: Path, bundles: Path
) -> None:
    """An update process outlives a launcher killed with its agent (its own process
    group): its ``.partial-*`` is not removed under it (renamed to ``versions/<v>``
    meanwhile, it would be emptied, its self-check fail and the version be marked bad)."""
    from agent.update.lock import UpdateLock

    home = new_home(tmp_path / "home", bundles)
    partial = home.versions / ".partial-1.1.0-abc"
    (partial / "agent").mkdir(parents=True)
    (partial / "agent" / "__init__.py").write_text("half")
    with UpdateLock(home.state) as lock:
        assert lock.try_acquire()
        launcher_for(home).remove_leftovers()
        assert (partial / "agent" / "__init__.py").is_file()
    launcher_for(home).remove_leftovers()
    assert not partial.exists() and home.version_dir("1.0.0").is_dir()


def test_a_new_version_using_far_more_memory_or_cpu_is_not_healthy(
    tmp_path: Path, bundles: Path
) -> None:
    from agent.update.state import Health

    home = new_home(tmp_path / "home", bundles)
    runner = launcher_for(home)
    trial = Trial("1.1.0", 0.0, baseline_rss=50_000_000, baseline_cpu=0.01)
    good = Health("1.1.0", 7, 0.0, True, 2, 2, "", 60_000_000, 0.02)
    assert runner.judge(good, 7, 700.0, trial) == ""
    fat = Health("1.1.0", 7, 0.0, True, 2, 2, "", 150_000_000, 0.02)
    assert "memory" in runner.judge(fat, 7, 700.0, trial)
    busy = Health("1.1.0", 7, 0.0, True, 2, 2, "", 60_000_000, 0.5)
    assert "CPU" in runner.judge(busy, 7, 700.0, trial)
    assert "1 of 2 checks" in runner.judge(
        Health("1.1.0", 7, 0, True, 2, 1, "", 1, 0), 7, 700, trial
    )
    assert "without a restart" in runner.judge(good, 7, 5.0, trial)
    assert "another" not in runner.judge(good, 8, 700.0, trial)
    assert runner.judge(good, 8, 700.0, trial) == "no health report from this start"


def test_state_files_are_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "decision.json"
    write_atomic(path, b'{"state": "committed"}')
    write_atomic(path, b'{"state": "trial"}')
    assert read_json(path) == {"state": "trial"}
    assert [p.name for p in path.parent.iterdir()] == ["decision.json"]  # no temporary left
    Home(tmp_path).decide(Decision("committed", "1.1.0", "1.0.0", "x" * 2000, 1.0))
    assert len(read_json(path)["reason"]) == 300  # type: ignore[index]


# ---- Windows: the service's recovery actions, set at every start -----------------------


def test_the_launcher_sets_the_services_recovery_actions() -> None:
    commands = launcher.recovery_commands(r"C:\Windows")
    assert commands == [
        [r"C:\Windows\System32\sc.exe", "failure", "CommuneAgent", "reset=", "86400",
         "actions=", "restart/5000/restart/5000/restart/60000"],
        [r"C:\Windows\System32\sc.exe", "failureflag", "CommuneAgent", "1"],
    ]  # fmt: skip
    ran: list[list[str]] = []

    def run(command: list[str]) -> int:
        ran.append(command)
        return 5 if command[1] == "failureflag" else 0

    assert launcher.set_recovery(run, r"C:\Windows") == ["failureflag CommuneAgent: exit 5"]
    assert ran == commands


def test_the_launcher_keeps_its_home_to_system_and_the_administrators() -> None:
    """Users may write folders made at the top of C: (they inherit its ACL): the home's
    versions and state files would choose the code the service runs as SYSTEM."""
    home = Path(r"C:\commune-agent")
    commands = launcher.home_acl_commands("C:\\Windows\\", home)
    assert commands == [
        [r"C:\Windows\System32\icacls.exe", str(home), "/inheritance:r", "/grant:r",
         "*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"],
    ]  # fmt: skip
    ran: list[list[str]] = []

    def run(command: list[str]) -> int:
        ran.append(command)
        raise OSError("icacls.exe not found")

    assert launcher.protect_home(run, r"C:\Windows", home) == [
        f"{home} /inheritance:r: icacls.exe not found"
    ]
    assert ran == commands


# ---- the launcher's imports and its unit ---------------------------------------------------

AGENT = Path(__file__).resolve().parent.parent / "agent"
#: The modules copied beside the launcher: they may import each other, nothing else.
LAUNCHER_OWN = {"agent.update"} | {
    f"agent.update.{name.removesuffix('.py')}"
    for name in install.LAUNCHER_MODULES
    if name != "__init__.py"
}


def test_the_launcher_imports_only_the_standard_library() -> None:
    for name in install.LAUNCHER_MODULES:
        found = imports(AGENT / "update" / name) - LAUNCHER_OWN
        if name == "launcher_windows.py":  # the service host: pywin32, on Windows only
            found -= {"servicemanager", "win32service", "win32serviceutil", "agent.update"}
        if name == "datafolder.py":  # the config folder's owner and ACL, on Windows only
            found -= {"pywintypes", "win32file", "win32security"}
        outside = {n for n in found if n.split(".")[0] not in sys.stdlib_module_names}
        assert not outside, f"{name} imports {outside}"
    tree = ast.parse((AGENT / "update" / "launcher.py").read_text())
    assert all(not isinstance(n, ast.ImportFrom) or n.level == 0 for n in ast.walk(tree))


def test_the_installed_launcher_runs_with_no_site_packages(tmp_path: Path) -> None:
    script = install.install_launcher(tmp_path)
    result = subprocess.run(
        [sys.executable, "-E", "-s", "-S", str(script), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--trial-timeout" in result.stdout


def test_install_launcher_prints_a_unit_running_the_launcher(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agent.commands import main
    from tests.factories import agent_toml

    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n'))
    home = tmp_path / "home"
    result = CliRunner().invoke(
        main, ["install-launcher", "-c", str(config), "--home", str(home), "--print"]
    )
    assert result.exit_code == 0, result.output
    assert f"{home}/launcher/launcher.py --home {home} --config {config}" in result.output
    assert f"ReadWritePaths={home}/versions {home}/state {home}/tuf" in result.output
    assert "KillMode=mixed" in result.output and "User=commune-agent" in result.output
    assert not home.exists()  # --print changes nothing
    unit = tmp_path / "commune-agent.service"
    unit.write_text(result.output)
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


# ---- the agent's side: which order it follows, when --------------------------------------


def test_the_spread_point_is_stable_bounded_and_spread() -> None:
    points = [spread_delay(f"pc-{n}", 3600.0) for n in range(2000)]
    assert points == [spread_delay(f"pc-{n}", 3600.0) for n in range(2000)]
    assert all(0 <= p < 3600.0 for p in points)
    quarters = [sum(1 for p in points if q * 900 <= p < (q + 1) * 900) for q in range(4)]
    assert min(quarters) > 400, quarters
    assert spread_delay("pc-1", 0.0) == 0.0


def test_an_order_is_refused_below_the_floor_said_rolled_back_when_bad_and_waits_when_paused(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles, committed="1.0.0")
    assert judge(None, "1.0.0", home) is None
    assert judge(ReleaseOrder(version="1.0.0"), "1.0.0", home) is None
    below = judge(ReleaseOrder(version="0.9.0"), "1.0.0", home)
    assert below is not None and below.state == "refused" and "floor 1.0.0" in below.reason
    paused = judge(ReleaseOrder(version="1.1.0", paused=True), "1.0.0", home)
    assert paused is not None and paused.state == "paused"
    home.set_pending("1.0.0")  # 1.0.0 on trial: it stages nothing before its verdict
    assert judge(ReleaseOrder(version="1.1.0"), "1.0.0", home) is None
    home.clear_pending()
    home.mark_bad("1.1.0", "exited 3 times on trial")
    bad = judge(ReleaseOrder(version="1.1.0"), "1.0.0", home)
    # Said as the rollback it was, for as long as it is asked for: the gate keeps counting it.
    assert bad is not None and bad.state == "rolled_back" and "exited 3 times" in bad.reason


class Scripted:
    """A stager that answers from a function instead of running the update process."""

    def __init__(self, stage: Callable[[str], Attempt]) -> None:
        self.stage = stage
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


#: An update process that never ends, with a child of its own (as it runs the fetch),
#: both named by the argument it is given; it writes a file of that name once both run.
HANGS = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]])
open(sys.argv[1], "w").close()
time.sleep(600)
"""


def running(marker: Path) -> list[int]:
    """The processes whose command line names ``marker`` and have not ended."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if str(marker) in (process.info["cmdline"] or []) and process.info["status"] != "zombie":
            found.append(process.pid)
    return found


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_an_update_process_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    stager = follow.ProcessStager([sys.executable, "-c", HANGS, str(marker)], timeout_s=3.0)
    outcome = stager.stage("1.1.0")
    assert (outcome.state, outcome.reason) == ("failed", "the update process took over 3 s")
    wait_for(lambda: not running(marker), 10, "the update process's group lives on")


@pytest.mark.skipif(sys.platform == "win32", reason="process groups")
def test_a_stopping_agent_ends_its_follower_and_the_staging_under_way_at_once(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    marker = tmp_path / "started"
    stager = follow.ProcessStager([sys.executable, "-c", HANGS, str(marker)])  # an hour
    order = ReleaseOrder(version="1.1.0", spread_s=0.0)
    updates = UpdateFollower(
        home, "pc-01", "1.0.0", lambda: order, stager, lambda: None, lambda: None
    )
    thread = threading.Thread(target=updates.follow)
    thread.start()
    wait_for(marker.exists, 30, "the update process did not start")
    assert len(running(marker)) == 2
    updates.stop()
    thread.join(30)
    assert not thread.is_alive()
    wait_for(lambda: not running(marker), 10, "the update process's group lives on")
    assert updates.report() == UpdateReport("failed", "1.1.0", "1.0.0", "the agent stopped",
                                            updates.attempt_ts)  # fmt: skip
    # Stopped between two looks (the poll): it returns at once too; nothing is staged after.
    idle = UpdateFollower(home, "pc-01", "1.1.0", lambda: order, stager, lambda: None,
                          lambda: None)  # fmt: skip
    thread = threading.Thread(target=idle.follow)
    thread.start()
    idle.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert stager.stage("1.2.0").reason == "the agent stopped"


def test_the_follower_waits_its_turn_then_backs_off_and_honours_retry_after(
    tmp_path: Path, bundles: Path
) -> None:
    home = new_home(tmp_path / "home", bundles)
    outcomes = [Attempt("failed", "1.1.0", "503", retry_after=0.0), Attempt("failed", "1.1.0", "x")]
    asked: list[str] = []
    finished: list[bool] = []

    def stager(version: str) -> Attempt:
        asked.append(version)
        return outcomes.pop(0) if outcomes else Attempt("staged", version)

    order = ReleaseOrder(version="1.1.0", spread_s=0.0)
    updates = UpdateFollower(
        home, "pc-01", "1.0.0", lambda: order, Scripted(stager), lambda: None,
        lambda: finished.append(True), retry_min_s=3600.0,
    )  # fmt: skip

    assert [updates.step() for _ in range(4)] == [False, False, False, False]
    # retry_after 0: asked again at once; then a 1-hour backoff holds the third ask.
    assert asked == ["1.1.0", "1.1.0"] and not finished
    report = updates.report()
    assert report is not None and (report.state, report.reason) == ("failed", "x")
    updates._not_before = 0.0
    assert updates.step() is True and finished == [True]
    report = updates.report()
    assert report is not None and report.state == "staged"
    assert EXIT_UPDATE == 75
    assert follow.outcome_of("1.1.0", b"noise\n", b"Traceback\nOSError: disk full\n").reason == (
        "update process: OSError: disk full"
    )


# ---- the update process: the fetch contract, refusals, the new version's self-check -------


NO_RESULT = "fetch gave no result (exit 1)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"ok": true, "kind": "", "reason": "", "path": "/h/tuf/downloads/x.zip", '
         b'"retry_after": null}', ("/h/tuf/downloads/x.zip", "", "", None)),
        (b'{"ok": false, "kind": "refused", "reason": "revoked", "path": null}',
         (None, "refused", "fetch: revoked", None)),
        (b'{"ok": false, "kind": "failed", "reason": "503", "retry_after": 42}',
         (None, "failed", "fetch: 503", 42.0)),
        (b'{"ok": false, "kind": "weird", "reason": "x", "retry_after": -1}',
         (None, "failed", "fetch: x", None)),
        (b"Traceback (most recent call last):", (None, "failed", NO_RESULT, None)),
        (b"", (None, "failed", NO_RESULT, None)),
    ],
)  # fmt: skip
def test_the_fetch_modules_json_line_is_read_by_its_contract(
    line: bytes, expected: tuple[str | None, str, str, float | None]
) -> None:
    from agent.update.process import decode_fetch_output

    fetched = decode_fetch_output(b"a log line\n" + line + b"\n", 1)
    refusal = fetched.refusal
    got = (
        str(fetched.path) if fetched.path else None,
        refusal.state if refusal else "",
        refusal.reason if refusal else "",
        refusal.retry_after if refusal else None,
    )
    assert got == expected


def test_the_fetch_command_line_is_the_contracts(tmp_path: Path) -> None:
    from agent.update.process import fetch_command

    command = fetch_command(tmp_path, "https://c:8443/releases", "1.1.0", "1.0.0", "/ca.pem")
    assert command[1:] == [
        "-m", "agent.update.fetch", "--home", str(tmp_path), "--url", "https://c:8443/releases",
        "--version", "1.1.0", "--floor", "1.0.0", "--ca-file", "/ca.pem",
    ]  # fmt: skip


SELF_CHECK_FAILS = (
    "agent/commands.py",
    '    click.echo(f"self-check passed: agent {__version__}, {len(checks)} check(s)")',
    '    raise click.ClickException("cannot run on this PC")',
)


def test_staging_runs_the_new_versions_self_check_and_writes_pending(
    tmp_path: Path, bundles: Path
) -> None:
    from agent.update.process import folder_fetcher
    from agent.update.process import stage as stage_version

    more = build_bundles(tmp_path / "more", [], {"1.4.0": SELF_CHECK_FAILS})
    home = new_home(tmp_path / "home", bundles)
    config = tmp_path / "agent.toml"
    from tests.factories import agent_toml

    config.write_text(agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n[[checks.host]]\n'))
    staged = stage_version(home, config, "1.1.0", folder_fetcher(bundles))
    assert (staged.state, home.pending()) == ("staged", "1.1.0")
    home.clear_pending()
    refused = stage_version(home, config, "1.4.0", folder_fetcher(more))
    assert refused.state == "refused" and "cannot run on this PC" in refused.reason
    assert "cannot run on this PC" in home.bad()["1.4.0"]["reason"]
    assert home.pending() is None
    again = stage_version(home, config, "1.4.0", folder_fetcher(more))
    assert again.state == "refused" and again.reason.startswith("1.4.0 is marked bad")
    below = stage_version(home, config, "0.9.0", folder_fetcher(bundles))
    assert (below.state, below.reason) == ("refused", "0.9.0 is below the floor 1.0.0")
    missing = stage_version(home, config, "2.0.0", folder_fetcher(bundles))
    assert missing.state == "failed" and "commune-agent-2.0.0.zip" in missing.reason
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "commune-agent-1.5.0.zip").write_bytes(
        (bundles / "commune-agent-1.1.0.zip").read_bytes()
    )
    wrong = stage_version(home, config, "1.5.0", folder_fetcher(tampered))
    assert (wrong.state, wrong.reason) == (
        "refused",
        "bundle: bundle holds version 1.1.0, not 1.5.0",
    )


def test_a_second_launcher_on_the_same_home_stops_at_once(tmp_path: Path, bundles: Path) -> None:
    home = new_home(tmp_path / "home", bundles)
    first = launcher._hold_lock(home.state / "launcher.lock")
    assert first is not None
    script = home.root / "launcher" / "launcher.py"
    result = subprocess.run(
        [sys.executable, str(script), "--home", str(home.root), "--config", "x.toml"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    first.close()
    assert result.returncode == 1 and "another launcher runs" in result.stderr


def test_laying_out_a_home_installs_the_running_agent_as_the_first_version(
    tmp_path: Path,
) -> None:
    import agent

    done = install.lay_out(tmp_path / "home")
    home = Home(tmp_path / "home")
    assert home.current() == agent.__version__ == home.floor()
    assert not bundle.verify_tree(home.version_dir(agent.__version__))
    assert (home.root / "launcher" / "launcher.py").is_file()
    assert (home.root / "launcher" / "agent" / "update" / "state.py").is_file()
    assert done[-1] == f"installed version {agent.__version__}"
    home.set_current("9.9.9")  # a later run keeps what the launcher decided
    install.install_version(home.root, Path(agent.__file__).parent.parent, agent.__version__)
    assert home.current() == "9.9.9"


def test_the_spread_counts_from_when_the_order_first_arrived_across_restarts(
    tmp_path: Path, bundles: Path
) -> None:
    import time

    home = new_home(tmp_path / "home", bundles)
    order = ReleaseOrder(version="1.1.0", rollout="r1", spread_s=2 * 86400.0)
    point = spread_delay("pc-01", order.spread_s)
    asked: list[str] = []

    def stager(version: str) -> Attempt:
        asked.append(version)
        return Attempt("failed", version, "offline")

    def agent_started() -> UpdateFollower:
        return UpdateFollower(
            home, "pc-01", "1.0.0", lambda: order, Scripted(stager), lambda: None, lambda: None
        )

    assert agent_started().step() is False and asked == []  # its turn is later
    first = read_json(home.state / "order.json")
    assert first is not None and first["version"] == "1.1.0"
    # The PC restarts (daily) long after the order arrived: its turn has come.
    first["first_seen"] = time.time() - point - 60
    from agent.update.state import write_json

    write_json(home.state / "order.json", first)
    assert agent_started().step() is False and asked == ["1.1.0"]
    # Another rollout (or version) starts its own spread.
    order = ReleaseOrder(version="1.1.0", rollout="r2", spread_s=2 * 86400.0)
    agent_started().step()
    assert asked == ["1.1.0"] and read_json(home.state / "order.json")["rollout"] == "r2"  # type: ignore[index]


def test_an_agent_not_run_by_the_launcher_follows_no_release_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.central import CentralConfig
    from agent.config import load_config
    from agent.runner import update_follower
    from agent.update import HOME_ENV
    from tests.factories import agent_toml

    config_path = tmp_path / "agent.toml"
    config_path.write_text(agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n'))
    config = load_config(config_path)
    central = CentralConfig(config)
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert update_follower(config, central, lambda: None, lambda: None) is None
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    follower = update_follower(config, central, lambda: None, lambda: None)
    assert follower is not None and follower.home.root == tmp_path / "home"


def test_unsigned_bundles_from_a_folder_are_refused_outside_the_tests(
    tmp_path: Path, bundles: Path
) -> None:
    """``[update] bundle_dir`` skips the signature: a config line or a folder anyone can
    fill must not make a PC install a version the signed targets do not list."""
    from agent.update.process import UNSIGNED_BUNDLES_ALLOWED, UNSIGNED_BUNDLES_ENV
    from tests.factories import agent_toml

    home = new_home(tmp_path / "home", bundles)
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n[[checks.host]]\n'))
    command = [sys.executable, "-m", "agent.update.process", "--home", str(home.root)]
    command += ["--config", str(config), "--version", "1.1.0", "--bundle-dir", str(bundles)]

    def stage_with(value: str | None) -> tuple[int, dict[str, object]]:
        environment = {k: v for k, v in os.environ.items() if k != UNSIGNED_BUNDLES_ENV}
        if value is not None:
            environment[UNSIGNED_BUNDLES_ENV] = value
        done = subprocess.run(
            command, capture_output=True, env=environment, timeout=120, check=False
        )
        return done.returncode, json.loads(done.stdout.decode().splitlines()[-1])

    for value in (None, "1", "yes"):
        code, outcome = stage_with(value)
        assert code == 1 and outcome["state"] == "refused", (value, outcome)
        assert "bundle_dir" in str(outcome["reason"]), outcome
        assert home.pending() is None and not home.version_dir("1.1.0").exists()
    code, outcome = stage_with(UNSIGNED_BUNDLES_ALLOWED)
    assert (code, outcome["state"], home.pending()) == (0, "staged", "1.1.0")


def test_a_version_folder_that_is_not_the_signed_bundle_is_replaced_not_kept(
    tmp_path: Path, bundles: Path
) -> None:
    """A folder already named for the version (planted, or left by other means) is kept
    only when its manifest is the bundle's: whole against its own manifest is not enough."""
    home = new_home(tmp_path / "home", bundles)
    planted = unpack(home, bundles, "1.1.0")
    runner = planted / "agent" / "runner.py"
    runner.write_bytes(runner.read_bytes() + b"\nPLANTED = True\n")
    manifest = bundle.decode_manifest((planted / bundle.MANIFEST).read_bytes())
    files = {**manifest.files, "agent/runner.py": bundle._sha256_file(runner)}
    (planted / bundle.MANIFEST).write_bytes(bundle.Manifest("1.1.0", files).encode())
    assert bundle.verify_tree(planted) == []  # whole by its own account

    folder = unpack(home, bundles, "1.1.0")
    assert b"PLANTED" not in (folder / "agent" / "runner.py").read_bytes()
    signed = bundle.read_manifest(bundles / "commune-agent-1.1.0.zip")
    assert bundle.decode_manifest((folder / bundle.MANIFEST).read_bytes()) == signed
    assert bundle.verify_tree(folder) == []


CHOOSE_AS_SERVICE_USER = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1] + "/launcher")
from agent.update.launcher import Launcher, Options
os.setgroups([]); os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))
print(Launcher(Options(home=Path(sys.argv[1]), config=Path("agent.toml"))).choose())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to lay out for another user")
def test_a_home_laid_out_by_root_is_runnable_by_the_service_user() -> None:
    """``install-launcher`` runs as root; the launcher as the service user must read the
    first version and the state files root wrote (mkdtemp makes version folders 0700)."""
    import pwd
    import shutil
    import tempfile

    nobody = pwd.getpwnam("nobody")
    scratch = Path(tempfile.mkdtemp(prefix="launcher-home-", dir="/tmp"))  # not pytest's 0700
    try:
        scratch.chmod(0o755)
        home = scratch / "home"
        install.lay_out(home)
        secret = scratch / "root-only"
        secret.mkdir(mode=0o700)
        (home / "state" / "link").symlink_to(secret)  # a link is given, not what it names
        install.hand_over(home, "nobody", "nogroup")
        assert secret.stat().st_uid == 0
        for name in install.WRITABLE:
            for path in [home / name, *(home / name).rglob("*")]:
                assert path.lstat().st_uid == nobody.pw_uid, path
        assert (home / "launcher" / "launcher.py").stat().st_uid == 0  # the launcher stays root's
        ids = [str(nobody.pw_uid), str(nobody.pw_gid)]
        chosen = subprocess.run(
            [sys.executable, "-c", CHOOSE_AS_SERVICE_USER, str(home), *ids],
            capture_output=True, text=True, timeout=60, check=False, cwd="/",
        )  # fmt: skip
        assert chosen.returncode == 0, chosen.stderr
        import agent

        assert chosen.stdout.strip() == repr((agent.__version__, False))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


HOLD_LOCK_AS_NOBODY = """
import fcntl, os, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    handle = open(sys.argv[1], "rb")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError as exc:
    print(type(exc).__name__)
else:
    print("held")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_another_user_cannot_hold_the_launchers_lock() -> None:
    """flock needs only a read handle: a lock file others can read lets any local user
    keep the launcher from starting (it would take them for a second launcher)."""
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="launcher-lock-", dir="/tmp"))  # not pytest's 0700
    try:
        scratch.chmod(0o755)
        lock = scratch / "launcher.lock"
        lock.touch(mode=0o644)  # as an earlier launcher left it
        lock.chmod(0o644)
        held = launcher._hold_lock(lock)
        assert held is not None
        held.close()
        assert lock.stat().st_mode & 0o777 == 0o600
        tried = subprocess.run(
            [sys.executable, "-c", HOLD_LOCK_AS_NOBODY, str(lock)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert tried.stdout.strip() == "PermissionError", tried
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
