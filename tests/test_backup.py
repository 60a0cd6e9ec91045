"""`commune-collector backup` and `restore` with real parts: a backup taken while the
collector ingests a flood of envelopes, restored into another layout on a "new host"
(another folder, other file names), a broker started from the restored accounts and a
collector from the restored store; hostile archives refused by name; no restore while
a collector has the store open."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.wire import encode, topic
from collector.rollout.configkey import read_key
from collector.state import migrations
from tests.factories import envelope, link
from tests.servers import (
    DYNSEC_PLUGIN,
    REPO,
    CollectorProcess,
    Mosquitto,
    free_port,
    wait_for,
)
from tests.test_rollout import (
    ADMIN,
    ADMIN_TOKEN,
    COLLECTOR_USER,
    PROFILES,
    Site,
    account_of,
    new_token,
    site,  # noqa: F401 (the fixture)
)


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *arguments],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip


def last_seq(store: Path, key: str) -> int:
    """What the collector has committed for ``key``, read as another process would."""
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT last_seq FROM agents WHERE agent_key = ?", (key,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class Flood:
    """An enrolled PC's account publishing envelopes back to back (QoS 1), as a commune
    emptying its outboxes after an outage: the collector commits batch after batch."""

    def __init__(self, port: int, username: str, password: str, agent: str) -> None:
        self.agent = agent
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username)
        self.client.username_pw_set(username, password)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        name = topic("commune", "dong-nai", "la-nga", self.agent, "data")
        start = time.time() - 3600
        while not self._stop.is_set():
            pending = []
            for _ in range(50):
                self.sent += 1
                ts = start + self.sent
                samples = [link(ts, target=f"10.0.0.{n}", name=f"t{n}") for n in range(5)]
                body = encode(envelope(self.sent, *samples, agent=self.agent))
                pending.append(self.client.publish(name, body, qos=1))
            for message in pending:
                message.wait_for_publish(10)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(20)
        self.client.disconnect()
        self.client.loop_stop()


def connects(port: int, username: str, password: str) -> bool:
    """Whether the broker lets this account in (CONNACK success)."""
    answered = threading.Event()
    result: list[bool] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}")
    client.username_pw_set(username, password)

    def on_connect(_c: object, _u: object, _f: object, reason: Any, _p: object) -> None:
        result.append(not reason.is_failure)
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), f"no CONNACK for {username}"
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0]


def new_host_config(home: Path, broker_port: int, api_port: int) -> Path:
    """The same collector on another host: every file in another place, under another
    name; the broker on the port the PCs' configs name."""
    digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    url = f"mqtt://127.0.0.1:{broker_port}"
    config = home / "etc" / "collector.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f"""
