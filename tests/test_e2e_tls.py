"""The agent against a Mosquitto with TLS: password and client-certificate logins,
and the refusals a production broker must make (wrong password, untrusted certificates)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent import wire
from collector.rollout.passwordfile import set_password
from tests.factories import agent_toml
from tests.servers import AgentProcess, Mosquitto, Subscriber, broker_readable, free_port
from tests.tls import Pki, make_pki

USER = "dong-nai.la-nga.pc-01"
PASSWORD = "correct horse battery staple"


@dataclass
class TlsBroker:
    broker: Mosquitto
    pki: Pki
    password_port: int
    certificate_port: int


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    pki = make_pki(tmp_path / "pki", client_name=USER)
    passwords = tmp_path / "passwords"
    set_password(passwords, USER, PASSWORD)
    # The broker runs as its own user: its files where it can read them, as on a server.
    ca, cert, key, passwords = broker_readable(pki.ca, pki.server_cert, pki.server_key, passwords)
    password_port, certificate_port = free_port(), free_port()
    tls = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    broker = Mosquitto(
        tmp_path / "broker",
        preamble="per_listener_settings true",
        listener_options="allow_anonymous true\n",  # the plain listener, for the test's subscriber
        extra=(
            f"listener {password_port} 127.0.0.1\n{tls}allow_anonymous false\n"
            f"password_file {passwords}\n"
            f"listener {certificate_port} 127.0.0.1\n{tls}allow_anonymous false\n"
            "require_certificate true\nuse_identity_as_username true\n"
        ),
    ).start()
    yield TlsBroker(broker, pki, password_port, certificate_port)
    broker.stop()


def write_config(tmp_path: Path, mqtt: str) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        agent_toml(extra='interval = "0.5s"\n') + f'state_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nreconnect_max = "1s"\n{mqtt}\n'
        "[[checks.host]]\n"
    )
    return config


def by_password(tls: TlsBroker, password_file: Path, ca: Path | None = None) -> str:
    return (
        f'url = "mqtts://localhost:{tls.password_port}"\nca_file = "{ca or tls.pki.ca}"\n'
        f'username = "{USER}"\npassword_file = "{password_file}"'
    )


def by_certificate(tls: TlsBroker, cert: Path, key: Path) -> str:
    return (
        f'url = "mqtts://127.0.0.1:{tls.certificate_port}"\nca_file = "{tls.pki.ca}"\n'
        f'cert_file = "{cert}"\nkey_file = "{key}"'
    )


def password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "mqtt.password"
    path.write_text(password + "\n")
    return path


Result = tuple[list[wire.Status], AgentProcess]


def run_agent(tmp_path: Path, tls: TlsBroker, mqtt: str, seconds: float = 0) -> Result:
    """Births seen on the plain listener: wait for data, or watch for ``seconds``."""
    subscriber = Subscriber(tls.broker.port, "commune/#").start()
    agent = AgentProcess(write_config(tmp_path, mqtt)).start()
    try:
        if seconds:
            time.sleep(seconds)
        else:
            subscriber.wait_for(lambda ms: any(m.topic.endswith("/data") for m in ms))
        births = [wire.decode_status(m.payload) for m in subscriber.snapshot("/status")]
    finally:
        agent.stop()
        subscriber.stop()
    return births, agent


def outbox_rows(tmp_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "outbox.sqlite")) as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_tls_with_password(tmp_path: Path, tls_broker: TlsBroker) -> None:
    mqtt = by_password(tls_broker, password_file(tmp_path, PASSWORD))
    births, agent = run_agent(tmp_path, tls_broker, mqtt)
    assert births[0].state == "online"
    assert PASSWORD not in agent.log


def test_tls_with_client_certificate(tmp_path: Path, tls_broker: TlsBroker) -> None:
    pki = tls_broker.pki
    births, _ = run_agent(
        tmp_path, tls_broker, by_certificate(tls_broker, pki.client_cert, pki.client_key)
    )
    assert births[0].state == "online"


def test_wrong_password_is_refused_and_said(tmp_path: Path, tls_broker: TlsBroker) -> None:
    mqtt = by_password(tls_broker, password_file(tmp_path, "Xq9-not-the-password"))
    births, agent = run_agent(tmp_path, tls_broker, mqtt, seconds=3)
    assert births == []
    assert "broker refused the connection: Not authorized" in agent.log
    assert agent.log.count("refused the connection") == 1  # once per reason, not every retry
    assert outbox_rows(tmp_path) >= 3
    assert "Xq9-not-the-password" not in agent.log


def test_client_certificate_from_an_untrusted_ca_cannot_connect(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    pki = tls_broker.pki
    mqtt = by_certificate(tls_broker, pki.rogue_client_cert, pki.rogue_client_key)
    births, agent = run_agent(tmp_path, tls_broker, mqtt, seconds=3)
    assert births == []
    assert "cannot connect to 127.0.0.1" in agent.log
    assert outbox_rows(tmp_path) >= 3
    assert agent.process is not None and agent.process.returncode == 0  # ran until stopped


def test_agent_refuses_a_broker_it_cannot_verify(tmp_path: Path, tls_broker: TlsBroker) -> None:
    mqtt = by_password(tls_broker, password_file(tmp_path, PASSWORD), ca=tls_broker.pki.rogue_ca)
    births, agent = run_agent(tmp_path, tls_broker, mqtt, seconds=3)
    assert births == []
    assert "certificate verify failed; check ca_file" in agent.log
    assert PASSWORD not in agent.log
