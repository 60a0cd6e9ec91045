"""The collector's side of signed configs: the key made at the first start, every config
signed and numbered above what the agent runs (a store restored from a backup, a store
of 0.2), sent again when a rotation changes the keys; and config-key show, rotate,
finish on the command line."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.configkeys import verify
from agent.configtypes import BrokerSection
from agent.wire import AgentConfig, Sample, decode_config, decode_signed_config
from collector.cli.main import main
from collector.rollout import configkey, registry
from collector.rollout.configs import ConfigSender
from collector.rollout.profiles import load_all
from collector.state.store import StateStore
from tests.factories import envelope, status
from tests.servers import Mosquitto, Subscriber

PROFILES = """
province = "dong-nai"
[profiles.office]
interval = "1m"
[[profiles.office.checks.host]]
"""
STORES = Path(__file__).parent / "data" / "stores"


def enroll(store: StateStore, *agents: str) -> None:
    with store.transaction() as db:
        for agent in agents:
            registry.enrolled(
                db, province="dong-nai", commune="la-nga", agent=agent,
                username=f"dong-nai/la-nga/{agent}", profile="office", token_id="t", now=1.0,
            )  # fmt: skip


def reports_keys(store: StateStore, agent: str, *keys: str) -> None:
    """The agent's self-metrics: the config signing keys it trusts."""
    now = time.time()
    sample = Sample(ts=now, check="agent", name="agent", outcome="ok",
                    fields={"config_keys": ",".join(sorted(keys))})  # fmt: skip
    store.apply([envelope(int(now * 1000), sample, agent=agent)], received=now)


# ---- config-key show|rotate|finish ---------------------------------------------------


@pytest.fixture
def collector_config(tmp_path: Path) -> Path:
    profiles = tmp_path / "dong-nai.toml"
    profiles.write_text(PROFILES)
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "state.sqlite"}"\n[api]\nlisten = "127.0.0.1:9"\n'
        '[dynsec]\nusername = "admin"\n'
        f'[enrollment]\nbroker_url = "mqtt://127.0.0.1:1883"\nprofiles = ["{profiles}"]\n'
    )
    return config


def cli(config: Path, *arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["config-key", *arguments, "-c", str(config)])
    return result.exit_code, result.output


