"""The broker as deploy/mosquitto/dynsec.conf ships it, attacked with real enrolled
credentials: what an enrolled PC, or whoever holds its password or certificate, can never
do — take any of the collector's sessions, retain data, read or write another's topics,
write configs — and revocation that lasts through any sequence of enrollments,
revocations, replacements and broker restarts."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.brokersite import (
    PRIVILEGED,
    BrokerSite,
    Credentials,
    broker_site,
    collector_credentials,
    data_topic,
    envelope,
    refused_in_handshake,
    retained_data_is_refused_and_never_replayed,
)
from tests.servers import wait_for
from tests.test_broker_security import Client
from tests.test_rollout import ADMIN

NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def bsite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSite]:
    with broker_site(tmp_path_factory.mktemp("brokersite")) as site:
        yield site


@pytest.fixture(scope="module")
def enrolled(bsite: BrokerSite) -> dict[str, Credentials]:
    """Three PCs of La Ngà, one with a certificate: the victim, the thief, the cert PC."""
    token = bsite.token()
    return {
        "victim": bsite.enroll("victim", token),
        "thief": bsite.enroll("thief", token),
        "keyed": bsite.enroll("keyed", token, "--client-cert"),
    }


@pytest.mark.parametrize("session", PRIVILEGED)
@pytest.mark.parametrize("how", ["password", "certificate"])
def test_no_enrolled_pc_takes_any_of_the_collectors_sessions(
    bsite: BrokerSite, enrolled: dict[str, Credentials], session: str, how: str
) -> None:
    """The thief asks for the collector's session by its client id: it gets a session of
    its own (none present), nothing of the collector's queue, and the collector, never
    disconnected, applies every envelope the victim sends."""
    thief = enrolled["thief" if how == "password" else "keyed"]
    victim = enrolled["victim"].client(bsite.broker)
    before = bsite.last_seq("victim") or 0
    takeovers = bsite.metric("commune_collector_broker_session_takeovers_total")
    grabbed = thief.client(bsite.broker, client_id=session, persistent=True)
    assert grabbed.connected.is_set(), grabbed.connack
    assert grabbed.session_present is False  # not the collector's session
    for topic in ("#", "commune/#"):
        grabbed.subscribe(topic)
    for seq in range(before + 1, before + 61):
        assert not victim.publish(data_topic("victim"), envelope("victim", seq)).is_failure
    wait_for(lambda: bsite.last_seq("victim") == before + 60, 30, "the 60 envelopes applied")
    assert grabbed.messages == []
    assert grabbed.disconnects == []  # nobody kicks anybody
    assert bsite.health()["broker"] == "ok"
    assert bsite.metric("commune_collector_broker_session_takeovers_total") == takeovers
    assert f"as {thief.username or 'dong-nai/la-nga/keyed@1'} " in bsite.broker.log.read_text()
    grabbed.close()
    victim.close()


def test_an_enrolled_pc_reads_and_writes_its_own_topics_only(
    bsite: BrokerSite, enrolled: dict[str, Credentials]
) -> None:
    pc = enrolled["thief"].client(bsite.broker)
    own = "commune/dong-nai/la-nga/thief"
    for topic in (
        data_topic("victim"),  # another PC of the commune
        "commune/dong-nai/la-nga/victim/status",
        f"{own}/config",  # its own config: the collector's to write
        "commune/dong-nai/la-nga/victim/config",
        f"{own}/anything",
        "commune/dong-nai/phu-hoa/thief/data",  # its id in another commune
        "$CONTROL/dynamic-security/v1",  # the broker's accounts
    ):
        answer = pc.publish(topic, b'{"commands": [{"command": "listClients"}]}')
        assert answer.is_failure and answer.value == NOT_AUTHORIZED, (topic, answer)
    for topic in ("commune/#", "commune/dong-nai/la-nga/victim/config", "$SYS/#",
                  "$CONTROL/dynamic-security/#", "#", "$share/g/commune/+/+/+/data"):  # fmt: skip
        assert pc.subscribe(topic).is_failure, topic
    assert not pc.subscribe(f"{own}/config").is_failure  # its own, only
    victim = enrolled["victim"].client(bsite.broker)
    victim.publish("commune/dong-nai/la-nga/victim/status", b"{}", retain=True)
    victim.publish(data_topic("victim"), b"{}")
    time.sleep(1.0)
    assert [t for t, _ in pc.messages if "victim" in t] == []
    pc.close()
    victim.close()


def test_retained_data_is_refused_and_never_replayed_to_the_collector(
    bsite: BrokerSite, enrolled: dict[str, Credentials]
) -> None:
    """No agent retains its data. One that does is refused by reason, and its message is
    not sent again when the collector subscribes anew (a restart)."""
    retained_data_is_refused_and_never_replayed(bsite, enrolled["thief"])


def test_the_collector_says_when_its_own_session_is_taken_over(bsite: BrokerSite) -> None:
    """Someone holding the collector's own password logs in as it: the broker ends the
    collector's session; the collector says so (healthz 503, metrics, a critical alert)
    and takes its session back when the intruder leaves."""
    username, password = collector_credentials()
    intruder = Client(bsite.broker, username, password, client_id="whatever", persistent=True)
    assert intruder.connected.is_set(), intruder.connack
    wait_for(lambda: bsite.health()["broker"] == "taken_over", 20, "healthz says taken_over")
    status, _ = bsite.site.api("GET", "/healthz", token="")
    assert status == 503
    assert bsite.metric("commune_collector_broker_session_takeovers_total", session="ingest") >= 1

    def alert() -> list[dict[str, object]]:
        _, alerts = bsite.get("/api/v1/alerts?rule=collector_session_taken_over")
        return [a for a in alerts if a["state"] == "firing"]

    wait_for(lambda: bool(alert()), 40, "the collector_session_taken_over alert fired")
    [fired] = alert()
    assert fired["severity"] == "critical" and fired["name"] == "ingest"
    intruder.close()
    wait_for(lambda: bsite.metric("commune_collector_broker_session_up", session="ingest") == 1,
             30, "the collector's session back")  # fmt: skip


def test_the_collectors_sessions_are_named_after_their_accounts(bsite: BrokerSite) -> None:
    log = bsite.broker.log.read_text()
    for account in ("commune-collector", "commune-collector-configs", ADMIN):
        assert f" as {account} (" in log, account


# Revocation that lasts --------------------------------------------------------------------


def logs_in(bsite: BrokerSite, credentials: Credentials) -> bool:
    """Whether these credentials may still do anything: log in and publish their data.

    A session dropped between its CONNACK and its PUBACK (the collector sweeping the
    account at that moment) proves nothing either way: the next attempt decides."""
    for _attempt in range(3):
        if credentials.cert is not None and refused_in_handshake(bsite.broker, credentials.cert):
            return False
        client = credentials.client(bsite.broker)
        try:
            if not client.connected.is_set():
                return False
            answer = client.publish(data_topic(credentials.agent), envelope(credentials.agent, 1))
            return not answer.is_failure
        except (RuntimeError, IndexError):
            continue  # not connected any more when publishing, or no PUBACK came
        finally:
            client.close()
    raise AssertionError("three sessions dropped before an answer: the broker is unsettled")


def refused_at_the_door(bsite: BrokerSite, credentials: Credentials) -> bool:
    """Refused at login: a bad password, or a certificate refused in the handshake."""
    if credentials.cert is not None:
        return refused_in_handshake(bsite.broker, credentials.cert)
    client = credentials.client(bsite.broker)
    try:
        return not client.connected.is_set()
    finally:
        client.close()


def settle(bsite: BrokerSite) -> None:
    """Until the collector has done the broker's part of every retirement (a
    certificate's second step included, after the broker reloaded the list)."""
    wait_for(
        lambda: bsite.metric("commune_collector_accounts_pending_removal") == 0, 40,
        "every retired account removed from the broker",
    )  # fmt: skip


