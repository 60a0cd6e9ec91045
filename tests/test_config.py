"""Config: strict decoding, errors that name file and key, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.checks import REGISTRY
from agent.commands import main
from agent.config import ChecksSection, load_config, parse_config
from agent.configtypes import ConfigError, Secret
from tests.factories import agent_toml

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "deploy" / "agent" / "agent.example.toml"
BAD = sorted((Path(__file__).parent / "data" / "bad_configs").glob("*.toml"))


def test_annotated_sample_config_parses_with_documented_defaults() -> None:
    config = load_config(SAMPLE)
    assert (config.agent.province, config.agent.commune) == ("dong-nai", "la-nga")
    assert float(config.agent.interval) == 60
    assert float(config.outbox.max_age) == 72 * 3600
    assert int(config.outbox.max_size) == 64 * 2**20
    assert [c.name for c in config.checks.link] == ["tslcd-province", "lan-router", "internet"]
    assert {c.network for c in config.checks.link} == {"tslcd", "internet", "lan"}
    [system] = config.checks.system
    assert (system.name, system.kind, system.expect_text) == ("mot-cua", "one-stop", "Dịch vụ công")
    assert float(config.checks.antivirus[0].max_signature_age) == 3 * 86400


def test_every_check_kind_has_a_config_table() -> None:
    assert set(ChecksSection.__struct_fields__) == set(REGISTRY)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_each_bad_config_names_file_key_and_problem(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    key, _, fragment = expected.rpartition(": ")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {key}: " if key else f"{path}: "), message
    assert fragment in message, message


def test_missing_file_is_a_clean_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_defaults_when_only_the_place_is_given() -> None:
    config = parse_config({"agent": {"province": "dong-nai", "commune": "la-nga"}})
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.mqtt.topic_root == "commune"
    assert config.agent_id  # the host name
    assert config.outbox_path.name == "outbox.sqlite"
    assert config.check_options() == []


def test_secrets_never_print() -> None:
    secret = Secret("s3cr3t-community")
    assert (
        "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret) and "s3cr3t" not in f"{secret}"
    )
    assert secret.reveal() == "s3cr3t-community"


def test_check_config_show_hides_secrets(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        agent_toml("poller")
        + '[[checks.snmp]]\nname = "router"\nhost = "127.0.0.1"\nversion = "3"\nuser = "monitor"\n'
        'auth_key = "authsecret99"\npriv_key = "privsecret99"\ncommunity = "commsecret99"\n'
    )
    result = CliRunner().invoke(main, ["check-config", "-c", str(config), "--show"])
    assert result.exit_code == 0, result.output
    assert "secret99" not in result.output
    assert "\n  snmp:router" in result.output  # a line per check, then the effective config
    shown = json.loads(result.output[result.output.index("\n{") + 1 :])
    assert shown["checks"]["snmp"][0]["auth_key"] == "<secret>"
    assert shown["agent"]["id"] == "poller"
    assert shown["agent"]["interval"] == "1m"


def test_check_config_error_is_clean_and_exits_1() -> None:
    path = next(p for p in BAD if p.stem == "link-bad-method")
    result = CliRunner().invoke(main, ["check-config", "-c", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "checks.link[0].method" in result.output
