"""The config topic, tried as an attacker would: whoever can publish an agent's retained
config (the collector's broker password, the collector host) once made a running agent
run a program as root and POST one of its files elsewhere. Each message below must be
refused by a real agent process, which keeps running its last good config (its data
keeps flowing with the previous checks) and says why in its self-metrics; and the
collector's signing key rotates end to end without re-enrolling anyone.

Mosquitto, the agent and (for the rotation) the collector are real processes. Configs
are signed with the collector's own signing code (``collector.rollout.configkey``).
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import OPTIONS
from agent.wire import Envelope, Sample, decode_envelope
from collector.rollout.configkey import DEFAULT_NAME, read_key
from tests.factories import agent_config, agent_toml, central_config, signed, signing_key, trust
from tests.servers import REPO, AgentProcess, Mosquitto, Received, Subscriber, wait_for
from tests.test_rollout import Site

PLACE = "commune/dong-nai/la-nga"
TRUSTED, STRANGER = signing_key(1), signing_key(7)
#: The last good config: a probe of the broker's port (always up) and the host check.
GOOD_VERSION = 50


def good_checks(port: int, name: str = "gw") -> dict[str, list[dict[str, Any]]]:
    return {"host": [{}], "link": [{"name": name, "network": "tslcd", "method": "tcp",
            "target": "127.0.0.1", "port": port, "count": 1}]}  # fmt: skip


@dataclass
class Bait:
    """What a config from the network would have made the agent touch: a program that
    leaves a mark when run, a listener that counts who connects, a file to send."""

    folder: Path
    listener: socket.socket
    connections: list[bytes]

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    @property
    def marker(self) -> Path:
        return self.folder / "ran-as-the-agent"

    @property
    def program(self) -> Path:
        return self.folder / "powershell"

    @property
    def secret(self) -> Path:
        return self.folder / "mqtt-password"


@pytest.fixture(scope="module")
def bait(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bait]:
    folder = tmp_path_factory.mktemp("bait")
    listener = socket.create_server(("127.0.0.1", 0))
    found = Bait(folder, listener, [])
    found.program.write_text(f"#!/bin/sh\ntouch {found.marker}\necho '{{}}'\n")
    found.program.chmod(found.program.stat().st_mode | stat.S_IXUSR)
    found.secret.write_text("the-agents-own-broker-password\n")

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.settimeout(2)
            try:
                found.connections.append(connection.recv(4096))
            except OSError:
                found.connections.append(b"")
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    yield found
    listener.close()


def attack(kind: str, key: str, bait: Bait) -> dict[str, Any]:
    """One check of ``kind`` that sets the local-only ``key`` to what would hurt most."""
    baits: dict[str, dict[str, Any]] = {
        "powershell": {"source": "windows", "powershell": str(bait.program)},
        "clamd_socket": {"source": "clamav", "clamd_socket": f"tcp://127.0.0.1:{bait.port}"},
        "clamav_db_dir": {"source": "clamav", "clamav_db_dir": str(bait.folder)},
        "password_file": {"name": "vc", "method": "rest", "scheme": "http", "host": "127.0.0.1",
                          "port": bait.port, "user": "admin", "password_file": str(bait.secret)},
        "ca_file": {"name": "vc", "method": "rest", "host": "127.0.0.1", "port": bait.port,
                    "user": "admin", "password": "x", "ca_file": str(bait.secret)},
    }  # fmt: skip
    return baits.get(key, {"name": "x", key: str(bait.secret)})  # a key added later: tried too


@dataclass
class Follower:
    """An enrolled agent on a plain broker, following its config topic."""

    broker: Mosquitto
    agent: AgentProcess
    data: Subscriber

    def publish(self, payload: bytes, agent: str = "pc-01") -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{time.time()}")
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        client.publish(f"{PLACE}/{agent}/config", payload, qos=1, retain=True).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()

    def samples(self, since: float = 0.0) -> list[Sample]:
        return [s for e in envelopes(self.data.snapshot()) for s in e.samples if s.ts >= since]

    def said(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The agent's self-metrics fields since ``since``, oldest first."""
        return [dict(s.fields) for s in self.samples(since) if s.check == "agent" and not s.item]

    def wait_said(
        self, predicate: Callable[[dict[str, Any]], bool], since: float, what: str
    ) -> None:
        wait(
            lambda: any(predicate(f) for f in self.said(since)), 30, what,
            lambda: f"the agent said {self.said(since)[-1:]}; its log: {self.agent.log[-1500:]}",
        )  # fmt: skip


