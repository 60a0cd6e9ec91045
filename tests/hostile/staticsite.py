"""A province's broker without the plugin, as it ships: deploy/mosquitto/mosquitto.conf
and its ACL file, run by a real Mosquitto as its own user, the certificate listener
loading the revocation list; accounts made and removed by `commune-collector enroll` and
`revoke` in the password file, PCs' certificates issued by hand from the province's CA
and revoked with `revoke --cert`; and `commune-collector run` reading it with the
collector's password, as such a province runs it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from collector.cli.main import main
from collector.rollout.passwordfile import set_password
from tests.hostile.brokersite import Credentials, ReloadOnChange, metric_in
from tests.servers import CollectorProcess, free_port, stop_process, wait_for, wait_tcp
from tests.test_broker_security import (
    BROKER_GROUP,
    COLLECTOR_PASSWORD,
    DEPLOY,
    Client,
    lay_out_for_the_broker,
    production_config,
)
from tests.test_dynsec import ShippedBroker, crl_folder
from tests.tls import client_cert, make_pki

COLLECTOR_USER = "commune-collector"


@dataclass
class StaticBroker(ShippedBroker):
    """``dynsec_file`` is, here, the password file."""

    etc: Path
    """/etc/mosquitto/commune/: the CA, the server's certificate, the password file, the
    ACL file."""

    @property
    def passwd(self) -> Path:
        return self.etc / "passwd"


def cli(*arguments: str) -> str:
    """A `commune-collector` command, as the province's administrator runs it."""
    result = CliRunner().invoke(main, list(arguments))
    assert result.exit_code == 0, result.output
    return result.output


@contextlib.contextmanager
def static_broker(tmp_path: Path, deploy: Path = DEPLOY) -> Iterator[StaticBroker]:
    """``deploy``: another release's mosquitto.conf and acl."""
    home = Path(tempfile.mkdtemp(prefix="commune-static-"))
    home.chmod(0o755)  # the broker's user reaches its files, as under /etc
    etc, var = home / "etc", home / "var"
    var.mkdir(parents=True)
    etc.mkdir()
    pki = make_pki(tmp_path / "pki")  # the CA's key stays out of the broker's folder
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(tmp_path / "pki" / name, etc / name)
    shutil.copy(deploy / "acl", etc / "acl")
    set_password(etc / "passwd", COLLECTOR_USER, COLLECTOR_PASSWORD, BROKER_GROUP)
    lay_out_for_the_broker(etc, var)
    crl = crl_folder(home)
    # Before the first start: the certificate listener needs the list.
    cli("client-crl", "--ca-cert", str(pki.ca), "--ca-key", str(pki.ca_key),
        "--crl", str(crl / "client-crl.pem"))  # fmt: skip
    password_port, cert_port = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(production_config(etc, var, password_port, cert_port, crl=crl, deploy=deploy))
    log_path = tmp_path / "mosquitto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
    broker = StaticBroker(password_port, cert_port, pki, etc / "passwd", log_path,
                          crl / "client-crl.pem", conf, process, etc)  # fmt: skip
    try:
        wait_tcp(password_port, process=process, log=log_path)
        wait_tcp(cert_port, process=process, log=log_path)
        yield broker
    finally:
        stop_process(broker.process)
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class StaticSite:
    broker: StaticBroker
    collector: CollectorProcess
    root: Path

    def enroll(self, agent: str, *extra: str) -> Credentials:
        """`commune-collector enroll` (``extra``: ``--replace``), then the reload it asks."""
        out = self.root / "enrolled"
        cli("enroll", "--province", "dong-nai", "--commune", "la-nga", "--agent", agent,
            "--passwd-file", str(self.broker.passwd), "--broker-group", BROKER_GROUP,
            "--broker-url", "mqtts://localhost:8883", "--out", str(out), *extra)  # fmt: skip
        username = f"dong-nai/la-nga/{agent}"
        secret = out / username.replace("/", "_") / "mqtt-password"
        self.broker.reload()
        return Credentials(agent, username, secret.read_text().strip())

    def issue(self, agent: str, file: str) -> Credentials:
        """A certificate for the PC, issued by hand from the province's CA (no account:
        its Common Name is one)."""
        pair = client_cert(self.broker.pki, self.root / "pcs", f"dong-nai/la-nga/{agent}", file)
        return Credentials(agent, "", cert=pair)

    def revoke(self, agent: str, held: Credentials) -> str:
        """`commune-collector revoke` as the operator's guide says: with the PC's
        certificate and the broker's address, if it has one (the list's change reloads
        the broker, then the command ends the certificate's session); the reload after a
        password's removal."""
        place = ["--province", "dong-nai", "--commune", "la-nga", "--agent", agent]
        place += ["--passwd-file", str(self.broker.passwd), "--broker-group", BROKER_GROUP]
        if held.cert is None:
            said = cli("revoke", *place)
            self.broker.reload()
            return said
        pki = self.broker.pki
        place += ["--cert", str(held.cert[0]), "--crl", str(self.broker.crl)]
        place += ["--broker-url", f"mqtts://localhost:{self.broker.cert_port}"]
        return cli("revoke", *place, "--ca-cert", str(pki.ca), "--ca-key", str(pki.ca_key))

    def health(self) -> dict[str, str]:
        _, body = self.collector.get("/healthz", token=None)
        return dict(body["detail"]["parts"])  # type: ignore[index]

    def metric(self, name: str, **labels: str) -> float:
        status, text = self.collector.get("/metrics")
        assert status == 200, text
        return metric_in(str(text), name, **labels)

    def last_seq(self, agent: str) -> int | None:
        status, found = self.collector.get(f"/api/v1/agents/dong-nai/la-nga/{agent}")
        return found.get("last_seq") if status == 200 else None  # type: ignore[union-attr]


def collector_process(broker: StaticBroker, workdir: Path) -> CollectorProcess:
    """`commune-collector run` with the collector's account and nothing of the plugin."""
    collector = CollectorProcess(workdir, broker.password_port)
    secret = workdir / "collector.password"
    secret.write_text(COLLECTOR_PASSWORD)
    text = collector.config.read_text()
    plain = f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker.password_port}"\n'
    assert plain in text
    collector.config.write_text(text.replace(plain, (
        f'[mqtt]\nurl = "mqtts://localhost:{broker.password_port}"\n'
        f'username = "{COLLECTOR_USER}"\npassword_file = "{secret}"\n'
        f'ca_file = "{broker.pki.ca}"\n'
    )))  # fmt: skip
    return collector


@contextlib.contextmanager
def static_site(tmp_path: Path, **options: Any) -> Iterator[StaticSite]:
    """``options``: see ``static_broker``."""
    with static_broker(tmp_path / "broker", **options) as broker:
        collector = collector_process(broker, tmp_path / "collector")
        collector.start()
        here = StaticSite(broker, collector, tmp_path)
        try:
            with ReloadOnChange(broker):  # commune-crl-reload.path
                wait_for(lambda: here.health().get("broker") == "ok", 30, "the collector is in")
                yield here
        finally:
            while Client.opened:
                Client.opened.pop().close()
            collector.stop()