def test_a_rotation_on_the_command_line_waits_for_every_active_agent(
    collector_config: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / configkey.DEFAULT_NAME
    code, said = cli(collector_config, "show")
    assert code == 1 and "the collector makes it at its first start" in said
    current = configkey.load(key_file, create=True).current  # the collector's first start
    assert key_file.stat().st_mode & 0o777 == 0o600
    store = StateStore(tmp_path / "state.sqlite")
    enroll(store, "pc-01", "pc-02")
    reports_keys(store, "pc-01", current.id)

    code, said = cli(collector_config, "show")
    assert code == 0, said
    assert f"current: {current.id} {current.public_text} — trusted by 1 of 2" in said
    code, said = cli(collector_config, "finish")
    assert code == 1 and "no rotation under way" in said

    code, said = cli(collector_config, "rotate")
    assert code == 0, said
    following = configkey.load(key_file).next
    assert following is not None and following.id in said
    assert configkey.next_path(key_file).stat().st_mode & 0o777 == 0o600
    assert cli(collector_config, "rotate")[0] == 1  # one rotation at a time
    code, said = cli(collector_config, "show")
    assert f"next: {following.id}" in said and "trusted by 0 of 2" in said
    assert "not yet: dong-nai/la-nga/pc-01, dong-nai/la-nga/pc-02" in said

    reports_keys(store, "pc-01", current.id, following.id)  # it applied an announcing config
    code, said = cli(collector_config, "finish")
    assert code == 1, said
    assert "1 active agents do not trust the next key" in said
    assert "dong-nai/la-nga/pc-02" in said and "pc-01" not in said
    assert configkey.load(key_file).current.id == current.id  # nothing changed

    with store.transaction() as db:  # gone for good: revoked, it counts no more
        registry.revoked(db, "dong-nai/la-nga/pc-02", time.time())
    code, said = cli(collector_config, "finish")
    assert code == 0, said
    keys = configkey.load(key_file)
    assert keys.current.id == following.id and keys.next is None
    assert current.public_text not in key_file.read_text()  # the old private key is gone
    store.close()


def test_finish_with_force_names_what_it_leaves_behind(
    collector_config: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / configkey.DEFAULT_NAME
    configkey.load(key_file, create=True)
    with StateStore(tmp_path / "state.sqlite") as store:
        enroll(store, "pc-01")
    assert cli(collector_config, "rotate")[0] == 0
    code, said = cli(collector_config, "finish", "--force")
    assert code == 0 and "1 agents will refuse them until given the key" in said


def test_a_damaged_key_is_named_with_what_to_do(collector_config: Path, tmp_path: Path) -> None:
    key_file = tmp_path / configkey.DEFAULT_NAME
    key_file.write_text("not a key\n")
    code, said = cli(collector_config, "show")
    assert code == 1 and f"{key_file}: not a config signing key" in said
    assert "config-key fetch" in said


# ---- sending signed configs ----------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


class Sending:
    def __init__(self, tmp_path: Path, broker: Mosquitto, store_path: Path) -> None:
        (tmp_path / "dong-nai.toml").write_text(PROFILES)
        self.store = StateStore(store_path)
        self.keys = configkey.KeyFiles(store_path.with_name(configkey.DEFAULT_NAME))
        profiles = load_all([str(tmp_path / "dong-nai.toml")])
        self.sender = ConfigSender(
            self.store, BrokerSection(url=f"mqtt://127.0.0.1:{broker.port}"),
            f"configs-{id(self)}", lambda: profiles,
        )  # fmt: skip
        self.sender.signing = self.keys
        self.sender.start()
        assert self.sender.wait_connected(10)
        self.seen = Subscriber(broker.port, "commune/+/+/+/config").start()

    def latest(self, agent: str) -> AgentConfig:
        """The last config retained for ``agent``, verified with the keys it would trust."""
        messages = self.seen.wait_for(lambda ms: len(ms) > 0, 10, f"/{agent}/config")
        signed = decode_signed_config(messages[-1].payload)
        trusted = {k.id: k.public for k in self.keys().public()}
        return decode_config(verify(signed, trusted))

    def close(self) -> None:
        self.seen.stop()
        self.sender.stop()
        self.store.close()


@pytest.mark.servers
def test_every_config_is_signed_and_sent_again_when_the_keys_change(
    tmp_path: Path, broker: Mosquitto
) -> None:
    side = Sending(tmp_path, broker, tmp_path / "state.sqlite")
    try:
        enroll(side.store, "pc-01")
        assert side.sender.sync().sent == ["dong-nai/la-nga/pc-01"]
        first = side.latest("pc-01")
        assert first.version == 1 and first.next_key == ""
        assert registry.managed(side.store)[0].config_key == side.keys().state
        assert side.sender.sync().unchanged == 1  # nothing new: nothing sent

        configkey.rotate(side.keys.path)  # on the command line, the collector running
        assert side.keys.reload_if_changed()
        side.seen.messages.clear()
        side.sender.sync()
        announcing = side.latest("pc-01")
        following = side.keys().next
        assert following is not None
        assert (announcing.version, announcing.next_key) == (2, following.public_text)
        assert announcing.hash == first.hash  # the same checks, under new keys

        configkey.finish(side.keys.path)
        assert side.keys.reload_if_changed()
        side.seen.messages.clear()
        side.sender.sync()
        signed = decode_signed_config(side.seen.wait_for(lambda ms: ms, 10)[-1].payload)
        assert signed.key == following.id
        assert side.latest("pc-01").version == 3
    finally:
        side.close()


@pytest.mark.servers
def test_a_store_restored_from_a_backup_sends_above_what_the_agent_runs(
    tmp_path: Path, broker: Mosquitto
) -> None:
    side = Sending(tmp_path, broker, tmp_path / "state.sqlite")
    try:
        enroll(side.store, "pc-01")
        # The backup's store says v3 was sent; the agent has since run v9 of a later store.
        with side.store.transaction() as db:
            registry.config_sent(db, "dong-nai/la-nga/pc-01", 3, "ab" * 32, 1.0)
        birth = status("online", time.time(), config_version=9, config_hash="cd" * 32)
        side.store.apply(statuses=[(birth, time.time())])
        assert registry.running_versions(side.store) == {"dong-nai/la-nga/pc-01": 9}
        side.sender.sync()
        assert side.latest("pc-01").version == 10
        assert registry.running_versions(side.store) == {}  # the store caught up
    finally:
        side.close()


@pytest.mark.servers
def test_the_agents_of_a_0_2_store_are_sent_a_signed_config_above_their_last(
    tmp_path: Path, broker: Mosquitto
) -> None:
    shutil.copy(STORES / "0.2.0" / "state.sqlite", tmp_path / "state.sqlite")
    side = Sending(tmp_path, broker, tmp_path / "state.sqlite")  # opened: migrated
    try:
        before = {m.agent: m for m in registry.managed(side.store)}
        assert {m.config_key for m in before.values()} == {""}
        assert {m.config_version for m in before.values()} == {1}
        report = side.sender.sync()
        assert report.sent == ["dong-nai/la-nga/pc-01"]  # pc-02 was revoked
        assert side.latest("pc-01").version == 2
        assert registry.managed(side.store)[0].config_key == side.keys().state
    finally:
        side.close()


def test_a_key_made_by_root_belongs_to_the_collectors_folder(tmp_path: Path) -> None:
    """``sudo commune-collector config-key rotate`` in /var/lib/commune-collector: the
    service (its own user) must still read the key it made."""
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    nobody = pwd.getpwnam("nobody")
    state = tmp_path / "commune-collector"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    key_file = state / configkey.DEFAULT_NAME
    configkey.load(key_file, create=True)
    configkey.rotate(key_file)
    for made in (key_file, configkey.next_path(key_file)):
        info = made.stat()
        assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid), made
        assert info.st_mode & 0o777 == 0o600
    configkey.finish(key_file)
    assert key_file.stat().st_uid == nobody.pw_uid