def wait(
    predicate: Callable[[], bool], timeout: float, what: str, detail: Callable[[], str]
) -> None:
    """``wait_for``, and when it times out, ``detail()`` as things are then."""
    try:
        wait_for(predicate, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}: {detail()}") from None


def envelopes(messages: list[Received]) -> list[Envelope]:
    return [decode_envelope(m.payload) for m in messages if m.topic.endswith("/data")]


@pytest.fixture(scope="module")
def follower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Follower]:
    folder = tmp_path_factory.mktemp("pc-01")
    broker = Mosquitto(folder / "broker").start()
    config = folder / "agent.toml"
    config.write_text(
        agent_toml(extra=f'state_dir = "{folder / "state"}"\ninterval = "1s"\n')
        + f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.port}"\n[remote]\nenabled = true\n'
    )
    trust(folder, TRUSTED)
    data = Subscriber(broker.port, f"{PLACE}/pc-01/data").start()
    agent = AgentProcess(config).start()
    found = Follower(broker, agent, data)
    found.publish(central_config(good_checks(broker.port, "first"), version=40, interval=1.0))
    found.wait_said(lambda f: f.get("config_version") == 40, 0, "the first config applied")
    found.publish(central_config(good_checks(broker.port), version=GOOD_VERSION, interval=1.0))
    found.wait_said(lambda f: f.get("config_version") == GOOD_VERSION, 0, "the good config")
    yield found
    data.stop()
    agent.stop()
    broker.stop()


def tampered(config: bytes) -> bytes:
    """Signed by the trusted key, then the probe's target changed in the carried bytes."""
    message = json.loads(signed(config, TRUSTED))
    raw = base64.b64decode(message["config"]).replace(b'"127.0.0.1"', b'"10.66.66.66"')
    message["config"] = base64.b64encode(raw).decode()
    return json.dumps(message).encode()


@dataclass(frozen=True)
class Case:
    name: str
    payload: Callable[[int], bytes]
    """From the broker's port (the probe of the good config)."""
    version: int
    words: str


EVIL = {"host": [{}], "link": [{"name": "evil", "network": "tslcd", "target": "10.66.66.66"}]}
CASES = [
    Case("unsigned", lambda _p: agent_config(EVIL, version=101, interval=1.0), 101, "unsigned"),
    Case("signed by a key it does not trust",
         lambda _p: central_config(EVIL, version=102, interval=1.0, key=STRANGER), 102,
         f"untrusted_key: signed by key {STRANGER.id}"),
    Case("tampered after signing",
         lambda p: tampered(agent_config(good_checks(p, "evil"), version=103, interval=1.0)), 103,
         "bad_signature"),
    Case("another agent's config replayed on this topic",
         lambda _p: central_config(EVIL, version=104, interval=1.0, agent="pc-02"), 104,
         "identity_mismatch: payload claims dong-nai/la-nga/pc-02"),
    Case("an older version replayed",
         lambda p: central_config(good_checks(p, "first"), version=40, interval=1.0), 40,
         f"replayed: v40 is older than the config running (v{GOOD_VERSION})"),
    Case("the running version with other content",
         lambda _p: central_config(EVIL, version=GOOD_VERSION, interval=1.0), GOOD_VERSION,
         f"replayed: v{GOOD_VERSION} is the version of the config running"),
]  # fmt: skip
LOCAL_ONLY = [(kind, key) for kind, options in OPTIONS.items()
              for key in sorted(options.local_only_keys)]  # fmt: skip


def refused_while_the_last_good_config_runs(
    follower: Follower, payload: bytes, version: int, words: str
) -> None:
    sent = time.time()
    follower.publish(payload)
    follower.wait_said(
        lambda f: (
            f.get("config_refused_version") == version
            and words in str(f.get("config_error"))
            and f.get("config_version") == GOOD_VERSION
        ),
        sent,
        f"v{version} refused ({words})",
    )
    said = time.time()
    wait_for(lambda: any(s.check == "link" and s.name == "gw" for s in follower.samples(said)),
             30, "the good config's probe after the refusal")  # fmt: skip
    names = {s.name for s in follower.samples(sent) if s.check == "link"}
    assert names == {"gw"}, names
    assert follower.agent.process is not None and follower.agent.process.poll() is None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_config_not_signed_for_this_agent_and_newer_is_refused(
    follower: Follower, case: Case
) -> None:
    payload = case.payload(follower.broker.port)
    refused_while_the_last_good_config_runs(follower, payload, case.version, case.words)


