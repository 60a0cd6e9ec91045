"""commune-collector's command line against a store with a history built by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent.wire import Envelope, Sample, Status
from collector.cli.main import main
from collector.common.localtime import VIETNAM
from collector.state.store import StateStore

# 2025-10-01 00:00 local time (+07:00)
OCT = dt.datetime(2025, 10, 1, tzinfo=VIETNAM).timestamp()
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """La Ngà: the line was down 2025-10-02 08:00-11:00 (3 h) over a month of minutes."""
    store = StateStore(tmp_path / "state.sqlite")
    envelopes = []
    for minute in range(0, 31 * 24 * 60, 10):
        ts = OCT + minute * 60
        down = OCT + 32 * 3600 <= ts < OCT + 35 * 3600
        sample = Sample(
            ts=ts,
            check="link",
            name="tslcd",
            outcome="timeout" if down else "ok",
            target="10.10.1.1",
            fields={"up": 0 if down else 1},
            tags={"network": "tslcd"},
        )
        envelopes.append(
            Envelope(
                v=1,
                agent="pc-01",
                province="dong-nai",
                commune="la-nga",
                seq=minute,
                ts=ts,
                samples=[sample],
            )
        )
    birth = Status(
        v=1, state="online", agent="pc-01", province="dong-nai", commune="la-nga", ts=OCT
    )
    store.apply(envelopes, [(birth, OCT)])
    store.close()
    path = tmp_path / "collector.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "state.sqlite"}"\n')
    return path


def availability(config: Path, commune: str, start: str, end: str, *extra: str) -> Result:
    arguments = [
        "availability",
        "-c",
        str(config),
        "--commune",
        commune,
        "--from",
        start,
        "--to",
        end,
    ]
    return CliRunner().invoke(main, [*arguments, *extra])


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"commune-collector {command}" in result.output


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"commune-collector {command}" in (REPO / "README.md").read_text()


def test_availability_over_october_is_exact(config: Path) -> None:
    result = availability(config, "la-nga", "2025-10-01", "2025-11-01")
    assert result.exit_code == 0, result.output
    # By hand: monitored from 10-01 00:00, so the window is all of October (744 h);
    # 3 h down: 741 / 744 = 99.597 %.
    assert "99.597 %" in result.output
    assert "down 180.0 min in 1 outages" in result.output
    assert "down 2025-10-02 08:00:00 → 2025-10-02 11:00:00" in result.output


def test_availability_of_a_single_day(config: Path) -> None:
    result = availability(
        config, "dong-nai/la-nga", "2025-10-02", "2025-10-03", "--target", "tslcd"
    )
    assert result.exit_code == 0, result.output
    assert "87.500 %" in result.output  # 21 of 24 hours


def test_availability_of_an_unknown_commune_is_a_clean_error(config: Path) -> None:
    result = availability(config, "nowhere", "2025-10-01", "2025-11-01")
    assert result.exit_code == 1
    assert "nothing recorded for commune 'nowhere'" in result.output


def test_bad_dates_are_refused(config: Path) -> None:
    result = availability(config, "la-nga", "October", "2025-11-01")
    assert result.exit_code == 2
    assert "is not a date" in result.output


def test_status_shows_every_commune_of_the_inventory(config: Path) -> None:
    import time

    store = StateStore(config.parent / "state.sqlite")
    now = time.time()
    store.apply(
        [
            Envelope(
                v=1,
                agent="pc-01",
                province="dong-nai",
                commune="la-nga",
                seq=10**6,
                ts=now,
                samples=[
                    Sample(
                        ts=now,
                        check="link",
                        name="tslcd",
                        outcome="ok",
                        target="10.10.1.1",
                        fields={"up": 1},
                        tags={"network": "tslcd"},
                    )
                ],
            )
        ]
    )
    store.close()
    inventory = REPO / "deploy" / "inventory" / "dong-nai.toml"
    config.write_text(config.read_text() + f'[collector]\ninventory = ["{inventory}"]\n')
    result = CliRunner().invoke(main, ["status", "-c", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 95  # every commune of the shipped inventory
    [la_nga] = [line for line in lines if line.startswith("la-nga ")]
    assert "Xã La Ngà" in la_nga
    assert "agents 1/1" in la_nga and "line up 100.00%" in la_nga
    assert all(" no_data " in line for line in lines if line is not la_nga)
    assert any("Xã Xuân Thành" in line for line in lines)


def test_token_prints_a_token_and_the_config_lines_with_its_hash(tmp_path: Path) -> None:
    import hashlib

    result = CliRunner().invoke(main, ["token", "ioc"])
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[1].strip()
    digest = hashlib.sha256(token.encode()).hexdigest()
    block = result.output[result.output.index("[[api.tokens]]") :]
    assert f'sha256 = "{digest}"' in block and token not in block
    path = tmp_path / "collector.toml"
    path.write_text(block)
    assert CliRunner().invoke(main, ["check-config", "-c", str(path)]).exit_code == 0


def test_check_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text('[mqtt]\nurl = "http://broker"\n')
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    assert f"{path}: mqtt.url: expected mqtt://host:port" in result.output
    path.write_text('[mqtt]\nurl = "mqtts://broker:8883"\ncert_file = "/etc/hosts"\n')
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert f"{path}: mqtt.cert_file: a client certificate needs both" in result.output
    path.write_text("[collector]\nprovinces = ['dong nai']\n")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert "collector.provinces[0]" in result.output


def test_embedded_defaults_are_valid() -> None:
    result = CliRunner().invoke(main, ["check-config"], env={"COMMUNE_COLLECTOR_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert "(embedded defaults)" in result.output
