"""The launcher and real agent versions as real processes, against a real Mosquitto.

Versions are built from this checkout with ``bundle.build`` (1.2.0 crashes at start,
1.3.0 never gets its birth acknowledged); the launcher runs from ``<home>/launcher`` as
installed; the collector's order reaches the agent as a signed retained config.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.update import bundle
from agent.update.state import Home, Trial
from agent.wire import SCHEMA_VERSION, AgentConfig, ReleaseOrder, Status, config_digest, encode
from tests.factories import signed, trust
from tests.servers import Mosquitto, Subscriber, wait_for
from tests.test_e2e_agent import PLACE, assert_complete_and_ordered, statuses
from tests.update_home import (
    CRASH_AT_START,
    NEVER_ACKNOWLEDGED,
    LauncherProcess,
    build_bundles,
    new_home,
    stage,
    unpack,
)

STATUS_TOPIC = "commune/dong-nai/la-nga/pc-01/status"
CONFIG_TOPIC = "commune/dong-nai/la-nga/pc-01/config"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    variants = {"1.2.0": CRASH_AT_START, "1.3.0": NEVER_ACKNOWLEDGED}
    return build_bundles(tmp_path_factory.mktemp("bundles"), ["1.0.0", "1.1.0"], variants)


@pytest.fixture
def watcher(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    subscriber = Subscriber(mosquitto.port, "commune/#").start()
    yield subscriber
    subscriber.stop()


def agent_config(folder: Path, port: int, bundles: Path) -> Path:
    config = folder / "agent.toml"
    config.write_text(
        f'[agent]\n{PLACE}interval = "0.5s"\nstate_dir = "{folder / "state"}"\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\nkeepalive = "5s"\nreconnect_max = "1s"\n'
        f'[update]\nbundle_dir = "{bundles}"\nretry_min = "1s"\n'
        "[remote]\nenabled = true\n"
        "[[checks.host]]\n"
    )
    trust(folder)
    return config


def order(
    subscriber: Subscriber,
    version: str,
    config_version: int = 1,
    paused: bool = False,
    spread_s: float = 0.0,
) -> None:
    """The collector's signed config for pc-01, asking for ``version``."""
    checks: dict[str, list[dict[str, object]]] = {"host": [{}]}
    order = ReleaseOrder(
        version=version, rollout="r1", ring="lab", paused=paused, spread_s=spread_s
    )
    message = AgentConfig(
        v=SCHEMA_VERSION, agent="pc-01", province="dong-nai", commune="la-nga",
        version=config_version, hash=config_digest(None, checks, order), checks=checks,
        published=1.7e9, release=order,
    )  # fmt: skip
    info = subscriber.client.publish(CONFIG_TOPIC, signed(encode(message)), qos=1, retain=True)
    info.wait_for_publish(10)


def births(subscriber: Subscriber) -> list[Status]:
    return [s for s in statuses(subscriber.snapshot("/status")) if s.state == "online"]


def wait_birth(
    subscriber: Subscriber, version: str, state: str = "", timeout: float = 60.0
) -> Status:
    def found() -> Status | None:
        for birth in reversed(births(subscriber)):
            if birth.version == version and (
                not state or (birth.update is not None and birth.update.state == state)
            ):
                return birth
        return None

    wait_for(lambda: found() is not None, timeout, f"no birth of {version} {state}")
    result = found()
    assert result is not None
    return result


def wait_decision(home: Home, state: str, version: str, timeout: float = 60.0) -> None:
    def decided() -> bool:
        decision = home.decision()
        return decision is not None and (decision.state, decision.version) == (state, version)

    wait_for(decided, timeout, f"no decision {state} {version}: {home.decision()}")


@pytest.fixture
def place(tmp_path: Path, mosquitto: Mosquitto, bundles: Path) -> tuple[Home, Path]:
    home = new_home(tmp_path / "home", bundles)
    return home, agent_config(tmp_path, mosquitto.port, bundles)


def outbox_path(config: Path) -> Path:
    return config.parent / "state" / "outbox.sqlite"


def next_seq(config: Path) -> int:
    """The seq the agent's outbox hands out next (kept in the outbox file itself)."""
    with contextlib.closing(sqlite3.connect(outbox_path(config))) as db:
        return int(db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])