@pytest.mark.parametrize(("kind", "key"), LOCAL_ONLY, ids=[f"{k}.{v}" for k, v in LOCAL_ONLY])
def test_a_signed_config_setting_a_local_only_key_is_refused_and_touches_nothing(
    follower: Follower, bait: Bait, kind: str, key: str
) -> None:
    version = 200 + LOCAL_ONLY.index((kind, key))
    checks = {**good_checks(follower.broker.port, "evil"), kind: [attack(kind, key, bait)]}
    payload = central_config(checks, version=version, interval=1.0)
    position = 1 if kind == "host" else 0
    refused_while_the_last_good_config_runs(
        follower, payload, version, f"checks.{kind}[{position}].{key}: local only"
    )
    assert not bait.marker.exists(), "the agent ran the program the network named"
    assert bait.connections == [], "the agent connected where the network said"


def test_the_cache_holds_the_signed_message_for_the_agent_alone(follower: Follower) -> None:
    cache = Path(follower.agent.config).parent / "state" / "central-config.json"
    assert cache.stat().st_mode & 0o777 == 0o600
    saved = json.loads(cache.read_bytes())
    assert saved["signed"]["key"] == TRUSTED.id
    assert json.loads(base64.b64decode(saved["signed"]["config"]))["version"] == GOOD_VERSION


# ---- the rotation, end to end -----------------------------------------------------------


def cli(*arguments: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *arguments, "-c", str(config)],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def enrolling_site(tmp_path: Path) -> Site:
    """A dynsec broker, and a collector enrolling PCs whose profile runs every second."""
    from tests.servers import CollectorProcess, dynsec_broker
    from tests.test_dynsec import observer_account
    from tests.test_rollout import ADMIN, ADMIN_PASSWORD, PROFILES, collector_toml
    from tests.tls import make_pki

    pki = make_pki(tmp_path / "pki")
    broker = dynsec_broker(tmp_path / "broker", ADMIN, ADMIN_PASSWORD).start()
    profiles = tmp_path / "dong-nai.profiles.toml"
    profiles.write_text(PROFILES.replace('interval = "2s"', 'interval = "1s"'))
    collector = CollectorProcess(tmp_path / "collector", broker.port)
    collector.config.write_text(collector_toml(
        collector, tmp_path, pki, f"mqtt://127.0.0.1:{broker.port}", "", profiles,
    ))  # fmt: skip
    observer_account(f"mqtt://127.0.0.1:{broker.port}", ADMIN, ADMIN_PASSWORD, tmp_path)
    collector.start()
    return Site(broker, collector, pki, profiles, tmp_path)


def test_the_signing_key_rotates_without_re_enrolling_anyone(tmp_path: Path) -> None:
    site = enrolling_site(tmp_path)
    broker, collector = site.broker, site.collector
    observer = site.observer(f"{PLACE}/+/data")
    agent: AgentProcess | None = None
    try:
        status, created = site.api("POST", "/api/v1/enrollment/tokens", json.dumps(
            {"province": "dong-nai", "commune": "la-nga", "uses": 2}).encode())  # fmt: skip
        assert status == 201, created
        for name in ("pc-01", "pc-02"):  # pc-02 enrolls but is never started
            enrolling = site.enroll(name, created["token"])
            _out, err = enrolling.communicate(timeout=60)
            assert enrolling.returncode == 0, err.decode()
        first = read_key(site.signing_key)
        agent = site.agent("pc-01").start()

        def says(keys: set[str], since: float) -> Callable[[], bool]:
            def check() -> bool:
                found = [
                    s.fields for e in envelopes(observer.snapshot()) for s in e.samples
                    if e.agent == "pc-01" and s.check == "agent" and not s.item and s.ts >= since
                ]  # fmt: skip
                return bool(found) and set(str(found[-1].get("config_keys")).split(",")) == keys

            return check

        wait_for(says({first.id}, 0), 60, "pc-01 runs a config signed by the first key")

        rotated = cli("config-key", "rotate", config=collector.config)
        assert rotated.returncode == 0, rotated.stderr
        following = read_key(site.signing_key.with_name(DEFAULT_NAME + ".next"))
        # The running collector notices, signs every config again announcing the next key.
        wait(says({first.id, following.id}, time.time()), 60, "pc-01 trusts both keys",
             lambda: f"collector: {collector.log[-1500:]}; pc-01: {agent.log[-1500:]}")  # fmt: skip
        shown = cli("config-key", "show", config=collector.config)
        assert f"next: {following.id}" in shown.stdout and "trusted by 1 of 2" in shown.stdout

        refused = cli("config-key", "finish", config=collector.config)
        assert refused.returncode == 1 and "dong-nai/la-nga/pc-02" in refused.stderr
        assert "pc-01" not in refused.stderr
        status, _ = site.api("POST", "/api/v1/agents/dong-nai/la-nga/pc-02/revoke")
        assert status == 200
        old = read_key(site.signing_key)  # kept by the test: a leaked copy of it
        finished = cli("config-key", "finish", config=collector.config)
        assert finished.returncode == 0, finished.stderr

        wait(says({following.id}, time.time()), 60, "pc-01 dropped the old key",
             lambda: f"collector: {collector.log[-1500:]}; pc-01: {agent.log[-1500:]}")  # fmt: skip
        assert "config signing keys trusted now" in agent.log

        # The old key, leaked, signs nothing this agent runs any more.
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="with-the-old-key")
        from tests.test_dynsec import OBSERVER, OBSERVER_PASSWORD

        # Whoever holds it and the right to publish configs (the test's observer account).
        publisher.username_pw_set(OBSERVER, OBSERVER_PASSWORD)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        forged = central_config(EVIL, version=10**6, interval=1.0, key=old)
        publisher.publish(f"{PLACE}/pc-01/config", forged, qos=1,
                          retain=True).wait_for_publish(5)  # fmt: skip
        publisher.disconnect()
        publisher.loop_stop()
        wait_for(lambda: f"untrusted_key: signed by key {old.id}" in agent.log, 30,
                 "the old key's config refused")  # fmt: skip
        assert agent.process is not None and agent.process.poll() is None
    finally:
        observer.stop()
        if agent is not None:
            agent.stop()
        collector.stop()
        broker.stop()


