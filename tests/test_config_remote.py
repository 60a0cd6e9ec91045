"""What the network may set in a check, and what only the PC's own files may: every key
classified where it is declared, local-only keys refused by name from the collector
(on the agent and on the collector's profiles), kept in agent.toml and local.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from agent.checks.base import CheckOptions
from agent.commands import main
from agent.config import LOCAL_ONLY, OPTIONS, load_config, parse_checks
from agent.configtypes import ConfigError, Secret
from collector.rollout.profiles import ProfileError, load_profiles, parse_profiles
from tests.factories import agent_toml

#: A valid check of each kind, to which one local-only key is added.
VALID: dict[str, dict[str, Any]] = {
    "host": {},
    "antivirus": {},
    "link": {"name": "gw", "network": "tslcd", "target": "10.0.0.1"},
    "snmp": {"name": "router", "host": "10.0.0.1"},
    "polycom": {"name": "vc", "host": "10.0.0.2", "method": "rest", "user": "admin",
                "password": "a-value"},
}  # fmt: skip
#: What a PC's own config would set each local-only key to.
VALUES = {
    "powershell": "/usr/bin/pwsh",
    "clamd_socket": "/run/clamav/clamd.ctl",
    "clamav_db_dir": "/var/lib/clamav",
    "password_file": "{secret}",
    "ca_file": "{secret}",
}

LOCAL_ONLY_KEYS = [(kind, key) for kind, options in OPTIONS.items()
                   for key in sorted(options.local_only_keys)]  # fmt: skip


def options_classes() -> set[type[CheckOptions]]:
    """Every options class a check's table is decoded into, nested tables and the
    classes they extend included."""
    found: set[type[CheckOptions]] = set()
    todo: list[type[Any]] = list(OPTIONS.values())
    while todo:
        cls = todo.pop()
        if not (isinstance(cls, type) and issubclass(cls, CheckOptions)) or cls in found:
            continue
        found.add(cls)
        todo += list(cls.__mro__[1:])
        todo += [f.type for f in msgspec.structs.fields(cls)]
    return found


def test_every_key_of_every_check_is_classified_once() -> None:
    classes = options_classes()
    assert {c.__name__ for c in classes} >= {"AntivirusOptions", "PolycomOptions",
            "SnmpConnectionOptions", "InterfaceFilter", "LinkOptions"}  # fmt: skip
    for cls in classes:
        keys = set(cls.__struct_fields__)
        assert cls.remote_keys | cls.local_only_keys == keys, (cls.__name__, keys)
        assert not cls.remote_keys & cls.local_only_keys, cls.__name__


def test_the_keys_that_name_the_pcs_own_resources_are_local_only() -> None:
    assert set(LOCAL_ONLY_KEYS) >= {("antivirus", "powershell"), ("antivirus", "clamd_socket"),
            ("antivirus", "clamav_db_dir"), ("polycom", "password_file"),
            ("polycom", "ca_file")}  # fmt: skip


def entry(kind: str, key: str, secret: Path) -> dict[str, Any]:
    options = {**VALID[kind], key: VALUES[key].format(secret=secret)}
    if key == "password_file":
        options.pop("password")
    return options


@pytest.mark.parametrize(
    ("kind", "key"), LOCAL_ONLY_KEYS, ids=[f"{k}.{v}" for k, v in LOCAL_ONLY_KEYS]
)
def test_a_local_only_key_is_refused_from_the_network_by_name(
    kind: str, key: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    table = {"host": [{}], kind: [entry(kind, key, secret)]}
    with pytest.raises(ConfigError) as caught:
        parse_checks(table, "collector config v7", remote=True)
    position = 1 if kind == "host" else 0
    assert (
        str(caught.value) == f"collector config v7: checks.{kind}[{position}].{key}: {LOCAL_ONLY}"
    )
    assert "agent.toml or local.toml" in str(caught.value)
    # The PC's own files keep it: the same table from agent.toml runs.
    local = parse_checks(table, "agent.toml")
    assert getattr(getattr(local, kind)[position], key) == VALUES[key].format(secret=secret)


def test_a_local_only_key_is_refused_whatever_its_value() -> None:
    """Refused for being sent: even set to its default (or empty) it names the key."""
    for value in ("", "/var/lib/clamav"):
        with pytest.raises(ConfigError, match=r"antivirus\[0\]\.clamav_db_dir: local only"):
            parse_checks({"antivirus": [{"clamav_db_dir": value}]}, "x", remote=True)


def test_nested_tables_and_credentials_as_values_pass_from_the_network() -> None:
    checks = parse_checks(
        {
            "snmp": [{"name": "r", "host": "10.0.0.1", "community": "ro-secret",
                      "interfaces": {"include": ["ge-*"], "exclude": ["lo*"]}}],
            "polycom": [VALID["polycom"]],
        },
        "collector config v3",
        remote=True,
    )  # fmt: skip
    assert checks.snmp[0].interfaces.include == ["ge-*"]
    password = checks.polycom[0].password
    assert isinstance(password, Secret) and password.reveal() == "a-value"
    assert repr(password) == str(password) == "<secret>"


def test_a_polycom_rest_check_needs_one_password_and_prints_none(tmp_path: Path) -> None:
    base = {k: v for k, v in VALID["polycom"].items() if k != "password"}
    with pytest.raises(ConfigError, match=r"polycom\[0\]\.password: .*one of them"):
        parse_checks({"polycom": [base]}, "x")
    config = tmp_path / "agent.toml"
    config.write_text(
        agent_toml() + '[[checks.polycom]]\nname = "vc"\nhost = "10.0.0.2"\nmethod = "rest"\n'
        'user = "admin"\npassword = "do-not-print-me"\n'
    )
    result = CliRunner().invoke(main, ["check-config", "-c", str(config), "--show"])
    assert result.exit_code == 0, result.output
    assert "do-not-print-me" not in result.output and "<secret>" in result.output


def test_local_overrides_keep_every_key(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        agent_toml(extra=f'state_dir = "{tmp_path / "state"}"\n[remote]\nenabled = true\n')
    )
    (tmp_path / "local.toml").write_text(
        '[[checks.antivirus]]\npowershell = "C:/Program Files/PowerShell/7/pwsh.exe"\n'
    )
    from agent.central import CentralConfig

    central = CentralConfig(load_config(tmp_path / "agent.toml"))
    assert central.current.checks.antivirus[0].powershell.endswith("pwsh.exe")


PROFILE = """
province = "dong-nai"
[profiles.office]
[[profiles.office.checks.host]]
[communes.la-nga]
gateway = "10.75.12.1"
"""


@pytest.mark.parametrize(
    ("kind", "key"), LOCAL_ONLY_KEYS, ids=[f"{k}.{v}" for k, v in LOCAL_ONLY_KEYS]
)
def test_a_profile_setting_a_local_only_key_is_refused_at_load_by_name(
    kind: str, key: str, tmp_path: Path
) -> None:
    import tomllib

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    data = tomllib.loads(PROFILE)
    data["profiles"]["office"]["checks"][kind] = [entry(kind, key, secret)]
    with pytest.raises(ProfileError) as caught:
        parse_profiles(data, "dong-nai.toml", tmp_path)
    message = str(caught.value)
    position = 1 if kind == "host" else 0
    assert message.startswith("dong-nai.toml: profiles.office for la-nga/(an agent): "), message
    assert message.endswith(f"checks.{kind}[{position}].{key}: {LOCAL_ONLY}"), message


def test_the_collector_refuses_to_start_on_such_a_profile(tmp_path: Path) -> None:
    from collector.cli.main import main as collector

    profiles = tmp_path / "dong-nai.toml"
    profiles.write_text(
        PROFILE + '[[profiles.office.checks.polycom]]\nname = "vc"\nhost = "${gateway}"\n'
        'method = "rest"\nuser = "admin"\npassword_file = "/var/lib/commune-agent/x"\n'
    )
    with pytest.raises(ProfileError, match=r"polycom\[0\]\.password_file: local only"):
        load_profiles(profiles)
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.sqlite"}"\n[api]\nlisten = "127.0.0.1:9"\n'
        '[dynsec]\nusername = "admin"\n'
        f'[enrollment]\nbroker_url = "mqtt://127.0.0.1:1883"\nprofiles = ["{profiles}"]\n'
    )
    result = CliRunner().invoke(collector, ["check-config", "-c", str(config)])
    assert result.exit_code == 1
    assert "enrollment.profiles" in result.output and "password_file: local only" in result.output
