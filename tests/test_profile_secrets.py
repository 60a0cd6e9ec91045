"""A profile's ``{ secret_file = ... }`` reads a file of the secrets folder and nothing
else: once it read the broker admin's password into an agent's config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.config import load_collector_config
from collector.rollout.profiles import ProfileError, load_profiles

PROFILE = """
province = "dong-nai"
[profiles.office]
[[profiles.office.checks.snmp]]
name = "router"
host = "10.75.12.1"
community = "${{community}}"
[communes.la-nga]
community = {{ secret_file = {name} }}
"""


def profiles(folder: Path, name: str) -> Path:
    path = folder / "dong-nai.toml"
    path.write_text(PROFILE.format(name=f"'{name}'"))
    return path


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """/etc/commune-collector as shipped: profiles, and its secrets beside them."""
    etc = tmp_path / "etc"
    (etc / "secrets" / "la-nga").mkdir(parents=True)
    (etc / "secrets" / "la-nga" / "community").write_text("la-nga-ro\n")
    (etc / "secrets" / "dong-nai.community").write_text("dong-nai-ro\n")
    (tmp_path / "dynsec-admin.password").write_text("the-broker-admin-password\n")
    return etc


def community(path: Path, secrets_dir: str = "") -> str:
    found = load_profiles(path, secrets_dir).effective("la-nga", "pc-01", "office")
    return str(found.checks["snmp"][0]["community"])


def test_a_file_of_the_secrets_folder_is_read(layout: Path) -> None:
    assert community(profiles(layout, "secrets/dong-nai.community")) == "dong-nai-ro"
    assert community(profiles(layout, "secrets/la-nga/community")) == "la-nga-ro"
    secrets = str(layout / "secrets")
    assert community(profiles(layout, "la-nga/community"), secrets) == "la-nga-ro"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("{outside}", "is an absolute path"),
        ("C:\\ProgramData\\mosquitto\\passwd", "is an absolute path"),
        ("c:secrets", "is an absolute path"),
        ("\\\\server\\share\\passwd", "is an absolute path"),
        ("../dynsec-admin.password", "goes up with '..'"),
        ("secrets/../../dynsec-admin.password", "goes up with '..'"),
        ("secrets\\..\\..\\dynsec-admin.password", "goes up with '..'"),
        ("", "expected a file name"),
    ],
)
def test_a_name_leading_out_of_the_folder_is_refused_by_key(
    layout: Path, name: str, why: str
) -> None:
    name = name.format(outside=layout.parent / "dynsec-admin.password")
    with pytest.raises(ProfileError) as caught:
        community(profiles(layout, name))
    message = str(caught.value)
    assert message.startswith(
        f"{layout / 'dong-nai.toml'}: communes.la-nga.community.secret_file: "
    )
    assert why in message and f"name a file in the secrets folder {layout}" in message
    assert "the-broker-admin-password" not in message


def test_a_link_out_of_the_folder_is_refused_and_one_inside_is_followed(layout: Path) -> None:
    os.symlink(layout.parent / "dynsec-admin.password", layout / "secrets" / "innocent")
    with pytest.raises(ProfileError, match=r"community\.secret_file: 'secrets/innocent' is a link"):
        community(profiles(layout, "secrets/innocent"))
    os.symlink(layout / "secrets" / "la-nga", layout / "secrets" / "xa-la-nga")
    assert community(profiles(layout, "secrets/xa-la-nga/community")) == "la-nga-ro"


def test_a_secret_of_an_agents_own_vars_is_confined_too(layout: Path) -> None:
    path = layout / "dong-nai.toml"
    path.write_text(
        PROFILE.format(name="'secrets/dong-nai.community'")
        + '[agents."la-nga/pc-01".vars]\ncommunity = { secret_file = "../dynsec-admin.password" }\n'
    )
    with pytest.raises(ProfileError, match=r"agents\.la-nga/pc-01\.vars\.community\.secret_file"):
        load_profiles(path)


def test_the_collectors_secrets_dir_is_where_secret_files_are(layout: Path) -> None:
    path = profiles(layout, "la-nga/community")
    config = layout / "collector.toml"
    base = (
        '[api]\nlisten = "127.0.0.1:9"\n[dynsec]\nusername = "admin"\n'
        '[enrollment]\nbroker_url = "mqtt://127.0.0.1:1883"\n'
        f'profiles = ["{path.name}"]\n'
    )
    config.write_text(base + 'secrets_dir = "secrets"\n')  # relative: beside collector.toml
    loaded = load_collector_config(config)
    assert loaded.enrollment is not None
    assert loaded.enrollment.secrets_dir == str(layout / "secrets")
    config.write_text(base)  # the default: the profiles file's folder, where it is not
    from agent.configtypes import ConfigError

    with pytest.raises(ConfigError, match=r"enrollment\.profiles: .*cannot read"):
        load_collector_config(config)
    config.write_text(base + 'secrets_dir = "nowhere"\n')
    with pytest.raises(ConfigError, match=r"enrollment\.secrets_dir: .*nowhere is not a folder"):
        load_collector_config(config)