def wait_more_data(watcher: Subscriber, count: int = 3) -> None:
    """``count`` envelopes more than the watcher has now."""
    seen = len(watcher.snapshot("/data"))
    wait_for(lambda: len(watcher.snapshot("/data")) >= seen + count, 30, "no more data")


def assert_one_sequence(watcher: Subscriber, config: Path, switch: int) -> None:
    """One outbox, one sequence, one identity across a switch of versions: every seq
    once (a repeat only byte-identical: a redelivery), in order, none missing, data on
    both sides of the watcher's message number ``switch``, and the outbox not about to
    hand out a seq it gave already (an outbox made anew numbers from its creation time:
    a jump the gap check sees)."""
    messages = watcher.snapshot()
    sent = assert_complete_and_ordered(messages)
    assert {(e.province, e.commune, e.agent) for e in sent} == {("dong-nai", "la-nga", "pc-01")}
    data = [i for i, m in enumerate(messages) if m.topic.endswith("/data")]
    assert data[0] < switch < data[-1], "no data on both sides of the switch"
    assert next_seq(config) > max(e.seq for e in sent)


def test_an_ordered_version_is_staged_switched_to_and_committed_with_nothing_lost(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path
) -> None:
    home, config = place
    launcher = LauncherProcess(home, config).start()
    try:
        wait_birth(watcher, "1.0.0")
        wait_for(lambda: len(watcher.snapshot("/data")) >= 3, 30, "no data from 1.0.0")
        order(watcher, "1.1.0")
        staged = wait_birth(watcher, "1.0.0", "staged")
        assert staged.update is not None and staged.update.version == "1.1.0"
        wait_decision(home, "committed", "1.1.0")
        committed = wait_birth(watcher, "1.1.0", "committed")
        assert committed.update is not None and committed.update.previous == "1.0.0"
        assert committed.update.launcher == "1.0"
        count = len(watcher.snapshot("/data"))
        wait_for(lambda: len(watcher.snapshot("/data")) >= count + 3, 30, "no data from 1.1.0")
    finally:
        launcher.stop()
    assert (home.current(), home.previous(), home.floor(), home.pending()) == (
        "1.1.0", "1.0.0", "1.1.0", None,
    )  # fmt: skip
    offline = [s for s in statuses(watcher.snapshot("/status")) if s.state == "offline"]
    assert any(s.reason == "updating" and s.version == "1.0.0" for s in offline)
    # One outbox, one sequence, one identity across the switch: nothing lost, nothing
    # repeated with other content, nothing out of order.
    sent = assert_complete_and_ordered(watcher.snapshot())
    assert {e.agent for e in sent} == {"pc-01"}
    assert outbox_path(config).is_file() and not (home.version_dir("1.1.0") / "state").exists()
    assert not bundle.verify_tree(home.version_dir("1.0.0"))  # the rollback target is kept
    assert "1.1.0" not in home.bad()


def test_a_crash_looping_version_is_rolled_back_after_n_exits_and_marked_bad(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path
) -> None:
    home, config = place
    stage(home, bundles, "1.2.0")
    launcher = LauncherProcess(home, config, max_exits=3).start()
    try:
        wait_decision(home, "rolled_back", "1.2.0")
        back = wait_birth(watcher, "1.0.0", "rolled_back")
    finally:
        launcher.stop()
    assert back.update is not None and back.update.version == "1.2.0"
    assert back.update.reason == "exited 3 times on trial (last code 1)"
    assert home.bad()["1.2.0"]["reason"] == back.update.reason
    assert (home.current(), home.pending()) == ("1.0.0", None)
    assert home.version_dir("1.2.0").is_dir()  # kept for inspection until the next commit


