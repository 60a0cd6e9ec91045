"""The alert commands against a store with alerts made by the real engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from click.testing import CliRunner

from agent import wire
from agent.wire import Envelope, Sample
from collector.alerts.rules import default_rules
from collector.cli.main import main
from collector.common.localtime import VIETNAM
from tests.test_alerts import T0, Harness, at, tslcd


def config_with_a_firing_alert(tmp_path: Path) -> Path:
    h = Harness(tmp_path)
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    h.store.close()
    config = tmp_path / "collector.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "state.sqlite"}"\n')
    return config


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_list_acknowledge_and_silence(tmp_path: Path) -> None:
    config = str(config_with_a_firing_alert(tmp_path))
    code, out = run("alerts", "-c", config, "--state", "firing")
    assert code == 0
    assert out.startswith("#1     firing   critical line_down_tslcd")
    assert "la-nga/pc-01/10.75.0.1" in out and local(T0) in out  # local time, +07:00
    assert run("alerts", "-c", config, "--province", "dong-nai")[1] == out
    assert run("alerts", "-c", config, "--province", "lam-dong")[1] == "no alert\n"
    code, out = run("ack", "1", "-c", config, "--comment", "VNPT ticket 4411", "--by", "anh")
    assert code == 0 and "acknowledged by anh" in out
    assert "acked by anh: VNPT ticket 4411" in run("alerts", "-c", config)[1]
    assert run("ack", "9", "-c", config, "-m", "x")[0:2] == (1, "Error: no alert 9\n")
    code, out = run(
        "silence",
        "add",
        "-c",
        config,
        "--commune",
        "la-nga",
        "--for",
        "2h",
        "-m",
        "VNPT maintenance",
        "--by",
        "anh",
    )
    assert code == 0 and out.startswith("silence #1 until")
    code, out = run("silence", "list", "-c", config)
    assert "commune=la-nga" in out and "anh: VNPT maintenance" in out
    assert "silenced" in run("alerts", "-c", config)[1]
    assert run("silence", "delete", "1", "-c", config)[0] == 0
    assert run("silence", "list", "-c", config)[1] == "no silence\n"
    assert run("silence", "delete", "1", "-c", config)[1] == "Error: no silence 1\n"
    code, out = run("silence", "add", "-c", config, "--for", "2h")
    assert code == 1 and "cannot mute everything" in out
    code, out = run("silence", "add", "-c", config, "--commune", "x", "--for", "soon")
    assert code == 2 and "--for" in out


RULES = """
[[rules]]
name = "slow_line"
check = "link"
tags = { network = "tslcd" }
when = [{ field = "rtt_ms", op = ">", value = 100 }]
for = "2m"
severity = "warning"
summary.en = "Slow line at {commune}: {value} ms"
"""


def recorded(tmp_path: Path) -> Path:
    """What `mosquitto_sub -v` printed: the line slow from minute 2 to minute 6."""
    lines = []
    for minute in range(10):
        ts = T0 + 60 * minute
        rtt = 250.0 if 2 <= minute < 6 else 15.0
        sample = Sample(
            ts=ts,
            check="link",
            name="tslcd",
            outcome="ok",
            target="10.75.0.1",
            fields={"up": 1, "rtt_ms": rtt},
            tags={"network": "tslcd"},
        )
        envelope = Envelope(
            v=1,
            agent="pc-01",
            province="dong-nai",
            commune="la-nga",
            seq=minute,
            ts=ts,
            samples=[sample],
        )
        topic = "commune/dong-nai/la-nga/pc-01/data"
        lines.append(f"{topic} {wire.encode(envelope).decode()}")
    path = tmp_path / "la-nga.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rules_test_prints_what_would_fire_and_when(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    code, out = run("rules-test", str(rules), "--samples", str(recorded(tmp_path)))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"10 messages played, {len(default_rules()) + 1} rules, 1 alerts"
    # Slow from minute 2 for 4 minutes: the alert spans minute 2 to minute 6, at 250 ms.
    assert lines[1].split()[:3] == ["warning", "slow_line", "la-nga/pc-01/10.75.0.1"]
    assert f"{local(T0 + 120)} → {local(T0 + 360)}  250" in lines[1]
    code, out = run("rules-test", str(rules), "--samples", str(recorded(tmp_path)), "--no-defaults")
    assert out.splitlines()[0] == "10 messages played, 1 rules, 1 alerts"


def test_rules_test_names_a_bad_rule_and_a_bad_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES.replace("rtt_ms", "rtt"))
    code, out = run("rules-test", str(rules), "--samples", str(recorded(tmp_path)))
    assert code == 1 and "rules[0].when[0].field: 'rtt' is not a field" in out
    rules.write_text(RULES)
    samples = recorded(tmp_path)
    samples.write_text(samples.read_text() + "commune/dong-nai/la-nga/pc-01/data {not json\n")
    code, out = run("rules-test", str(rules), "--samples", str(samples))
    assert code == 1 and "la-nga.log:11: skipped" in out
