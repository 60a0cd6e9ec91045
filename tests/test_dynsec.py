"""Agents' accounts through Mosquitto's dynamic security plugin, on a real broker run as
its own user: what an agent may do, what it may not, and revocation that cuts it off."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.configtypes import BrokerSection
from collector.rollout.dynsec import (
    AccountExists,
    Accounts,
    AgentTopics,
    BrokerUnavailable,
    DynsecAdmin,
)
from tests.servers import Mosquitto, Subscriber, dynsec_broker, wait_for
from tests.tls import Pki, make_pki

ADMIN, ADMIN_PASSWORD = "commune-admin", "admin-password-for-tests-0123"
AGENT = "dong-nai/la-nga/pc-01"
TOPICS = AgentTopics(
    status=f"commune/{AGENT}/status", data=f"commune/{AGENT}/data",
    config=f"commune/{AGENT}/config", receipt=f"commune/{AGENT}/receipt",
)  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = dynsec_broker(tmp_path, ADMIN, ADMIN_PASSWORD).start()
    yield server
    server.stop()


def admin_session(broker: Mosquitto, tmp_path: Path) -> DynsecAdmin:
    secret = tmp_path / "admin.password"
    secret.write_text(ADMIN_PASSWORD)
    section = BrokerSection(
        url=f"mqtt://127.0.0.1:{broker.port}", username=ADMIN, password_file=str(secret)
    )
    admin = DynsecAdmin(section, "test-admin")
    admin.start()
    assert admin.wait_ready(10), broker.log[-2000:]
    return admin


class Device:
    """A paho client logged in as one account: what it was granted, what it received."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.granted: dict[str, bool] = {}
        self.received: list[str] = []
        self.disconnected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{username}")
        self.client.username_pw_set(username, password)
        self.client.on_message = lambda _c, _u, m: self.received.append(m.topic)
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_subscribe = self._subscribed
        self._topics: dict[int, str] = {}
        self._lock = threading.Lock()
        self.refused = self.client.connect("127.0.0.1", port) != 0
        self.client.loop_start()

    def _subscribed(
        self, _c: object, _u: object, mid: int, reasons: list[object], _p: object
    ) -> None:
        # The SUBACK can come back before subscribe() has returned its mid (a busy
        # machine): the topic is recorded under the same lock first.
        with self._lock:
            self.granted[self._topics[mid]] = not getattr(reasons[0], "is_failure", True)

    def subscribe(self, topic: str) -> None:
        with self._lock:
            _, mid = self.client.subscribe(topic, qos=1)
            self._topics[mid] = topic
        wait_for(lambda: topic in self.granted, 30, f"no SUBACK for {topic}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


#: An account of the tests' that sees every agent topic, configs included, and may write
#: configs: it plays whoever holds the config publisher's credentials.
OBSERVER, OBSERVER_PASSWORD = "test-observer", "observer-password-0123"


def add_observer(admin: DynsecAdmin) -> None:
    accounts = Accounts(admin)
    accounts._ensure_role(
        OBSERVER,
        [{"acltype": "subscribePattern", "topic": "commune/#", "allow": True},
         {"acltype": "publishClientReceive", "topic": "commune/#", "allow": True},
         {"acltype": "publishClientSend", "topic": "commune/+/+/+/config", "allow": True}],
    )  # fmt: skip
    accounts._ensure_client(OBSERVER, OBSERVER_PASSWORD, OBSERVER, "")


def observer_account(url: str, admin: str, password: str, workdir: Path, ca_file: str = "") -> None:
    """The observer made with a short admin session of the test's own (before the
    collector starts: with the shipped configs a second admin session would take the
    collector's over)."""
    secret = workdir / "observer-admin.password"
    secret.write_text(password)
    session = DynsecAdmin(
        BrokerSection(url=url, username=admin, password_file=str(secret), ca_file=ca_file),
        "test-make-observer",
    )
    session.start()
    try:
        assert session.wait_ready(10), "no admin session to make the test's observer"
        add_observer(session)
    finally:
        session.stop()


def observer(admin: DynsecAdmin, port: int) -> Subscriber:
    add_observer(admin)
    return Subscriber(port, "commune/#", username=OBSERVER, password=OBSERVER_PASSWORD).start()


def test_an_agent_account_writes_its_own_topics_and_reads_only_its_config(
    broker: Mosquitto, tmp_path: Path
) -> None:
    admin = admin_session(broker, tmp_path)
    accounts = Accounts(admin)
    accounts.deny_by_default()
    accounts.ensure_collector("commune-collector", "collector-password-0123", "commune")
    accounts.ensure_publisher("commune-collector-configs", "publisher-password-0123", "commune")
    accounts.create_agent(AGENT, "agent-password-0123", TOPICS)
    watcher = observer(admin, broker.port)
    agent = Device(broker.port, AGENT, "agent-password-0123")
    try:
        wait_for(agent.client.is_connected, 5, "the agent could not log in")
        agent.subscribe(TOPICS.config)
        agent.subscribe("commune/#")
        agent.subscribe("commune/dong-nai/la-nga/pc-02/config")
        assert agent.granted == {
            TOPICS.config: True,
            "commune/#": False,
            "commune/dong-nai/la-nga/pc-02/config": False,
        }
        for topic in (TOPICS.data, "commune/dong-nai/la-nga/pc-02/data", TOPICS.config):
            agent.client.publish(topic, b"{}", qos=1).wait_for_publish(5)
        # The ingest's account reads; it may not write a config.
        ingest = Device(broker.port, "commune-collector", "collector-password-0123")
        wait_for(ingest.client.is_connected, 5, "the collector could not log in")
        ingest.client.publish(TOPICS.config, b'{"ingest": 1}', qos=1).wait_for_publish(5)
        ingest.subscribe(TOPICS.config)
        assert ingest.granted[TOPICS.config] is False
        # The config publisher's account writes configs, and the agent receives its own.
        publisher = Device(broker.port, "commune-collector-configs", "publisher-password-0123")
        wait_for(publisher.client.is_connected, 5, "the publisher could not log in")
        publisher.client.publish(TOPICS.config, b"{}", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: TOPICS.config in agent.received, 5, "the agent got no config")
        wait_for(lambda: any(m.topic == TOPICS.config for m in watcher.messages), 5, "no config")
        publisher.client.publish(TOPICS.data, b'{"forged": 1}', qos=1).wait_for_publish(5)
        time.sleep(0.5)
        seen = {m.topic for m in watcher.messages}
        # Only its own data went through: not another PC's data, not its own config.
        assert TOPICS.data in seen and "commune/dong-nai/la-nga/pc-02/data" not in seen
        configs = [m for m in watcher.messages if m.topic == TOPICS.config]
        assert [m.payload for m in configs] == [b"{}"]  # the publisher's, nobody else's
        assert [m.payload for m in watcher.messages if m.topic == TOPICS.data] == [b"{}"]
        assert agent.received == [TOPICS.config]
        ingest.stop()
        publisher.stop()
    finally:
        agent.stop()
        watcher.stop()
        admin.stop()


def test_deleting_an_account_cuts_its_live_session_at_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    admin = admin_session(broker, tmp_path)
    accounts = Accounts(admin)
    accounts.create_agent(AGENT, "agent-password-0123", TOPICS)
    agent = Device(broker.port, AGENT, "agent-password-0123")
    try:
        wait_for(agent.client.is_connected, 5, "the agent could not log in")
        started = time.monotonic()
        accounts.delete_agent(AGENT)
        assert agent.disconnected.wait(1.0), "still connected a second after revocation"
        assert time.monotonic() - started < 1.0
        accounts.delete_agent(AGENT)  # gone already: not an error
    finally:
        agent.stop()
    again = Device(broker.port, AGENT, "agent-password-0123")
    try:
        assert again.refused or again.disconnected.wait(3)
        assert not again.client.is_connected()
    finally:
        again.stop()
        admin.stop()


def test_an_account_made_twice_is_refused_and_leaves_nothing_behind(
    broker: Mosquitto, tmp_path: Path
) -> None:
    admin = admin_session(broker, tmp_path)
    accounts = Accounts(admin)
    try:
        accounts.create_agent(AGENT, "agent-password-0123", TOPICS)
        with pytest.raises(AccountExists):
            accounts.create_agent(AGENT, "other-password-0123", TOPICS)
        # The first account is as it was: its own password still logs in.
        agent = Device(broker.port, AGENT, "agent-password-0123")
        wait_for(agent.client.is_connected, 5, "the first account was changed")
        agent.stop()
        [roles] = admin.run({"command": "listRoles"})
        listed = roles["data"]["roles"]
        assert [r for r in listed if "pc-01" in str(r)] == ["commune-agent:" + AGENT]
        assert accounts.agent_accounts() == [AGENT]
    finally:
        admin.stop()
    state = json.loads(Path(str(broker.dynsec_file)).read_text())
    assert [c["username"] for c in state["clients"]] == [ADMIN, AGENT]


def test_no_admin_session_is_said_not_waited_for(tmp_path: Path) -> None:
    admin = DynsecAdmin(BrokerSection(url="mqtt://127.0.0.1:1"), "nobody")
    admin.start()
    try:
        with pytest.raises(BrokerUnavailable, match="no admin session"):
            Accounts(admin).create_agent(AGENT, "password-0123", TOPICS)
    finally:
        admin.stop()


@dataclass
class ShippedBroker:
    password_port: int
    cert_port: int
    pki: Pki
    dynsec_file: Path
    log: Path
    crl: Path
    """The client certificates' revocation list the certificate listener loads: the
    collector's [enrollment] client_crl_file."""
    conf: Path
    process: subprocess.Popen[bytes]

    def reload(self) -> None:
        """SIGHUP, as `systemctl reload mosquitto` (and commune-crl-reload.path) sends."""
        self.process.send_signal(signal.SIGHUP)

    def restart(self, crash: bool = False) -> None:
        """Stopped as systemd stops it (it saves its state), or with ``crash`` killed -9
        (what it held since its last autosave is gone), then started again."""
        from tests.servers import stop_process, wait_tcp

        if crash:
            self.process.kill()
            self.process.wait()
        else:
            stop_process(self.process)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log,
                                            stderr=log)  # fmt: skip
        wait_tcp(self.password_port, process=self.process, log=self.log)
        wait_tcp(self.cert_port, process=self.process, log=self.log)