[mqtt]
url = "{url}"
username = "{COLLECTOR_USER}"
password_file = "secrets/broker.pw"
[store]
path = "{home / "var" / "lib" / "commune.db"}"
[collector]
client_id = "collector-restored"
[api]
listen = "127.0.0.1:{api_port}"
tls_cert_file = "tls/api.pem"
tls_key_file = "tls/api-key.pem"
[[api.tokens]]
name = "province-admin"
role = "admin"
sha256 = "{digest}"
[dynsec]
url = "{url}"
username = "{ADMIN}"
password_file = "secrets/dynsec-admin.pw"
[enrollment]
broker_url = "{url}"
profiles = ["profiles/dong-nai.toml"]
config_key_file = "{home / "keys" / "signing.key"}"
""")  # fmt: skip
    return config


def restored_broker(workdir: Path, port: int) -> Mosquitto:
    """A broker with the dynamic security plugin whose file is yet to be restored."""
    broker = Mosquitto(workdir, extra="allow_anonymous false\n", port=port)
    state = broker.workdir / "dynamic-security.json"
    broker.conf.write_text(
        broker.conf.read_text() + f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {state}\n"
    )
    broker.dynsec_file = state
    return broker


def test_a_backup_under_load_restores_onto_a_new_host(
    site: Site,  # noqa: F811
    tmp_path: Path,
) -> None:
    token, _ = new_token(site)
    unused, _ = new_token(site)
    names = ("pc-01", "pc-02", "pc-03")
    enrolling = [site.enroll(name, token) for name in names]
    for name, process in zip(names, enrolling, strict=True):
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, (name, err.decode(), site.collector.log[-2000:])
    status, revoked = site.api("POST", "/api/v1/agents/dong-nai/la-nga/pc-02/revoke")
    assert status == 200, revoked
    old_key = read_key(site.signing_key).public_text
    store = site.collector.state
    agent = site.agent("pc-01").start()
    try:
        wait_for(lambda: last_seq(store, "dong-nai/la-nga/pc-01") > 0, 30, "pc-01 reports")
    finally:
        agent.stop()

    (site.root / "admin.password").chmod(0o600)
    archives = tmp_path / "backups"
    assert site.broker.dynsec_file is not None
    with Flood(site.broker.port, *account_of(site, "pc-03"), "pc-03"):
        wait_for(lambda: last_seq(store, "dong-nai/la-nga/pc-03") > 200, 30, "flood ingested")
        before = last_seq(store, "dong-nai/la-nga/pc-03")
        made = cli("backup", "-c", str(site.collector.config), "-o", str(archives),
                   "--dynsec", str(site.broker.dynsec_file))  # fmt: skip
        after = last_seq(store, "dong-nai/la-nga/pc-03")
    assert made.returncode == 0, made.stderr
    assert after > before, "the collector committed while the backup was taken"
    (archive,) = archives.glob("commune-collector-*.tar.gz")
    assert archive.stat().st_mode & 0o777 == 0o600
    for role in ("store", "config", "mqtt.password_file", "dynsec.password_file",
                 "api.tls_key_file", "enrollment.profiles[0]", "enrollment.config_key_file",
                 "broker.dynamic_security"):  # fmt: skip
        assert f"  {role} " in made.stdout, (role, made.stdout)
    assert f"wrote {archive}" in made.stdout

    # The store in the archive is whole, and holds a state between before and after.
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (stored,) = [e for e in manifest["entries"] if e["role"] == "store"]
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(tar.extractfile(stored["member"]).read())  # type: ignore[union-attr]
    assert manifest["store_schema"] == migrations.LATEST
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert before <= last_seq(copy, "dong-nai/la-nga/pc-03") <= after
    assert not any("release-root" in e["role"] for e in manifest["entries"])

    # The host is lost. Another one, every file elsewhere; the broker's port as before.
    site.collector.stop()
    site.broker.stop()
    home = tmp_path / "new-host"
    api_port = free_port()
    config = new_host_config(home, site.broker.port, api_port)
    broker = restored_broker(tmp_path / "new-broker", site.broker.port)
    assert broker.dynsec_file is not None
    dry = cli("restore", str(archive), "-c", str(config), "--dynsec", str(broker.dynsec_file),
              "--dry-run")  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert f"-> {home / 'keys' / 'signing.key'}" in dry.stdout
    assert sorted(p.name for p in home.rglob("*")) == ["collector.toml", "etc"]  # nothing yet
    done = cli("restore", str(archive), "-c", str(config), "--dynsec", str(broker.dynsec_file))
    assert done.returncode == 0, done.stderr
    assert (home / "etc" / "secrets" / "dynsec-admin.pw").stat().st_mode & 0o777 == 0o600
    assert not Path(f"{home / 'var' / 'lib' / 'commune.db'}-wal").exists()

    restored = CollectorProcess(home / "run", broker.port)
    restored.config, restored.api_port = config, api_port
    restored.state = home / "var" / "lib" / "commune.db"
    broker.start()
    restored.start()
    new = Site(broker, restored, site.pki, home / "etc" / "profiles" / "dong-nai.toml", site.root)
    agent = new.agent("pc-01")
    try:
        # The history is there before any agent speaks again.
        status, agents = new.api("GET", "/api/v1/agents?commune=la-nga")
        assert status == 200, agents
        seqs = {a["agent"]: a["last_seq"] for a in agents}
        assert seqs["pc-03"] >= before and seqs["pc-01"] > 0, seqs
        # The same key signs the configs: the PCs trust the restored collector's.
        assert read_key(home / "keys" / "signing.key").public_text == old_key
        status, keys = new.api("GET", "/api/v1/config-keys", token="")
        assert status == 200, keys
        assert [(k["role"], k["public"]) for k in keys["keys"]] == [("current", old_key)]
        # The revoked PC stays out; the enrolled one comes in with its old password.
        assert not connects(broker.port, *account_of(site, "pc-02"))
        pc01_seq = seqs["pc-01"]
        started = time.time()
        agent.start()
        wait_for(lambda: last_seq(restored.state, "dong-nai/la-nga/pc-01") > pc01_seq, 30,
                 f"pc-01's data accepted: {agent.log[-1500:]}")  # fmt: skip
        assert "Not authorized" not in agent.log
        # A change made on the restored collector: signed with the restored key, applied.
        changed = PROFILES.replace('interval = "2s"', 'interval = "3s"')
        status, answer = new.api("PUT", "/api/v1/profiles/dong-nai", changed.encode())
        assert status == 200, answer
        wait_for(lambda: "applied collector config v2" in agent.log, 30,
                 f"pc-01 applies the restored collector's config: {agent.log[-1500:]}")  # fmt: skip
        # A token made before the backup and not used enrolls a new PC.
        enrolled = new.enroll("pc-04", unused)
        _, err = enrolled.communicate(timeout=60)
        assert enrolled.returncode == 0, (err.decode(), restored.log[-2000:])
        assert time.time() - started < 60
    finally:
        agent.stop()
        restored.stop()
        broker.stop()


# --- hostile archives ----------------------------------------------------------------


@pytest.fixture
def small_archive(tmp_path: Path) -> tuple[Path, Path]:
    """(an archive of a small collector's files, a fresh host's config to restore with)."""
    from collector.state.store import StateStore

    old = tmp_path / "old"
    old.mkdir()
    StateStore(old / "state.sqlite").close()
    (old / "mqtt.pw").write_text("broker-password\n")
    (old / "mqtt.pw").chmod(0o600)
    (old / "collector.toml").write_text(
        f'[store]\npath = "{old / "state.sqlite"}"\n[mqtt]\npassword_file = "mqtt.pw"\n'
        '[console]\nsecret_file = "console.secret"\n'
    )
    made = cli("backup", "-c", str(old / "collector.toml"), "-o", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    assert "missing: console.secret_file" in made.stdout  # named, not there: said, no crash
    (archive,) = (tmp_path / "out").glob("*.tar.gz")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "collector.toml").write_text(
        '[store]\npath = "data/state.sqlite"\n[mqtt]\npassword_file = "keys/mqtt.pw"\n'
    )
    return archive, fresh / "collector.toml"


def rewrite(archive: Path, out: Path, change: Any) -> Path:
    """``archive`` written again as ``out``, each member through ``change(name, data)``
    (None drops it); ``change`` may add members by returning a list of (name, data)."""
    members: list[tuple[str, bytes]] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            changed = change(member.name, data)
            members += changed if isinstance(changed, list) else [(member.name, changed)]
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def refused(archive: Path, config: Path) -> str:
    result = cli("restore", str(archive), "-c", str(config))
    assert result.returncode == 1, result.stdout
    assert sorted(p.name for p in config.parent.rglob("*")) == ["collector.toml"], "written"
    return result.stderr


def role_member(archive: Path, role: str) -> str:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    return str(next(e["member"] for e in manifest["entries"] if e["role"] == role))


def test_a_changed_or_unsafe_archive_is_refused_by_name_and_nothing_is_written(
    small_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    archive, config = small_archive
    password = role_member(archive, "mqtt.password_file")

    def one_byte(name: str, data: bytes) -> bytes:
        return data[:3] + bytes([data[3] ^ 1]) + data[4:] if name == password else data

    tampered = rewrite(archive, tmp_path / "tampered.tar.gz", one_byte)
    message = refused(tampered, config)
    assert f"{password} (mqtt.password_file) does not match the manifest" in message
    assert "nothing was written" in message

    def climbing(name: str, data: bytes) -> list[tuple[str, bytes]]:
        return [(name, data)] + ([("../evil", b"x")] if name == "manifest.json" else [])

    message = refused(rewrite(archive, tmp_path / "climbing.tar.gz", climbing), config)
    assert "member '../evil' has an unsafe path" in message
    assert not (tmp_path / "evil").exists()

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert "truncated or damaged" in refused(truncated, config)

    # A store from a newer collector, its manifest made to match: refused for its schema.
    store_member = role_member(archive, "store")
    newer = tmp_path / "newer.sqlite"

    def from_the_future(name: str, data: bytes) -> bytes:
        if name == store_member:
            newer.write_bytes(data)
            with contextlib.closing(sqlite3.connect(newer)) as db:
                db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
            return newer.read_bytes()
        return data

    future = rewrite(archive, tmp_path / "future.tar.gz", from_the_future)
    changed = newer.read_bytes()

    def rehashed(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        for entry in manifest["entries"]:
            if entry["member"] == store_member:
                entry["size"], entry["sha256"] = len(changed), hashlib.sha256(changed).hexdigest()
        return json.dumps(manifest).encode()

    future = rewrite(future, tmp_path / "future2.tar.gz", rehashed)
    message = refused(future, config)
    assert f"schema version {migrations.LATEST + 1}, written by a newer collector" in message

    # The untouched archive restores into the fresh layout, modes kept.
    result = cli("restore", str(archive), "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert (config.parent / "keys" / "mqtt.pw").read_text() == "broker-password\n"
    assert (config.parent / "keys" / "mqtt.pw").stat().st_mode & 0o777 == 0o600


def test_a_crafted_archive_cannot_steer_roots_writes(
    small_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    """Restore runs as root; the collector's account can write some of the folders it
    writes to, and whoever can rewrite an archive can rewrite its manifest. A link on
    the way that another account could have made, two roles on one file, a manifest
    field of the wrong type: each refused by name, nothing written, nothing followed."""
    archive, config = small_archive
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    keys = config.parent / "keys"
    keys.symlink_to(elsewhere, target_is_directory=True)
    if os.geteuid() == 0:  # as the collector's account would have made it
        os.lchown(keys, 65534, 65534)
    result = cli("restore", str(archive), "-c", str(config))
    assert result.returncode == 1, result.stdout
    assert "a link another account could have made" in result.stderr
    assert list(elsewhere.iterdir()) == []
    keys.unlink()

    password = role_member(archive, "mqtt.password_file")
    copied: dict[str, bytes] = {}

    def twice(name: str, data: bytes) -> bytes | list[tuple[str, bytes]]:
        if name == password:
            copied["data"] = data
            return [(name, data), ("files/9999", data)]
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        first = next(e for e in manifest["entries"] if e["member"] == password)
        manifest["entries"].append({**first, "member": "files/9999"})
        return json.dumps(manifest).encode()

    message = refused(rewrite(archive, tmp_path / "twice.tar.gz", twice), config)
    assert "would both be written to" in message

    def wrong_type(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest["entries"][-1]["mode"] = "0600"
        return json.dumps(manifest).encode()

    message = refused(rewrite(archive, tmp_path / "typed.tar.gz", wrong_type), config)
    assert "is not a backup manifest" in message and "whole numbers" in message

    # A GNU long-name header (read whole by tarfile: a memory bomb from a small archive)
    # is refused as it is read; so is a member before the manifest.
    long_name = tmp_path / "long.tar.gz"
    with tarfile.open(long_name, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("files/" + "0" * 300)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    assert "is not a plain file" in refused(long_name, config)

    members: list[tuple[str, bytes]] = []
    with tarfile.open(archive) as tar:
        for member in tar:
            members.append((member.name, tar.extractfile(member).read()))  # type: ignore[union-attr]
    reordered = tmp_path / "reordered.tar.gz"
    with tarfile.open(reordered, "w:gz") as tar:
        for name, data in [*members[1:], members[0]]:  # the manifest last
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert "manifest.json is not the first member" in refused(reordered, config)


# --- not while the collector runs ----------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


def test_restore_refuses_while_a_collector_has_the_store_open(
    broker: Mosquitto, tmp_path: Path
) -> None:
    secret = tmp_path / "console.secret"
    secret.write_text("s" * 48)
    collector = CollectorProcess(
        tmp_path / "c", broker.port, sections=f'[console]\nsecret_file = "{secret}"\n'
    ).start()
    try:
        made = cli("backup", "-c", str(collector.config), "-o", str(tmp_path / "out"))
        assert made.returncode == 0, made.stderr
        (archive,) = (tmp_path / "out").glob("*.tar.gz")
        secret.write_text("t" * 48)
        result = cli("restore", str(archive), "-c", str(collector.config))
        assert result.returncode == 1
        assert collector.process is not None
        assert f"process {collector.process.pid} has the state store" in result.stderr
        assert "Stop it" in result.stderr and "--force" in result.stderr
        assert secret.read_text() == "t" * 48  # nothing written
    finally:
        collector.stop()
    # Stopped: the same restore goes through.
    result = cli("restore", str(archive), "-c", str(collector.config))
    assert result.returncode == 0, result.stderr
    assert secret.read_text() == "s" * 48


def test_the_archive_holds_the_online_release_keys_and_profile_secrets_not_the_offline_keys(
    tmp_path: Path,
) -> None:
    from collector.state.store import StateStore

    home = tmp_path / "lib"
    home.mkdir()
    StateStore(home / "state.sqlite").close()
    for role in ("root", "targets", "snapshot", "timestamp"):
        (home / f"release-{role}.key").write_text(f"{role} key\n")
    (home / "releases" / "metadata").mkdir(parents=True)
    (home / "releases" / "metadata" / "1.root.json").write_text("{}")
    (home / "config-signing.key").write_text("key\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "la-nga.community").write_text("c0mmunity\n")
    (tmp_path / "dong-nai.toml").write_text(
        'province = "dong-nai"\n[vars]\nsnmp = { secret_file = "secrets/la-nga.community" }\n'
    )
    (tmp_path / "collector.toml").write_text(f"""
[store]
path = "{home / "state.sqlite"}"
[dynsec]
password_file = "admin.pw"
[enrollment]
broker_url = "mqtts://broker.example:8883"
profiles = ["dong-nai.toml"]
""")  # fmt: skip
    made = cli("backup", "-c", str(tmp_path / "collector.toml"), "-o", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    assert "missing: dynsec.password_file" in made.stdout
    (archive,) = (tmp_path / "out").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    roles = {e["role"] for e in manifest["entries"]}
    assert {
        "releases.online_keys_dir/release-snapshot.key",
        "releases.online_keys_dir/release-timestamp.key",
        "releases.path/metadata/1.root.json",
        "enrollment.config_key_file",
        "enrollment.profiles[0]",
        "enrollment.profiles[0].secrets/secrets/la-nga.community",
    } <= roles, roles
    assert not [r for r in roles if "release-root" in r or "release-targets" in r], roles