def still_retired(bsite: BrokerSite, gone: Credentials) -> bool:
    """Can do nothing; a certificate is refused in the handshake as well."""
    if logs_in(bsite, gone):
        return False
    return gone.cert is None or refused_at_the_door(bsite, gone)


def broker_back(bsite: BrokerSite) -> None:
    """The collector's sessions back after a restart of the broker (its healthz may still
    say taken_over: an earlier test of the module took its session)."""
    wait_for(lambda: bsite.health().get("dynsec") == "ok", 30, "the admin session back")
    wait_for(lambda: bsite.metric("commune_collector_broker_session_up", session="ingest") == 1,
             30, "the collector's session back")  # fmt: skip


ENROLLED_WITH = {"certificate": ("--client-cert",), "password": ()}


@pytest.mark.parametrize(
    ("first", "change", "then"),
    [
        ("certificate", "revoke", "certificate"),  # the reproduction of finding 2
        ("certificate", "revoke", "password"),
        ("certificate", "replace", "certificate"),
        ("certificate", "replace", "password"),
        ("password", "revoke", "password"),
    ],
)
def test_a_retired_credential_stays_retired_when_its_id_is_enrolled_again(
    bsite: BrokerSite, first: str, change: str, then: str
) -> None:
    """A PC enrolled, then revoked or replaced (another PC taking its id with --replace),
    then the same id enrolled again with another token of the commune: the old password
    or certificate can do nothing, and a certificate is refused in the handshake; the new
    one works. So it stays after the broker restarts."""
    agent = f"pc-{first[:4]}-{change}-{then[:4]}"
    old = bsite.enroll(agent, bsite.token(uses=1), *ENROLLED_WITH[first])
    wait_for(lambda: logs_in(bsite, old), 20, "the first enrollment works")
    if change == "revoke":
        assert bsite.revoke(agent) in (200, 202)
        settle(bsite)
        assert still_retired(bsite, old)
        again: tuple[str, ...] = ()
    else:
        again = ("--replace",)
    token = bsite.token(uses=1, allow_replace=change == "replace")
    new = bsite.enroll(agent, token, *again, *ENROLLED_WITH[then], folder=f"{agent}-new")
    assert (new.username, new.cert) != (old.username, old.cert)
    settle(bsite)
    assert still_retired(bsite, old)
    wait_for(lambda: logs_in(bsite, new), 20, "the new enrollment works")
    bsite.broker.restart()
    broker_back(bsite)
    settle(bsite)
    assert still_retired(bsite, old)
    wait_for(lambda: logs_in(bsite, new), 20, "the new enrollment works after the restart")