def test_a_version_never_healthy_is_rolled_back_after_t(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path
) -> None:
    home, config = place
    stage(home, bundles, "1.3.0")
    # Staged ten days ago, then the PC was off: only the time it runs counts.
    home.set_trial(Trial("1.3.0", time.time() - 10 * 86400, ran_s=0.5))
    launcher = LauncherProcess(home, config, trial_timeout=4).start()
    try:
        trial = wait_birth(watcher, "1.3.0", "trial")
        assert trial.update is not None and trial.update.previous == "1.0.0"
        wait_for(lambda: len(watcher.snapshot("/data")) >= 2, 30, "no data from 1.3.0")
        wait_decision(home, "rolled_back", "1.3.0")
        back = wait_birth(watcher, "1.0.0", "rolled_back")
        switch = len(watcher.snapshot())
        wait_more_data(watcher)
    finally:
        launcher.stop()
    assert back.update is not None
    assert back.update.reason == "not healthy after 4 s: birth not acknowledged by the broker"
    assert "1.3.0" in home.bad() and home.current() == "1.0.0"
    # What the version rolled back sent stays sent: the committed one goes on from its
    # outbox, its seq and its identity.
    assert_one_sequence(watcher, config, switch)


def test_a_line_down_through_the_trial_is_not_held_against_the_version(
    tmp_path: Path, bundles: Path
) -> None:
    """The commune's line is down (nothing answers at the broker's address): the new
    version cannot get its birth acknowledged, through no fault of its own. Its trial
    clock stops while the agent says the broker is unreachable, so it stays on trial
    instead of being marked bad for good; past the network grace it is judged anyway."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: every connect is refused
    port = closed.getsockname()[1]
    try:
        home = new_home(tmp_path / "home", bundles)
        config = agent_config(tmp_path, port, bundles)
        stage(home, bundles, "1.1.0")
        # The trial timeout leaves the agent time to start on a busy machine; what follows
        # waits on the trial's own record, not on a clock.
        launcher = LauncherProcess(home, config, trial_timeout=10, network_grace=3600).start()
        try:
            wait_for(lambda: (h := home.health("1.1.0")) is not None and h.broker_unreachable,
                     60, "the agent never said its broker was unreachable")  # fmt: skip
            wait_for(lambda: (t := home.trial("1.1.0")) is not None and t.waited_s > 12,
                     120, "the line-down time was not set aside")  # fmt: skip
            trial = home.trial("1.1.0")
            assert home.pending() == "1.1.0" and "1.1.0" not in home.bad(), home.decision()
            assert trial is not None and trial.ran_s < 10, trial  # more than T ran, unheld
        finally:
            launcher.stop()
        # No grace: the same trial is judged on its running time.
        launcher = LauncherProcess(home, config, trial_timeout=10, network_grace=0).start()
        try:
            wait_decision(home, "rolled_back", "1.1.0")
        finally:
            launcher.stop()
        assert "birth not acknowledged" in home.bad()["1.1.0"]["reason"]
    finally:
        closed.close()


@pytest.mark.parametrize("when", ["on trial", "after commit"])
def test_files_eaten_after_the_switch_are_detected_rolled_back_and_reported(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path, when: str
) -> None:
    home, config = place
    stage(home, bundles, "1.1.0")
    healthy_after = 60 if when == "on trial" else 1
    launcher = LauncherProcess(home, config, healthy_after=healthy_after).start()
    try:
        wait_birth(watcher, "1.1.0", "trial" if when == "on trial" else "committed")
        (home.version_dir("1.1.0") / "agent" / "probes.py").unlink()  # as anti-malware does
        wait_decision(home, "rolled_back", "1.1.0")
        back = wait_birth(watcher, "1.0.0", "rolled_back")
    finally:
        launcher.stop()
    assert back.update is not None and "agent/probes.py" in back.update.reason
    assert "agent/probes.py" in home.bad()["1.1.0"]["reason"]
    assert home.current() == "1.0.0"


def test_files_eaten_before_the_switch_are_detected_rolled_back_and_reported(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path
) -> None:
    home, config = place
    stage(home, bundles, "1.1.0")
    (home.version_dir("1.1.0") / "agent" / "wire.py").write_bytes(b"quarantined")
    launcher = LauncherProcess(home, config).start()
    try:
        back = wait_birth(watcher, "1.0.0", "rolled_back")
    finally:
        launcher.stop()
    assert back.update is not None and back.update.reason.endswith("agent/wire.py: changed")
    assert not any(b.version == "1.1.0" for b in births(watcher))  # it never started


def power_cut_states(home: Home, bundles: Path) -> dict[str, Callable[[], None]]:
    """What a kill -9 leaves on disk at each step of staging (each step writes under a
    temporary name and renames, so these are all the states there are)."""

    def download() -> None:
        cut = home.root / "tuf" / "downloads" / "commune-agent-1.1.0.zip"
        cut.parent.mkdir(parents=True, exist_ok=True)
        data = (bundles / "commune-agent-1.1.0.zip").read_bytes()
        cut.write_bytes(data[: len(data) // 2])

    def unpack_half() -> None:
        partial = home.versions / ".partial-1.1.0-x1y2"
        folder = unpack(home, bundles, "1.1.0")
        folder.rename(partial)
        for path in sorted(partial.rglob("*.py"))[::2]:
            path.unlink()

    def rename() -> None:
        unpack(home, bundles, "1.1.0")

    def state_write() -> None:
        unpack(home, bundles, "1.1.0")
        (home.state / "pending").write_bytes(b"")

    return {
        "download": download,
        "unpack": unpack_half,
        "rename": rename,
        "state write": state_write,
    }


@pytest.mark.parametrize("step", ["download", "unpack", "rename", "state write"])
def test_a_power_cut_during_staging_leaves_a_complete_version_that_updates_again(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path, step: str
) -> None:
    home, config = place
    power_cut_states(home, bundles)[step]()
    order(watcher, "1.1.0")
    launcher = LauncherProcess(home, config).start()
    try:
        first = wait_birth(watcher, "1.0.0")
        assert first.update is None or first.update.state != "rolled_back"
        wait_decision(home, "committed", "1.1.0")
        wait_birth(watcher, "1.1.0", "committed")
    finally:
        launcher.stop()
    assert home.bad() == {}
    assert not [p for p in home.versions.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("moment", ["staging", "pending written", "first start", "commit"])
def test_kill_9_of_launcher_and_agent_at_every_step_leaves_a_complete_version(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path, moment: str
) -> None:
    """A real kill -9 of the launcher's whole process group (launcher, agent, update
    process) as soon as the step is seen on disk; started again, the PC runs a
    complete version and the update completes."""
    home, config = place
    seen = {
        "staging": lambda: any(home.versions.iterdir()) and len(list(home.versions.iterdir())) > 1,
        "pending written": lambda: home.pending() == "1.1.0",
        "first start": lambda: (d := home.decision()) is not None and d.state == "trial",
        "commit": lambda: (d := home.decision()) is not None and d.state == "committed",
    }[moment]
    launcher = LauncherProcess(home, config).start()
    try:
        wait_birth(watcher, "1.0.0")
        wait_for(lambda: len(watcher.snapshot("/data")) >= 2, 30, "no data from 1.0.0")
        order(watcher, "1.1.0")
        wait_for(seen, 60, f"never saw {moment}")
    finally:
        launcher.kill9()
    running_before = {b.version for b in births(watcher)}
    switch = len(watcher.snapshot())
    launcher = LauncherProcess(home, config).start()
    try:
        wait_decision(home, "committed", "1.1.0")
        wait_birth(watcher, "1.1.0", "committed")
        wait_more_data(watcher)
    finally:
        launcher.stop()
    assert home.bad() == {} and home.current() == "1.1.0"
    assert not bundle.verify_tree(home.version_dir("1.1.0"))
    assert running_before <= {"1.0.0", "1.1.0"}
    # The outbox survived whole: what was written before the kill is sent after it, in
    # the same sequence.
    assert_one_sequence(watcher, config, switch)


#: Runs a script (argv[2:]) in a process where any use of the network is refused and
#: recorded in the file argv[1]: creating a socket, resolving a name, a URL opened. The
#: audit hook is the interpreter's own: no module can get round it, and it is not
#: inherited by the processes the script starts.
NO_NETWORK = """
import os, runpy, sys
record = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
def refuse(event, args):
    if event.startswith(("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.")):
        os.write(record, (event + "\\n").encode())
        raise PermissionError("no network here: " + event)