def crl_folder(home: Path) -> Path:
    """/var/lib/commune-crl as OPERATIONS.md lays it out: the collector's, the broker's
    group reading it (here root writes it in the tests' stead)."""
    import grp

    folder = home / "crl"
    folder.mkdir(mode=0o750)
    if os.geteuid() == 0:
        os.chown(folder, 0, grp.getgrnam("mosquitto").gr_gid)
    return folder


def empty_crl(pki: Pki, path: Path) -> None:
    from collector.rollout.signer import load_signer, write_public

    write_public(path, load_signer(str(pki.ca), str(pki.ca_key), 1).revocation_list([]))


@contextlib.contextmanager
def shipped_broker(
    tmp_path: Path,
    admin: str = ADMIN,
    admin_password: str = ADMIN_PASSWORD,
    deploy: Path | None = None,
    dynsec_json: Path | None = None,
) -> Iterator[ShippedBroker]:
    """deploy/mosquitto/dynsec.conf, changed only where it says: its folders and ports;
    the plugin initialised with the admin account and owned by the broker user.
    ``deploy``: another release's broker files; ``dynsec_json``: the plugin's file as
    another release left it (instead of a new one)."""
    import pwd
    import shutil
    import tempfile

    from tests.servers import free_port, stop_process, wait_tcp
    from tests.test_broker_security import (
        AS_BROKER_USER,
        DEPLOY,
        lay_out_for_the_broker,
        production_config,
    )

    deploy = deploy or DEPLOY

    home = Path(tempfile.mkdtemp(prefix="commune-dynsec-"))
    home.chmod(0o755)
    etc, var = home / "etc", home / "var"
    var.mkdir(parents=True)
    pki = make_pki(tmp_path / "pki")
    etc.mkdir()
    for name in ("ca.crt", "server.crt", "server.key"):  # as the config names them
        shutil.copy(tmp_path / "pki" / name, etc / name)
    state = var / "dynamic-security.json"
    if dynsec_json is not None:
        shutil.copy(dynsec_json, state)
    else:
        subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(state), admin, admin_password],
                       check=True, capture_output=True)  # fmt: skip
    lay_out_for_the_broker(etc, var)
    if AS_BROKER_USER:
        user = pwd.getpwnam("mosquitto")
        os.chown(state, user.pw_uid, user.pw_gid)
    crl = crl_folder(home)
    empty_crl(pki, crl / "client-crl.pem")  # `commune-collector client-crl`, before the start
    password_port, cert_port = free_port(), free_port()
    text = production_config(etc, var, password_port, cert_port, "dynsec.conf", crl, deploy)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    log_path = tmp_path / "mosquitto.log"
    log = log_path.open("wb")
    process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    broker = ShippedBroker(password_port, cert_port, pki, state, log_path,
                           crl / "client-crl.pem", conf, process)  # fmt: skip
    try:
        wait_tcp(password_port, process=process, log=log_path)
        wait_tcp(cert_port, process=process, log=log_path)
        yield broker
    finally:
        stop_process(broker.process)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


