"""The broker without the plugin, as deploy/mosquitto/mosquitto.conf and acl ship it,
attacked with real credentials — passwords `commune-collector enroll` made, certificates
issued from the province's CA — while the collector runs: what an enrolled PC, or whoever
holds its password or certificate, can never do — take the collector's session, have its
retained data taken, read or write another's topics, write configs — and revocation that
lasts through enrollments, revocations, replacements and broker restarts. The same claims
as test_broker.py makes of the plugin's config, on the province's other choice."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from collector.cli.main import main
from collector.rollout import sessionend, staticcrl
from collector.rollout.signer import load_signer
from tests.hostile.brokersite import (
    Credentials,
    data_topic,
    envelope,
    retained_data_is_refused_and_never_replayed,
)
from tests.hostile.staticsite import (
    COLLECTOR_USER,
    StaticBroker,
    StaticSite,
    static_broker,
    static_site,
)
from tests.servers import wait_for
from tests.test_broker_security import COLLECTOR_PASSWORD, Client
from tests.tls import client_cert

NOT_AUTHORIZED = 0x87
RELEASE = Path(__file__).resolve().parent.parent / "data" / "broker" / "0.2.0"


@pytest.fixture(scope="module")
def ssite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticSite]:
    with static_site(tmp_path_factory.mktemp("staticsite")) as site:
        yield site


@pytest.fixture(scope="module")
def enrolled(ssite: StaticSite) -> dict[str, Credentials]:
    """Two PCs of La Ngà with a password, one with a certificate: victim, thief, keyed."""
    return {
        "victim": ssite.enroll("victim"),
        "thief": ssite.enroll("thief"),
        "keyed": ssite.issue("keyed", "keyed"),
    }


@pytest.mark.parametrize("session", [COLLECTOR_USER, "collector-e2e"])
@pytest.mark.parametrize("how", ["password", "certificate"])
def test_no_enrolled_pc_takes_the_collectors_session(
    ssite: StaticSite, enrolled: dict[str, Credentials], session: str, how: str
) -> None:
    """The thief asks for the collector's session by its client id (its account, and the
    [collector] client_id the broker no longer uses): it gets a session of its own,
    nothing of the collector's queue, and the collector, never disconnected, applies
    every envelope the victim sends."""
    thief = enrolled["thief" if how == "password" else "keyed"]
    victim = enrolled["victim"].client(ssite.broker)
    before = ssite.last_seq("victim") or 0
    takeovers = ssite.metric("commune_collector_broker_session_takeovers_total")
    grabbed = thief.client(ssite.broker, client_id=session, persistent=True)
    assert grabbed.connected.is_set(), grabbed.connack
    assert grabbed.session_present is False
    for topic in ("#", "commune/#"):
        grabbed.subscribe(topic)
    for seq in range(before + 1, before + 31):
        assert not victim.publish(data_topic("victim"), envelope("victim", seq)).is_failure
    wait_for(lambda: ssite.last_seq("victim") == before + 30, 30, "the 30 envelopes applied")
    assert grabbed.messages == []
    assert grabbed.disconnects == []
    assert ssite.health()["broker"] == "ok"
    assert ssite.metric("commune_collector_broker_session_takeovers_total") == takeovers
    grabbed.close()
    victim.close()


def test_an_enrolled_pc_writes_its_own_topics_only_and_reads_nothing(
    ssite: StaticSite, enrolled: dict[str, Credentials]
) -> None:
    """Another PC's data and status, any config topic (its own included: the collector's
    to write), another commune, the broker's own: refused by reason. The ACL file cannot
    refuse a subscription, but it lets nothing through one."""
    for name in ("thief", "keyed"):
        pc = enrolled[name].client(ssite.broker)
        assert pc.connected.is_set(), pc.connack
        own = f"commune/dong-nai/la-nga/{name}"
        for topic in (
            data_topic("victim"),
            "commune/dong-nai/la-nga/victim/status",
            f"{own}/config",
            "commune/dong-nai/la-nga/victim/config",
            f"{own}/anything",
            f"commune/dong-nai/phu-hoa/{name}/data",
            "$SYS/broker/uptime",
        ):
            answer = pc.publish(topic, b"{}")
            assert answer.is_failure and answer.value == NOT_AUTHORIZED, (name, topic, answer)
        for topic in ("commune/#", "#", "$SYS/#", f"{own}/config"):
            pc.subscribe(topic)
        victim = enrolled["victim"].client(ssite.broker)
        victim.publish("commune/dong-nai/la-nga/victim/status", b"{}", retain=True)
        victim.publish(data_topic("victim"), b"{}")
        # Nothing may arrive: what would, arrives within this (the victim's PUBACKs are in).
        time.sleep(1.0)
        assert pc.messages == [], name
        pc.close()
        victim.close()


def test_retained_data_is_refused_and_never_replayed_to_the_collector(
    ssite: StaticSite, enrolled: dict[str, Credentials]
) -> None:
    """The ACL file cannot stop a PC retaining its data: the collector refuses such a
    message by reason, and does not get it again when it subscribes anew (a restart)."""
    retained_data_is_refused_and_never_replayed(ssite, enrolled["thief"])


def taken_over_is_told(site: StaticSite) -> None:
    """Someone holding the collector's password logs in as it: the two log each other
    out; the collector, reading the broker's uptime, tells it from a restart and says
    so (healthz 503, the takeovers counted), and has its session back once alone."""
    intruder = Client(site.broker, COLLECTOR_USER, COLLECTOR_PASSWORD, client_id="whatever",
                      persistent=True)  # fmt: skip
    assert intruder.connected.is_set(), intruder.connack
    wait_for(lambda: site.health()["broker"] == "taken_over", 40, "healthz says taken_over")
    assert site.collector.get("/healthz", token=None)[0] == 503
    assert site.metric("commune_collector_broker_session_takeovers_total", session="ingest") >= 1
    intruder.close()
    wait_for(lambda: site.metric("commune_collector_broker_session_up", session="ingest") == 1,
             30, "the collector's session back")  # fmt: skip


def test_the_collector_says_when_its_own_session_is_taken_over(ssite: StaticSite) -> None:
    taken_over_is_told(ssite)


# Revocation that lasts --------------------------------------------------------------------


def publishes(broker: StaticBroker, credentials: Credentials) -> bool:
    """Whether these credentials may still do anything: log in and publish their data."""
    client = credentials.client(broker)
    try:
        if not client.connected.is_set():
            return False
        answer = client.publish(data_topic(credentials.agent), envelope(credentials.agent, 1))
        return not answer.is_failure
    finally:
        client.close()


def refused_at_the_door(broker: StaticBroker, credentials: Credentials) -> bool:
    """Refused at login: a bad password, or a certificate refused in the handshake."""
    client = credentials.client(broker)
    try:
        return not client.connected.is_set()
    finally:
        client.close()


def test_a_revoked_password_is_cut_at_once_and_never_works_again(
    ssite: StaticSite, enrolled: dict[str, Credentials]
) -> None:
    """The reload after `revoke` ends the PC's live session; re-enrolled, the id has a new
    password and the old one stays refused."""
    old = ssite.enroll("leaver")
    live = old.client(ssite.broker)
    assert live.connected.is_set(), live.connack
    ssite.revoke("leaver", old)
    wait_for(lambda: bool(live.disconnects), 20, "the live session ended by the reload")
    assert refused_at_the_door(ssite.broker, old)
    new = ssite.enroll("leaver")
    wait_for(lambda: publishes(ssite.broker, new), 20, "the re-enrolled PC in")
    assert refused_at_the_door(ssite.broker, old)
    live.close()


def test_a_revoked_certificate_is_cut_at_once_and_refused_in_the_handshake(
    ssite: StaticSite, enrolled: dict[str, Credentials]
) -> None:
    """`revoke --cert --broker-url` lists it; the list's change reloads the broker; the
    command then ends the session the certificate held (a reload alone leaves it be),
    and the PC's next handshake is refused, through a restart too. A new certificate of
    the same account works."""
    old = ssite.issue("stolen", "stolen-1")
    live = old.client(ssite.broker)
    assert live.connected.is_set(), live.connack
    assert not live.publish(data_topic("stolen"), envelope("stolen", 1)).is_failure
    said = ssite.revoke("stolen", old)
    assert "listed in" in said and "the session the certificate held ended" in said, said
    wait_for(lambda: bool(live.disconnects), 10, "the live session ended")
    assert refused_at_the_door(ssite.broker, old)
    live.close()
    new = ssite.issue("stolen", "stolen-2")
    assert publishes(ssite.broker, new)
    ssite.broker.restart()
    assert refused_at_the_door(ssite.broker, old)
    wait_for(lambda: publishes(ssite.broker, new), 20, "the new certificate in after the restart")


def test_a_broker_that_does_not_reload_is_named_and_the_certificate_listed_anyway(
    tmp_path: Path,
) -> None:
    """No commune-crl-reload.path: the command cannot see the list loaded, so it does not
    end the session (the PC would log in again at once) and says so; the list holds
    the certificate for the next reload or restart."""
    with static_broker(tmp_path) as broker:
        cert, key = client_cert(broker.pki, tmp_path, "dong-nai/la-nga/pc-07")
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        signer = load_signer(str(broker.pki.ca), str(broker.pki.ca_key), 1)
        with pytest.raises(sessionend.NotReloaded, match="did not reload"):
            sessionend.end_session(signer, broker.crl, certificate,
                                   f"mqtts://localhost:{broker.cert_port}", broker.pki.ca,
                                   wait_s=1.0)  # fmt: skip
        listed = {serial for serial, _ in staticcrl.listed(signer, broker.crl)}
        assert format(certificate.serial_number, "x") in listed
        broker.reload()
        pc = Credentials("pc-07", "", cert=(cert, key))
        wait_for(lambda: refused_at_the_door(broker, pc), 20, "refused after a reload")


def fresh(site: StaticSite, agent: str, how: str, number: int) -> Credentials:
    """New credentials for the id: a password `enroll` makes (or replaces), or a
    certificate issued."""
    if how == "password":
        return site.enroll(agent, "--replace")
    return site.issue(agent, f"{agent}-{number}")


@pytest.mark.parametrize("seed", [20])
def test_no_retired_credential_ever_works_again_whatever_the_sequence(
    ssite: StaticSite, seed: int
) -> None:
    """Enroll (a password, or a certificate issued), revoke, re-enroll the same id,
    replace (new credentials, the old revoked), restart the broker: after every step,
    every password and certificate ever retired is refused at the door, and the current
    one publishes."""
    steps = random.Random(seed)
    current: dict[str, Credentials | None] = {}
    retired: list[Credentials] = []
    done: list[str] = []
    for number in range(9):
        agent = steps.choice(["seq-a", "seq-b"])
        how = steps.choice(["password", "certificate"])
        held = current.get(agent)
        action = steps.choice(["revoke", "replace", "restart"] if held else ["enroll", "restart"])
        done.append(f"{action} {agent} {how}")
        if action == "enroll":
            current[agent] = fresh(ssite, agent, how, number)
        elif action == "revoke":
            assert held is not None
            ssite.revoke(agent, held)
            retired.append(held)
            current[agent] = None
        elif action == "replace":
            assert held is not None
            if held.cert is not None or how == "certificate":
                ssite.revoke(agent, held)  # as the operator's guide says: the old one first
            current[agent] = fresh(ssite, agent, how, number)
            retired.append(held)
        else:
            ssite.broker.restart()
        for gone in retired:
            wait_for(lambda g=gone: refused_at_the_door(ssite.broker, g), 20, f"{done}: {gone}")
        for name, holder in current.items():
            if holder is not None:
                wait_for(lambda h=holder: publishes(ssite.broker, h), 20, f"{done}: {name}")
    assert {"revoke", "replace", "restart"} <= {step.split()[0] for step in done}, done
    assert {"password", "certificate"} <= {step.split()[2] for step in done}, done


# From the previous release ----------------------------------------------------------------


def broker_config(*arguments: str) -> Result:
    return CliRunner().invoke(main, ["broker-config", *arguments])


def test_the_0_2_static_broker_upgraded_the_documented_way_reports_a_takeover(
    tmp_path: Path,
) -> None:
    """0.2's mosquitto.conf and acl, upgraded by `broker-config --crl --acl --write`, run:
    the collector tells its session taken over (its ACL reads the broker's uptime now),
    and a revoked certificate is refused (the listener loads the list)."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in ("mosquitto.conf", "acl"):
        shutil.copy(RELEASE / name, deploy / name)
    crl = "/var/lib/commune-crl/client-crl.pem"
    arguments = [str(deploy / "mosquitto.conf"), "--crl", crl, "--acl", str(deploy / "acl")]
    checked = broker_config(*arguments)
    assert checked.exit_code == 1, checked.output
    assert "may not read $SYS/broker/uptime" in checked.output
    assert f"no crlfile {crl}" in checked.output
    assert (deploy / "acl").read_text() == (RELEASE / "acl").read_text()
    upgraded = broker_config(*arguments, "--write")
    assert upgraded.exit_code == 0, upgraded.output
    for name in ("mosquitto.conf", "acl"):
        assert (deploy / f"{name}.bak").read_text() == (RELEASE / name).read_text()
    assert "topic read $SYS/broker/uptime" in (deploy / "acl").read_text()
    again = broker_config(*arguments)
    assert again.exit_code == 0 and again.output.count("up to date") == 2, again.output
    with static_site(tmp_path / "site", deploy=deploy) as site:
        pc = site.issue("pc-09", "pc-09")
        assert publishes(site.broker, pc)
        site.revoke("pc-09", pc)
        assert refused_at_the_door(site.broker, pc)
        # Last: a takeover is told apart from the broker's start only some seconds on.
        taken_over_is_told(site)
