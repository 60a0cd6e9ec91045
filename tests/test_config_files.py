"""Config and secret files as a technician's Windows tools write them, and relative paths
taken from the config file's folder (a Windows service runs in System32)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.commands import main
from agent.config import load_config
from agent.configtypes import ConfigError, decode_text, read_secret
from collector.config import load_collector_config
from tests.factories import agent_toml

CONFIG = agent_toml(extra="# Xã La Ngà\n")

#: How each tool writes a file: Notepad and Set-Content -Encoding UTF8 (BOM), PowerShell
#: 5.1's ">" and Out-File (UTF-16 LE with BOM), an editor (UTF-8), the odd big-endian one.
WRITERS = {
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with BOM": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "utf-16-le with BOM (PowerShell 5.1 >)": lambda text: b"\xff\xfe" + text.encode("utf-16-le"),
    "utf-16-be with BOM": lambda text: b"\xfe\xff" + text.encode("utf-16-be"),
}


@pytest.mark.parametrize("writer", WRITERS, ids=list(WRITERS))
def test_configs_and_secrets_in_every_encoding_windows_writes(tmp_path: Path, writer: str) -> None:
    encode = WRITERS[writer]
    secret = tmp_path / "mqtt-password"
    secret.write_bytes(encode("S3cr3t-pa55\r\n"))
    config = tmp_path / "agent.toml"
    config.write_bytes(
        encode(
            CONFIG
            + '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "u"\n'
            + 'password_file = "mqtt-password"\n'
        )
    )
    loaded = load_config(config)
    assert loaded.agent.commune == "la-nga"
    assert loaded.mqtt.password() == "S3cr3t-pa55"
    assert read_secret(secret) == "S3cr3t-pa55"
    result = CliRunner().invoke(main, ["check-config", "-c", str(config)])
    assert result.exit_code == 0, result.output


def test_a_secret_that_is_not_text_or_empty_is_a_named_error(tmp_path: Path) -> None:
    empty, binary = tmp_path / "empty", tmp_path / "binary"
    empty.write_bytes(b"\xef\xbb\xbf\r\n")
    binary.write_bytes(b"\x80\x81\x82")
    with pytest.raises(ValueError, match="empty"):
        read_secret(empty)
    with pytest.raises(ValueError, match="not UTF-8 or UTF-16"):
        read_secret(binary)
    config = tmp_path / "agent.toml"
    config.write_text(CONFIG + '[mqtt]\nusername = "u"\npassword_file = "empty"\n')
    result = CliRunner().invoke(main, ["check-config", "-c", str(config)])
    assert result.exit_code == 1 and "mqtt.password_file" in result.output
    assert "empty" in result.output
    with pytest.raises(UnicodeDecodeError):
        decode_text(b"\xc3\x28")


def test_a_config_that_is_not_text_says_so(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    # A code page of Windows (Western, 1252), not UTF-8.
    config.write_bytes(CONFIG.replace("Xã La Ngà", "Ngà").encode("cp1252"))
    with pytest.raises(ConfigError, match="save it as UTF-8"):
        load_config(config)


def test_relative_paths_are_the_config_files_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "ProgramData" / "commune-agent"
    home.mkdir(parents=True)
    (home / "mqtt-password").write_text("pw\n")
    (home / "ca.crt").write_text("x")
    (home / "agent.toml").write_text(
        CONFIG.replace("[agent]\n", '[agent]\nstate_dir = "state"\n')
        + '[mqtt]\nurl = "mqtts://b.example:8883"\nusername = "u"\n'
        'password_file = "mqtt-password"\nca_file = "./ca.crt"\n'
        '[outbox]\npath = "spool/outbox.sqlite"\n'
    )
    elsewhere = tmp_path / "System32"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # where a Windows service starts
    config = load_config(home / "agent.toml")
    assert Path(config.mqtt.password_file) == home / "mqtt-password"
    assert Path(config.mqtt.ca_file) == home / "ca.crt"
    assert config.state_dir == home / "state"
    assert config.outbox_path == home / "spool" / "outbox.sqlite"
    assert config.mqtt.password() == "pw"


def test_absolute_paths_of_either_system_are_left_alone(tmp_path: Path) -> None:
    from agent.configtypes import resolve_paths

    data = {"mqtt": {"ca_file": r"C:\ProgramData\commune-agent\ca.crt", "key_file": "/etc/k"}}
    assert resolve_paths(data, tmp_path) == data
    unc = {"x": {"password_file": r"\\server\share\pw"}}
    assert resolve_paths(unc, tmp_path) == unc


def test_the_collectors_relative_paths_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    (etc / "inventory").mkdir(parents=True)
    (etc / "inventory" / "dong-nai.toml").write_text(
        'province = "dong-nai"\nname = "Đồng Nai"\n'
        '[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n'
    )
    (etc / "mqtt-password").write_text("pw")
    (etc / "collector.toml").write_text(
        '[collector]\ninventory = ["inventory/dong-nai.toml"]\n'
        '[mqtt]\nusername = "c"\npassword_file = "mqtt-password"\n'
        '[store]\npath = "state/state.sqlite"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_collector_config(etc / "collector.toml")
    assert config.collector.inventory == [str(etc / "inventory" / "dong-nai.toml")]
    assert config.store.path == str(etc / "state" / "state.sqlite")
    assert config.mqtt.password() == "pw"
    assert os.path.isabs(config.mqtt.password_file)
    # [api]'s certificate too (it was read from the working folder, where a restore
    # onto another host then put it)
    (etc / "tls").mkdir()
    for name in ("api.pem", "api-key.pem"):
        (etc / "tls" / name).write_text("pem")
    with (etc / "collector.toml").open("a") as config_file:
        config_file.write(
            '[api]\ntls_cert_file = "tls/api.pem"\ntls_key_file = "tls/api-key.pem"\n'
        )
    config = load_collector_config(etc / "collector.toml")
    assert config.api.tls_cert_file == str(etc / "tls" / "api.pem")
    assert config.api.tls_key_file == str(etc / "tls" / "api-key.pem")