def test_the_shipped_dynsec_config_runs_as_written_as_the_broker_user(tmp_path: Path) -> None:
    """An agent's account made over TLS works; the plugin may rewrite its own file."""
    secret = tmp_path / "admin.password"
    secret.write_text(ADMIN_PASSWORD)
    with shipped_broker(tmp_path) as broker:
        admin = DynsecAdmin(
            BrokerSection(url=f"mqtts://localhost:{broker.password_port}", username=ADMIN,
                          password_file=str(secret), ca_file=str(broker.pki.ca)),
            "test-admin",
        )  # fmt: skip
        try:
            admin.start()
            assert admin.wait_ready(10), broker.log.read_text()[-2000:]
            Accounts(admin).create_agent(AGENT, "agent-password-0123", TOPICS)
            agent = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-agent")
            agent.username_pw_set(AGENT, "agent-password-0123")
            agent.tls_set(ca_certs=str(broker.pki.ca))
            agent.connect("localhost", broker.password_port)
            agent.loop_start()
            wait_for(agent.is_connected, 5, "the enrolled agent could not log in over TLS")
            assert agent.publish(TOPICS.data, b"{}", qos=1).wait_for_publish(5) is None
            agent.disconnect()
            agent.loop_stop()
            state = json.loads(broker.dynsec_file.read_text())
            assert AGENT in [c["username"] for c in state["clients"]]
        finally:
            admin.stop()