def test_an_agent_of_0_2_gets_the_key_over_https_and_then_follows(tmp_path: Path) -> None:
    """Enrolled by 0.2: no key on disk, an unsigned cache. It refuses what the broker
    brings until ``config-key fetch`` (the upgrade runs it) gets the key from the
    collector's public route over the verified HTTPS."""
    site = enrolling_site(tmp_path)
    broker, collector = site.broker, site.collector
    agent: AgentProcess | None = None
    try:
        status, created = site.api("POST", "/api/v1/enrollment/tokens", json.dumps(
            {"province": "dong-nai", "commune": "la-nga", "uses": 1}).encode())  # fmt: skip
        assert status == 201, created
        enrolling = site.enroll("pc-01", created["token"])
        _out, err = enrolling.communicate(timeout=60)
        assert enrolling.returncode == 0, err.decode()
        folder = tmp_path / "pcs" / "pc-01"
        # As 0.2 left it: no key, no config_key line, the unsigned config it ran.
        (folder / "config-key.pub").unlink()
        toml = folder / "agent.toml"
        toml.write_text("\n".join(line for line in toml.read_text().splitlines()
                                  if not line.startswith("config_key")))  # fmt: skip
        (folder / "state").mkdir()
        (folder / "state" / "central-config.json").write_bytes(
            agent_config({"host": [{}]}, version=1, agent="pc-01")
        )
        agent = site.agent("pc-01").start()
        wait(
            lambda: "no config signing key" in agent.log
            and "refused the collector's config v" in agent.log,
            30, "refused without a key", lambda: agent.log[-1500:],
        )  # fmt: skip
        assert "running the unsigned config v1 kept by an earlier version" in agent.log
        agent.stop()

        fetched = subprocess.run(
            [sys.executable, "-m", "agent.cli", "config-key", "fetch", "-c", str(toml),
             "--collector", f"https://localhost:{collector.api_port}", "--ca", str(site.pki.ca)],
            check=False, capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        key = read_key(site.signing_key)
        assert (
            key.id in fetched.stdout and key.public_text in (folder / "config-key.pub").read_text()
        )
        plain = subprocess.run(
            [sys.executable, "-m", "agent.cli", "config-key", "fetch", "-c", str(toml),
             "--collector", "http://collector.example:8080"],
            check=False, capture_output=True, text=True, cwd=REPO, timeout=60,
        )  # fmt: skip
        assert plain.returncode == 1 and "must be https://" in plain.stderr

        agent.start()
        wait(lambda: "applied collector config v" in agent.log, 30,
             "the signed config applied after the fetch", lambda: agent.log[-1500:])  # fmt: skip
        cache = json.loads((folder / "state" / "central-config.json").read_bytes())
        assert cache["signed"]["key"] == key.id
    finally:
        if agent is not None and agent.process is not None and agent.process.poll() is None:
            agent.stop()
        collector.stop()
        broker.stop()
