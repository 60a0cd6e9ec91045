"""The command line: help with examples everywhere, clean errors, the service unit."""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from agent import __version__, systemd
from agent.commands import main
from agent.service import SERVICE
from tests.factories import agent_toml

REPO = Path(__file__).resolve().parent.parent
COMMANDS = sorted(main.commands)


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"commune-agent {command}" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"commune-agent {command}" in (REPO / "README.md").read_text()


def test_once_prints_valid_envelopes_and_publishes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(agent_toml() + '[mqtt]\nurl = "mqtt://127.0.0.1:1"\n[[checks.host]]\n')
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "once", "-c", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert (envelope["agent"], envelope["seq"]) == ("pc-01", 0)
    host = envelope["samples"][0]
    assert host["check"] == "host"
    assert 0.0 <= host["fields"]["cpu_percent"] <= 100.0
    assert not (tmp_path / "state").exists()


def test_once_with_an_unknown_check_is_a_clean_error(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nprovince = "p"\ncommune = "c"\n[[checks.host]]\n')
    result = CliRunner().invoke(main, ["once", "-c", str(config), "--check", "nope"])
    assert result.exit_code == 1
    assert "no check named 'nope'" in result.output


def test_list_checks(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["list-checks", "-c", str(REPO / "deploy/agent/agent.example.toml")]
    )
    assert result.exit_code == 0
    assert "link:tslcd-province (icmp 127.0.0.1, tslcd)" in result.output
    assert "every 600s" in result.output  # antivirus
    kinds = CliRunner().invoke(main, ["list-checks", "--all-kinds"])
    assert kinds.output.split()[::1][0] == "host"
    assert {"host", "antivirus", "link", "snmp", "polycom"} <= set(kinds.output.split())


def test_missing_config_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "-c", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "no such file" in result.output
    assert isinstance(result.exception, SystemExit)


def test_the_systemd_unit_is_hardened_and_well_formed() -> None:
    unit = systemd.render(
        SERVICE, ["/opt/commune agent/bin/commune-agent"], Path("/etc/commune-agent/agent.toml")
    )
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit)
    service = parser["Service"]
    expected = "'/opt/commune agent/bin/commune-agent' run --config /etc/commune-agent/agent.toml"
    assert service["ExecStart"] == expected
    assert service["AmbientCapabilities"] == "CAP_NET_RAW"
    assert service["CapabilityBoundingSet"] == "CAP_NET_RAW"
    assert service["StateDirectory"] == "commune-agent"
    assert service["User"] == "commune-agent"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "Restart": "always",
    }.items():
        assert service[key] == value
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_install_service_print_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nprovince = "p"\ncommune = "c"\n')
    result = CliRunner().invoke(main, ["install-service", "-c", str(config), "--print"])
    assert result.exit_code == 0
    assert f"run --config {config}" in result.output
    assert list(tmp_path.iterdir()) == [config]


def test_install_service_refuses_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[agent]\nprovince = "p"\n')
    result = CliRunner().invoke(main, ["install-service", "-c", str(config), "--print"])
    assert result.exit_code == 1
    assert "agent.commune: required key is missing" in result.output


def test_schema_command_writes_the_committed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "-o", str(tmp_path)])
    assert result.exit_code == 0
    for name in ("envelope.schema.json", "status.schema.json"):
        assert (tmp_path / name).read_text() == (REPO / "agent" / "schema" / name).read_text()


def test_main_is_a_click_group() -> None:
    assert isinstance(main, click.Group)
