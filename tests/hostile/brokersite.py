"""A province's broker as it ships, under attack with real enrolled credentials.

Mosquitto runs deploy/mosquitto/dynsec.conf (TLS, the certificate listener, the revocation
list) as its own user; `commune-collector run` enrolls PCs over HTTPS with client
certificates and a CRL; PCs enroll with `commune-agent enroll` as a technician runs it,
which leaves their credentials on disk — a password, or a key and its certificate. The
tests then use those credentials as whoever holds such a PC would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent.wire import Envelope, Sample, encode
from tests import factories
from tests.servers import CollectorProcess, wait_for
from tests.test_broker_security import Client
from tests.test_dynsec import OBSERVER, OBSERVER_PASSWORD, ShippedBroker, observer_account
from tests.test_dynsec import shipped_broker as shipped
from tests.test_rollout import (
    ADMIN,
    ADMIN_PASSWORD,
    COLLECTOR_PASSWORD,
    COLLECTOR_USER,
    PROFILES,
    Site,
    collector_toml,
)

PUBLISHER = f"{COLLECTOR_USER}-configs"
#: The collector's session names: [mqtt] username, the config publisher's, the admin's,
#: and the [collector] client_id of the tests' config (which the broker no longer uses).
PRIVILEGED = (COLLECTOR_USER, PUBLISHER, ADMIN, "collector-rollout")


@dataclass(frozen=True)
class Credentials:
    """What enrollment left on a PC."""

    agent: str
    username: str
    password: str = ""
    cert: tuple[Path, Path] | None = None

    def client(self, broker: ShippedBroker, **options: Any) -> Client:
        return Client(broker, self.username, self.password, cert=self.cert, **options)


@dataclass
class BrokerSite:
    broker: ShippedBroker
    collector: CollectorProcess
    site: Site
    root: Path

    def token(self, commune: str = "la-nga", uses: int = 20, **extra: Any) -> str:
        body = {"province": "dong-nai", "commune": commune, "uses": uses, **extra}
        status, made = self.site.api("POST", "/api/v1/enrollment/tokens", json.dumps(body).encode())
        assert status == 201, made
        return str(made["token"])

    def enroll(self, agent: str, token: str, *extra: str, folder: str = "") -> Credentials:
        """``commune-agent enroll`` in a folder of the PC's own (``folder``: another PC
        taking the id)."""
        config = self.root / "pcs" / (folder or agent) / "agent.toml"
        process = self.site.enroll(agent, token, "--config", str(config), "--force", *extra)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, (err.decode(), self.collector.log[-2000:])
        written = tomllib.loads(config.read_text())["mqtt"]
        if "cert_file" in written:
            return Credentials(
                agent, "", cert=(config.parent / "agent.crt", config.parent / "agent.key")
            )
        return Credentials(
            agent, written["username"], (config.parent / "mqtt-password").read_text().strip()
        )

    def revoke(self, agent: str, commune: str = "la-nga") -> int:
        status, _ = self.site.api("POST", f"/api/v1/agents/dong-nai/{commune}/{agent}/revoke")
        return status

    def get(self, path: str) -> tuple[int, Any]:
        return self.site.api("GET", path)

    def health(self) -> dict[str, str]:
        _, body = self.site.api("GET", "/healthz", token="")
        return dict(body["detail"]["parts"])

    def metric(self, name: str, **labels: str) -> float:
        status, text = self.site.api("GET", "/metrics")
        assert status == 200
        return metric_in(str(text), name, **labels)

    def last_seq(self, agent: str) -> int | None:
        status, found = self.get(f"/api/v1/agents/dong-nai/la-nga/{agent}")
        return found.get("last_seq") if status == 200 else None

    def observer(self) -> Client:
        """Sees every agent topic (an account of the tests', made before the collector)."""
        watcher = Client(self.broker, OBSERVER, OBSERVER_PASSWORD)
        assert watcher.connected.is_set(), watcher.connack
        assert not watcher.subscribe("commune/#").is_failure
        return watcher


#: MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, no client id (the broker names
#: the session after the certificate).
BARE_CONNECT = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x0a\x00\x00"


def refused_in_handshake(broker: ShippedBroker, cert: tuple[Path, Path]) -> bool:
    """Whether the certificate listener refuses this certificate in the TLS handshake (a
    revoked one). In TLS 1.3 the server judges the client's certificate after the
    client has finished its part, so the verdict comes with the first answer: an alert,
    or the CONNACK of a certificate let in. Asked directly rather than through an MQTT
    client, which waits its whole time-out for a CONNACK that never comes."""
    context = ssl.create_default_context(cafile=str(broker.pki.ca))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with (
            socket.create_connection(("localhost", broker.cert_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(BARE_CONNECT)
            return tls.recv(4) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def metric_in(text: str, name: str, **labels: str) -> float:
    """A figure of the collector's /metrics text, by name and labels (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and (not labels or "{" + wanted + "}" in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class AnySite(Protocol):
    """What the retained-data case needs of a broker site, with or without the plugin."""

    broker: Any
    collector: CollectorProcess

    def metric(self, name: str, **labels: str) -> float: ...
    def last_seq(self, agent: str) -> int | None: ...
    def health(self) -> dict[str, str]: ...


def retained_data_is_refused_and_never_replayed(site: AnySite, thief: Credentials) -> None:
    """A PC retaining its data (no ACL of Mosquitto 2.0 refuses the retain flag): the
    collector refuses it by reason, and does not get it again when it subscribes anew."""
    rejected = "commune_collector_messages_rejected_total"
    pc = thief.client(site.broker)
    before = site.last_seq("thief") or 0
    refused = site.metric(rejected, reason="retained")
    retained = pc.publish(data_topic("thief"), envelope("thief", before + 1), retain=True)
    assert not retained.is_failure  # the broker takes it: the collector must not
    wait_for(lambda: site.metric(rejected, reason="retained") == refused + 1, 20,
             "the retained envelope refused")  # fmt: skip
    assert (site.last_seq("thief") or 0) == before  # not applied
    pc.close()
    site.collector.stop()
    site.collector.start()
    wait_for(lambda: site.health().get("broker") == "ok", 30, "the collector back")
    pc = thief.client(site.broker)
    pc.publish(data_topic("thief"), envelope("thief", before + 2))
    wait_for(lambda: site.last_seq("thief") == before + 2, 20, "a plain envelope applied")
    assert site.metric(rejected, reason="retained") == 0
    pc.close()


def envelope(agent: str, seq: int, commune: str = "la-nga") -> bytes:
    sample: Sample = factories.link(time.time(), True, target="10.75.0.1", method="icmp")
    message: Envelope = factories.envelope(
        seq, sample, agent=agent, province="dong-nai", commune=commune, ts=time.time()
    )
    return encode(message)


def data_topic(agent: str, commune: str = "la-nga") -> str:
    return f"commune/dong-nai/{commune}/{agent}/data"


class ReloadOnChange:
    """What deploy/systemd/commune-crl-reload.path does: the broker reloaded (SIGHUP)
    whenever the revocation list changes."""

    def __init__(self, broker: ShippedBroker) -> None:
        self.broker = broker
        self.reloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _stamp(self) -> tuple[int, int]:
        try:
            info = self.broker.crl.stat()
        except OSError:
            return (0, 0)
        return (info.st_mtime_ns, info.st_ino)

    def _watch(self) -> None:
        seen = self._stamp()
        while not self._stop.wait(0.2):
            now = self._stamp()
            if now != seen:
                seen = now
                self.broker.reload()
                self.reloads += 1

    def __enter__(self) -> ReloadOnChange:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def broker_site(
    tmp_path: Path,
    passwords: tuple[str, str] = (ADMIN_PASSWORD, COLLECTOR_PASSWORD),
    store: Path | None = None,
    enrollment_extra: str = "",
    **shipped_options: Any,
) -> Iterator[BrokerSite]:
    """``passwords``: the plugin's admin and the collector's, where the plugin's file is
    another release's (``shipped_options``: see ``shipped_broker``); ``store``: a state
    store to start the collector with (another release's); ``enrollment_extra``: more
    ``[enrollment]`` lines."""
    admin_password, collector_password = passwords
    with shipped(tmp_path / "broker", ADMIN, admin_password, **shipped_options) as broker:
        pki = broker.pki
        profiles = tmp_path / "dong-nai.profiles.toml"
        profiles.write_text(PROFILES)
        collector = CollectorProcess(tmp_path / "collector", broker.password_port)
        url = f"mqtts://localhost:{broker.password_port}"
        collector.config.write_text(collector_toml(
            collector, tmp_path, pki, url, f'ca_file = "{pki.ca}"', profiles,
            f'broker_ca_file = "{pki.ca}"\n'
            f'cert_broker_url = "mqtts://localhost:{broker.cert_port}"\n'
            f'client_ca_cert_file = "{pki.ca}"\nclient_ca_key_file = "{pki.ca_key}"\n'
            f'client_crl_file = "{broker.crl}"\nclient_crl_reload = "2s"\n{enrollment_extra}',
        ))  # fmt: skip
        (tmp_path / "admin.password").write_text(admin_password)
        (tmp_path / "collector.password").write_text(collector_password)
        if store is not None:
            shutil.copy(store, collector.state)
        observer_account(url, ADMIN, admin_password, tmp_path, str(pki.ca))
        collector.start()
        site = Site(None, collector, pki, profiles, tmp_path)  # type: ignore[arg-type]
        here = BrokerSite(broker, collector, site, tmp_path)
        try:
            with ReloadOnChange(broker):
                wait_for(lambda: here.health().get("broker") == "ok", 30, "the collector is in")
                yield here
        finally:
            while Client.opened:
                Client.opened.pop().close()
            collector.stop()


def collector_credentials() -> tuple[str, str]:
    return COLLECTOR_USER, COLLECTOR_PASSWORD
