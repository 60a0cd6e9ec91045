"""The collector's config on the agent: judged strictly, merged under the local layers,
refused whole when wrong, kept on disk for a start with the collector away."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.central import LOCAL, OVERRIDES, CentralConfig
from agent.commands import main
from agent.config import load_config
from agent.runner import ConfigFollower, Identity, checks_of
from agent.scheduler import Scheduler
from agent.stats import AgentStats
from agent.wakeup import Wakeup
from tests.factories import agent_config, agent_toml, central_config, signed, trust

OFFICE = {
    "host": [{}],
    "link": [{"name": "tslcd-gateway", "network": "tslcd", "target": "10.75.12.1"}],
}


def enrolled(tmp_path: Path, extra: str = "", overrides: str | None = None) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n[remote]\nenabled = true\n{extra}')
    )
    trust(tmp_path)
    if overrides is not None:
        (tmp_path / "local.toml").write_text(overrides)
    return path


def test_an_accepted_config_runs_and_is_kept_for_the_next_start(tmp_path: Path) -> None:
    central = CentralConfig(load_config(enrolled(tmp_path)))
    assert central.current.sources == {}  # nothing yet: enrolled, no config received
    payload = central_config(OFFICE, version=3, interval=30.0)
    candidate = central.offer(payload)
    assert candidate is not None
    assert sorted(candidate.sources) == ["host", "tslcd-gateway"]
    assert candidate.interval == 30.0
    central.commit(candidate, payload)
    assert central.fields()["config_version"] == 3
    assert central.offer(payload) is None  # the same again (retained, resent): nothing to do

    again = CentralConfig(load_config(tmp_path / "agent.toml"))  # a restart, collector away
    assert again.state.version == 3
    assert [c.name for c in checks_of(again.current.checks)] == ["host", "tslcd-gateway"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (central_config({"link": [{"name": "x", "target": "10.0.0.1", "count": 0}]}), "count"),
        (central_config({"link": [{"target": "1.1.1.1", "colour": "red"}]}), "colour"),
        (central_config({"teleport": [{}]}), "teleport"),
        (central_config(OFFICE, agent="pc-02"), "identity"),
        (central_config({"host": [{}, {}]}), "duplicate"),
        (signed(agent_config(OFFICE).replace(b'"10.75.12.1"', b'"10.75.12.9"')), "hash"),
        (b"{not json", "json"),
        (b"[" * 100_000, ""),
    ],
)
def test_a_bad_config_is_refused_whole_and_the_previous_one_runs(
    tmp_path: Path, payload: bytes, reason: str
) -> None:
    central = CentralConfig(load_config(enrolled(tmp_path)))
    good = central_config(OFFICE, version=1)
    candidate = central.offer(good)
    assert candidate is not None
    central.commit(candidate, good)
    assert central.offer(payload) is None
    assert central.state.error and reason in central.state.error.lower()
    assert central.state.version == 1
    assert sorted(central.current.sources) == ["host", "tslcd-gateway"]
    # The file on disk is still the good one.
    assert CentralConfig(load_config(tmp_path / "agent.toml")).state.version == 1


def test_local_checks_and_overrides_win_name_by_name(tmp_path: Path) -> None:
    path = enrolled(
        tmp_path,
        extra='[[checks.link]]\nname = "tslcd-gateway"\nnetwork = "tslcd"\ntarget = "10.9.9.9"\n',
        overrides='interval = "15s"\nremove = ["host"]\n'
        '[[checks.link]]\nname = "portal"\nnetwork = "internet"\ntarget = "1.1.1.1"\n',
    )
    central = CentralConfig(load_config(path))
    payload = central_config(
        {**OFFICE, "antivirus": [{}]}, version=2, interval=60.0
    )  # fmt: skip
    effective = central.offer(payload)
    assert effective is not None
    assert effective.sources == {
        "antivirus": "collector config v2 (profile office)",
        "tslcd-gateway": LOCAL,
        "portal": OVERRIDES,
    }
    assert effective.checks.link[0].target == "10.9.9.9"
    assert (effective.interval, effective.interval_source) == (15.0, OVERRIDES)


def test_a_wrong_overrides_file_stops_the_start_with_its_name(tmp_path: Path) -> None:
    path = enrolled(tmp_path, overrides='[[checks.link]]\ntarget = "1.1.1.1"\ncount = -1\n')
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    assert "local.toml" in result.output and "count" in result.output


def test_check_config_before_the_first_config_says_it_is_coming(tmp_path: Path) -> None:
    """Right after enrollment (make run says the profile has four checks) the agent's
    own file has none: not "0 checks", which reads as a failure."""
    result = CliRunner().invoke(main, ["check-config", "-c", str(enrolled(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "0 checks" not in result.output
    assert "the collector's config brings them" in result.output


def test_check_config_says_where_each_check_came_from(tmp_path: Path) -> None:
    path = enrolled(tmp_path, overrides='[[checks.host]]\nname = "mine"\n')
    central = CentralConfig(load_config(path))
    payload = central_config(OFFICE, version=7)
    candidate = central.offer(payload)
    assert candidate is not None
    central.commit(candidate, payload)
    result = CliRunner().invoke(main, ["check-config", "-c", str(path), "--show"])
    assert result.exit_code == 0, result.output
    assert "collector config: v7" in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if " from " in line}
    assert "collector config v7" in lines["link:tslcd-gateway"]
    assert OVERRIDES in lines["host:mine"]
    shown = json.loads(result.output[result.output.index("\n{") + 1 :])
    assert shown["sources"]["checks"]["mine"] == OVERRIDES


def test_the_follower_swaps_checks_without_touching_the_rest(tmp_path: Path) -> None:
    config = load_config(enrolled(tmp_path))
    central = CentralConfig(config)
    identity = Identity(config)

    scheduler = Scheduler(checks_of(central.current.checks), 60.0, lambda c, s: None,
                          AgentStats(), jitter=False)  # fmt: skip
    follower = ConfigFollower(central, scheduler, identity, [])
    announced: list[int] = []
    follower.announce = lambda: announced.append(central.state.version)
    stop = Wakeup()
    follower.wake = stop.wake
    applied: list[bool] = []

    def between() -> None:
        # On the scheduler's thread, where the follower applies what paho's delivered.
        if not applied:
            applied.append(follower.apply(central_config(OFFICE, version=1, interval=120.0)))
            applied.append(follower.apply(central_config({"link": [{"count": 0}]}, version=2)))
            follower.deliver(central_config(OFFICE, version=3, interval=90.0))
        elif central.state.version == 3:
            stop.stop()

    guard = threading.Timer(30.0, stop.stop)
    guard.start()
    try:
        scheduler.run(stop, between=lambda: (between(), follower.step()))
    finally:
        guard.cancel()
        stop.close()
    assert applied == [True, False]
    assert announced == [1, 3]
    assert identity.interval == 90.0
    assert [c.name for c in scheduler.checks] == ["host", "tslcd-gateway"]
    assert central.state.refused_version == 2


def test_a_damaged_saved_config_is_ignored_and_the_agent_starts(tmp_path: Path) -> None:
    path = enrolled(tmp_path)
    central = CentralConfig(load_config(path))
    central.cache_path.parent.mkdir(parents=True, exist_ok=True)
    central.cache_path.write_bytes(central_config(OFFICE)[:-40])  # cut short by a power cut
    again = CentralConfig(load_config(path))
    assert again.state.version == 0 and again.current.sources == {}
    candidate = again.offer(central_config(OFFICE, version=4))
    assert candidate is not None  # and the next config from the collector runs