#: What the sequence must hold, each step followed by a restart of the broker (or a restore
#: of its plugin file, which restarts it) before the sequence ends.
MUST_COVER = {
    "certificate revoked, the id enrolled again",
    "password revoked, the id enrolled again",
    "certificate replaced by a certificate",
}


@pytest.mark.parametrize("seed", [1034])
def test_no_retired_credential_ever_works_again_whatever_the_sequence(
    tmp_path: Path, seed: int
) -> None:
    """Enroll, revoke, re-enroll, replace (another PC taking the id), restart the broker,
    restore its plugin file from a backup: after every step, every password and
    certificate ever retired fails, and the current one works. The seed is one whose
    sequence holds ``MUST_COVER`` (asserted: another seed must too)."""
    steps = random.Random(seed)
    covered: set[str] = set()
    unrestarted: set[str] = set()
    revoked: dict[str, str] = {}  # agent -> how its revoked credential was held
    with broker_site(tmp_path) as bsite:
        token = bsite.token(uses=40, allow_replace=True)
        current: dict[str, Credentials | None] = {}
        retired: list[Credentials] = []
        lost: list[Credentials] = []
        backup = tmp_path / "dynamic-security.backup.json"
        shutil.copy(bsite.broker.dynsec_file, backup)
        done: list[str] = []
        for number in range(9):
            agent = steps.choice(["pc-a", "pc-b"])
            how = steps.choice([(), ("--client-cert",)])
            held = current.get(agent)
            action = steps.choice(
                ["revoke", "replace", "restart", "restore"] if held else ["enroll", "restore"]
            )
            done.append(f"{action} {agent} {' '.join(how)}")
            if action == "enroll":  # --replace: after a restore the store still has it
                current[agent] = bsite.enroll(agent, token, "--replace", *how,
                                              folder=f"{agent}-{number}")  # fmt: skip
                if agent in revoked:
                    unrestarted.add(f"{revoked.pop(agent)} revoked, the id enrolled again")
            elif action == "revoke":
                assert bsite.revoke(agent) in (200, 202)
                retired.append(held)  # type: ignore[arg-type]
                revoked[agent] = kind(held)  # type: ignore[arg-type]
                current[agent] = None
            elif action == "replace":
                new = bsite.enroll(agent, token, "--replace", *how, folder=f"{agent}-{number}")
                current[agent] = new
                retired.append(held)  # type: ignore[arg-type]
                unrestarted.add(f"{kind(held)} replaced by a {kind(new)}")  # type: ignore[arg-type]
            elif action == "restart":
                bsite.broker.restart()
                covered |= unrestarted
                unrestarted = set()
            else:  # a backup of the plugin's file, from before any of this, restored
                covered |= unrestarted
                unrestarted = set()
                bsite.broker.process.terminate()
                bsite.broker.process.wait(10)
                shutil.copy(backup, bsite.broker.dynsec_file)
                bsite.broker.restart()
                # The accounts made since are lost with it: the collector makes those of
                # certificates again; a PC with a password enrolls again.
                for name, holder in current.items():
                    if holder is not None and holder.cert is None:
                        lost.append(holder)
                        current[name] = None
            wait_for(lambda: bsite.health().get("dynsec") == "ok", 30, "admin session back")
            settle(bsite)
            for gone in retired:
                assert not logs_in(bsite, gone), (done, gone)
                if gone.cert is not None:
                    assert refused_at_the_door(bsite, gone), (done, gone)
            for gone in lost:
                assert not logs_in(bsite, gone), (done, gone)
            for agent_now, holder in current.items():
                if holder is not None:
                    wait_for(lambda h=holder: logs_in(bsite, h), 20, f"{done}: {agent_now}")
        assert covered >= MUST_COVER, (done, covered)