sys.addaudithook(refuse)
script = sys.argv[2]
sys.argv = sys.argv[2:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
"""


def test_the_launcher_says_it_runs_and_starts_the_agent_with_no_network_at_all(
    place: tuple[Home, Path], watcher: Subscriber, tmp_path: Path
) -> None:
    """The service's process does no network work: with every socket and name lookup
    refused in the launcher's process, it says it runs before anything else, and the
    agent it starts (a process of its own) connects and is born."""
    home, config = place
    hook, attempts = tmp_path / "no_network.py", tmp_path / "network-attempts"
    hook.write_text(NO_NETWORK)
    probe = tmp_path / "probe.py"
    probe.write_text("import socket\nsocket.getaddrinfo('localhost', 80)\n")
    tried = subprocess.run(
        [sys.executable, str(hook), str(attempts), str(probe)], capture_output=True, check=False
    )
    # What would catch the launcher does catch a name lookup.
    assert tried.returncode != 0 and attempts.read_text() == "socket.getaddrinfo\n"
    attempts.unlink()
    launcher = LauncherProcess(home, config).start([str(hook), str(attempts)])
    try:
        born = wait_birth(watcher, "1.0.0")
        assert launcher.process is not None and launcher.process.poll() is None, launcher.log
    finally:
        assert launcher.stop() == 0, launcher.log
    assert attempts.read_text() == "", "the launcher used the network"
    assert born.agent == "pc-01"
    said = [line for line in launcher.log.splitlines() if " launcher: " in line]
    assert "launcher 1.0 running for" in said[0], said
    assert any("starting 1.0.0" in line for line in said[1:]), said


def test_a_paused_order_and_one_whose_turn_has_not_come_are_reported_and_wait(
    place: tuple[Home, Path], watcher: Subscriber
) -> None:
    home, config = place
    order(watcher, "1.1.0", paused=True)
    launcher = LauncherProcess(home, config).start()
    try:
        paused = wait_birth(watcher, "1.0.0", "paused")
        assert paused.update is not None and paused.update.version == "1.1.0"
        order(watcher, "1.1.0", config_version=2, spread_s=7 * 86400.0)
        waiting = wait_birth(watcher, "1.0.0", "waiting")
        assert waiting.update is not None and waiting.update.launcher == "1.0"
    finally:
        launcher.stop()
    assert home.pending() is None and not home.version_dir("1.1.0").exists()


def test_stopping_the_launcher_stops_the_agent(
    place: tuple[Home, Path], watcher: Subscriber
) -> None:
    home, config = place
    launcher = LauncherProcess(home, config).start()
    assert launcher.process is not None
    try:
        wait_birth(watcher, "1.0.0")
        launcher.process.send_signal(signal.SIGTERM)
        assert launcher.process.wait(30) == 0
        with pytest.raises(ProcessLookupError):  # the agent went with it
            os.killpg(launcher.process.pid, 0)
    finally:
        launcher.kill9()

    def stopped() -> bool:  # a clean stop, not the Last Will
        offline = [s for s in statuses(watcher.snapshot("/status")) if s.state == "offline"]
        return bool(offline) and offline[-1].reason == "stopped"

    wait_for(stopped, 20, "the agent did not announce a clean stop")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a small filesystem")
def test_a_full_disk_under_state_neither_stops_the_launcher_nor_the_trial(
    place: tuple[Home, Path], watcher: Subscriber, bundles: Path
) -> None:
    """Any local user can fill the disk: the launcher, unable to write the trial's
    records, still runs the staged version and commits it once there is room again."""
    home, config = place
    stage(home, bundles, "1.1.0")
    (home.state / "launcher.lock").touch()
    kept = {p.name: p.read_bytes() for p in home.state.iterdir() if p.is_file()}
    mount = ["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(home.state)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    launcher = None
    try:
        for name, data in kept.items():
            (home.state / name).write_bytes(data)
        filler = home.state / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as sink:
            while True:
                sink.write(b"\0" * 4096)
                sink.flush()
        launcher = LauncherProcess(home, config).start()
        wait_birth(watcher, "1.1.0")
        wait_for(lambda: "could not write the trial" in launcher.log, 30, "no trial write")
        assert launcher.process is not None and launcher.process.poll() is None, launcher.log
        filler.unlink()
        wait_decision(home, "committed", "1.1.0")
    finally:
        if launcher is not None:
            launcher.stop()
        subprocess.run(["umount", "-l", str(home.state)], check=False)