def kind(credentials: Credentials) -> str:
    return "password" if credentials.cert is None else "certificate"


def test_a_restored_plugin_file_brings_back_no_revoked_pc(tmp_path: Path) -> None:
    """The broker restarted from last week's dynamic-security.json, which still holds a
    PC revoked since: the collector's next admin session sweeps it away, and it is
    recorded why."""
    with broker_site(tmp_path) as bsite:
        token = bsite.token()
        pc = bsite.enroll("pc-01", token)
        backup = tmp_path / "dynamic-security.backup.json"
        shutil.copy(bsite.broker.dynsec_file, backup)
        assert bsite.revoke("pc-01") == 200
        assert not logs_in(bsite, pc)
        bsite.broker.process.terminate()
        bsite.broker.process.wait(10)
        shutil.copy(backup, bsite.broker.dynsec_file)
        bsite.broker.restart()
        assert "dong-nai/la-nga/pc-01@1" in json.dumps(json.loads(backup.read_text()))
        wait_for(lambda: not logs_in(bsite, pc), 30, "the restored account swept away")
        assert "removing it" in bsite.collector.log or "removed the" in bsite.collector.log


def test_the_collector_says_when_the_broker_refuses_its_login(tmp_path: Path) -> None:
    """Its account's password changed behind its back (or the account removed): the
    broker ends the session and refuses the next login; the collector says so
    (healthz 503 `refused`, the refusals counted)."""
    from agent.configtypes import BrokerSection
    from collector.rollout.dynsec import DynsecAdmin
    from tests.test_rollout import ADMIN_PASSWORD

    with broker_site(tmp_path) as bsite:
        secret = tmp_path / "intruding-admin.password"
        secret.write_text(ADMIN_PASSWORD)
        admin = DynsecAdmin(
            BrokerSection(url=f"mqtts://localhost:{bsite.broker.password_port}", username=ADMIN,
                          password_file=str(secret), ca_file=str(bsite.broker.pki.ca)),
            "someone-else",
        )  # fmt: skip
        admin.start()
        try:
            assert admin.wait_ready(10)
            username, _ = collector_credentials()
            [changed] = admin.run(
                {"command": "setClientPassword", "username": username, "password": "x" * 32}
            )
            assert "error" not in changed, changed
        finally:
            admin.stop()
        wait_for(lambda: bsite.health()["broker"] == "refused", 30, "healthz says refused")
        assert bsite.site.api("GET", "/healthz", token="")[0] == 503
        refusals = bsite.metric("commune_collector_broker_session_refusals_total", session="ingest")
        assert refusals >= 1
        # The alert waits two minutes of refusals (its `for`): tests/test_alerts.py plays it.
