"""A commune's rollout end to end, with real processes: a Mosquitto running the dynamic
security plugin as its own user, the collector with enrollment over HTTPS, and twenty
agent processes that enroll with one token and run the checks the collector sends."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, expect

from agent.wire import decode_envelope
from collector.rollout.configkey import DEFAULT_NAME, read_key
from tests.factories import central_config
from tests.servers import (
    REPO,
    AgentProcess,
    CollectorProcess,
    Mosquitto,
    Subscriber,
    dynsec_broker,
    wait_for,
)
from tests.test_console import log_in, shot
from tests.test_dynsec import OBSERVER, OBSERVER_PASSWORD, observer_account
from tests.tls import Pki, make_pki

ADMIN, ADMIN_PASSWORD = "commune-admin", "dynsec-admin-password-0123"
COLLECTOR_USER, COLLECTOR_PASSWORD = "commune-collector", "collector-password-0123456"
ADMIN_TOKEN = "rollout-admin-token-0123456789"
PCS = 20

PROFILES = """
province = "dong-nai"
[vars]
gateway = "127.0.0.1"

[profiles.office]
interval = "2s"
[[profiles.office.checks.host]]
"""

#: The change a technician makes for the whole commune: a probe of the gateway.
WITH_PROBE = (
    PROFILES
    + """
[[profiles.office.checks.link]]
name = "gw"
network = "tslcd"
method = "tcp"
target = "${gateway}"
port = ${port}
count = 1
"""
)


@dataclass
class Site:
    broker: Mosquitto
    collector: CollectorProcess
    pki: Pki
    profiles: Path
    root: Path

    def api(
        self, method: str, path: str, body: bytes | None = None, token: str = ADMIN_TOKEN
    ) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"https://localhost:{self.collector.api_port}{path}", data=body, method=method
        )
        request.add_header("Authorization", f"Bearer {token}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        try:
            with urllib.request.urlopen(request, timeout=20, context=context) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def enroll(self, agent: str, token: str, *extra: str) -> subprocess.Popen[bytes]:
        folder = self.root / "pcs" / agent
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "enroll", "--collector",
             f"https://localhost:{self.collector.api_port}", "--token", token, "--id", agent,
             "--ca", str(self.pki.ca), "--config", str(folder / "agent.toml"), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
        )  # fmt: skip

    def agent(self, agent: str) -> AgentProcess:
        folder = self.root / "pcs" / agent
        return AgentProcess(folder / "agent.toml", env={"STATE_DIRECTORY": str(folder / "state")})

    @property
    def signing_key(self) -> Path:
        """The collector's config signing key, made at its first start beside its store."""
        return self.collector.state.with_name(DEFAULT_NAME)

    def observer(self, topic: str = "commune/#") -> Subscriber:
        """Sees every agent topic (an account of the tests', made before the collector)."""
        return Subscriber(self.broker.port, topic, username=OBSERVER,
                          password=OBSERVER_PASSWORD).start()  # fmt: skip


def collector_toml(
    collector: CollectorProcess,
    root: Path,
    pki: Pki,
    broker_url: str,
    ca_line: str,
    profiles: Path,
    enrollment_extra: str = "",
) -> str:
    """The collector of these tests: its own account, the dynsec admin, HTTPS, enrollment."""
    (root / "admin.password").write_text(ADMIN_PASSWORD)
    (root / "collector.password").write_text(COLLECTOR_PASSWORD)
    digest = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    return f"""
[mqtt]
url = "{broker_url}"
username = "{COLLECTOR_USER}"
password_file = "{root / "collector.password"}"
{ca_line}
[store]
path = "{collector.state}"
[collector]
client_id = "collector-rollout"
[api]
listen = "127.0.0.1:{collector.api_port}"
tls_cert_file = "{pki.server_cert}"
tls_key_file = "{pki.server_key}"
[[api.tokens]]
name = "province-admin"
role = "admin"
sha256 = "{digest}"
[dynsec]
url = "{broker_url}"
username = "{ADMIN}"
password_file = "{root / "admin.password"}"
{ca_line}
[enrollment]
broker_url = "{broker_url}"
profiles = ["{profiles}"]
{enrollment_extra}
"""  # fmt: skip


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    """``request.param``: more [enrollment] lines (indirect parametrization)."""
    enrollment_extra = str(getattr(request, "param", ""))
    pki = make_pki(tmp_path / "pki")
    broker = dynsec_broker(tmp_path / "broker", ADMIN, ADMIN_PASSWORD).start()
    observer_account(f"mqtt://127.0.0.1:{broker.port}", ADMIN, ADMIN_PASSWORD, tmp_path)
    profiles = tmp_path / "dong-nai.profiles.toml"
    profiles.write_text(PROFILES)
    collector = CollectorProcess(tmp_path / "collector", broker.port)
    collector.config.write_text(collector_toml(
        collector, tmp_path, pki, f"mqtt://127.0.0.1:{broker.port}", "", profiles,
        enrollment_extra,
    ))  # fmt: skip
    collector.start()
    yield Site(broker, collector, pki, profiles, tmp_path)
    collector.stop()
    broker.stop()


def envelopes(messages: list[Any], agent: str) -> list[Any]:
    return [decode_envelope(m.payload) for m in messages if m.topic.endswith(f"/{agent}/data")]


def test_a_commune_enrolls_with_one_token_and_follows_the_collectors_profile(
    site: Site, browser: Browser
) -> None:
    status, created = site.api(
        "POST", "/api/v1/enrollment/tokens",
        json.dumps({"province": "dong-nai", "commune": "la-nga", "uses": PCS}).encode(),
    )  # fmt: skip
    assert status == 201, created
    token = created["token"]
    assert token in created["linux"] and "msiexec /i commune-agent.msi" in created["windows"]
    assert f"ENROLL_TOKEN={token}" in created["windows"]
    expires = dt.datetime.fromisoformat(created["expires_iso"])  # readable beside exact
    assert expires.utcoffset() == dt.timedelta(hours=7)
    assert expires.timestamp() == int(created["expires"])

    names = [f"pc-{n:02d}" for n in range(1, PCS + 1)]
    enrolling = [site.enroll(name, token) for name in names]
    for name, process in zip(names, enrolling, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (name, err.decode(), site.collector.log[-3000:])
        assert b"enrolled dong-nai/la-nga/" + name.encode() in out
    password_file = site.root / "pcs" / "pc-01" / "mqtt-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    # The key its configs are signed with came with the answer, over the verified HTTPS.
    trusted = (site.root / "pcs" / "pc-01" / "config-key.pub").read_text()
    assert read_key(site.signing_key).public_text in trusted
    assert (
        'config_key = "config-key.pub"' in (site.root / "pcs" / "pc-01" / "agent.toml").read_text()
    )

    # The 21st PC: the token is used up; one line on the PC, nothing written.
    late = site.enroll("pc-21", token)
    _, err = late.communicate(timeout=60)
    assert late.returncode == 1
    assert "used" in err.decode() and len(err.decode().strip().splitlines()) == 1
    assert not (site.root / "pcs" / "pc-21" / "agent.toml").exists()

    observer = site.observer()
    agents = {name: site.agent(name).start() for name in names}
    try:
        # Every agent runs the profile's checks, got from the collector, not from its file.
        observer.wait_for(
            lambda ms: all(
                any(s.check == "host" for e in envelopes(ms, n) for s in e.samples) for n in names
            ),
            timeout=90,
        )
        assert "[checks" not in (site.root / "pcs" / "pc-01" / "agent.toml").read_text()

        isolation(site)

        # Revocation cuts a live agent off within a second. (Mosquitto ends a disabled
        # client's session without its will, so the agent's own log says when.)
        asked = time.time()
        status, revoked = site.api("POST", "/api/v1/agents/dong-nai/la-nga/pc-20/revoke")
        assert status == 200 and revoked["revoked_at"], revoked
        wait_for(lambda: "disconnected from broker" in agents["pc-20"].log, 5, "pc-20 cut off")
        assert disconnected_at(agents["pc-20"].log) - asked < 1.0
        observer.messages.clear()
        time.sleep(2.5)  # more than an interval: nothing more from it
        assert envelopes(observer.snapshot(), "pc-20") == []
        assert "Not authorized" in agents["pc-20"].log  # and it cannot come back
        live = names[:-1]

        # A bad profile value is refused by the collector; the file is unchanged.
        bad = WITH_PROBE.replace("${port}", "0")
        status, refused = site.api("PUT", "/api/v1/profiles/dong-nai", bad.encode())
        assert status == 422 and "port" in refused["detail"], refused
        assert site.profiles.read_text() == PROFILES

        # A change for the commune reaches every agent within one interval, no restart.
        pids = {n: agents[n].process.pid for n in live if agents[n].process}
        last_seq = {n: max(e.seq for e in envelopes(observer.snapshot(), n)) for n in live}
        good = WITH_PROBE.replace("${port}", str(site.broker.port))
        status, applied = site.api("PUT", "/api/v1/profiles/dong-nai", good.encode())
        assert status == 200, applied
        changed = time.monotonic()
        observer.wait_for(
            lambda ms: all(
                any(s.check == "link" and s.name == "gw" for e in envelopes(ms, n)
                    for s in e.samples)
                for n in live
            ),
            timeout=30,
        )  # fmt: skip
        took = time.monotonic() - changed
        assert took < 2.0 + 2.0 + 1.0  # one interval (2 s), the first-run spread, a margin
        for name in live:
            process = agents[name].process
            assert process is not None and process.poll() is None and process.pid == pids[name]
            seqs = [e.seq for e in envelopes(observer.snapshot(), name)]
            assert min(seqs) > last_seq[name] - 50  # seq ran on: the outbox was not reset
        wait_for(lambda: current_configs(site) == PCS - 1, 30, "every live agent on the new config")

        # A hand-crafted bad config on one agent's topic, signed with the collector's own
        # key (as by someone holding the collector host): refused, the last good one runs.
        bad_config = central_config(
            {"link": [{"name": "gw", "network": "tslcd", "target": "x", "count": 0}]},
            version=99, agent="pc-01", key=read_key(site.signing_key),
        )  # fmt: skip
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hand-crafted")
        publisher.username_pw_set(OBSERVER, OBSERVER_PASSWORD)
        publisher.connect("127.0.0.1", site.broker.port)
        publisher.loop_start()
        publisher.publish(
            "commune/dong-nai/la-nga/pc-01/config", bad_config, qos=1, retain=True
        ).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()
        observer.messages.clear()

        def refused_and_still_probing(ms: list[Any]) -> bool:
            samples = [s for e in envelopes(ms, "pc-01") for s in e.samples]
            said = any(
                s.check == "agent"
                and s.item == ""
                and s.fields.get("config_refused_version") == 99
                and "count" in str(s.fields.get("config_error"))
                for s in samples
            )
            return said and any(s.check == "link" and s.name == "gw" for s in samples)  # fmt: skip

        observer.wait_for(refused_and_still_probing, timeout=20)
        assert agents["pc-01"].process and agents["pc-01"].process.poll() is None
        assert "refused the collector's config v99" in agents["pc-01"].log

        wait_for(lambda: "count" in rollout_of(site, "pc-01")["config_error"], 10,
                 "the console shows why pc-01 runs an older config")  # fmt: skip
        _, overview = site.api("GET", "/api/v1/enrollment/communes?province=dong-nai")
        (commune,) = [c for c in overview["communes"] if c["commune"] == "la-nga"]
        assert commune["enrolled"] == PCS - 1
        console_shows_the_rollout(site, browser)
        status, audit = site.api("GET", "/api/v1/enrollment/events?province=dong-nai")
        kinds = [e["event"] for e in audit["events"]]
        assert kinds.count("enrolled") == PCS and "revoked" in kinds
        assert "profiles_changed" in kinds and "refused" in kinds
    finally:
        observer.stop()
        for process in agents.values():
            process.stop()


def disconnected_at(log: str) -> float:
    line = next(line for line in log.splitlines() if "disconnected from broker" in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def console_shows_the_rollout(site: Site, browser: Browser) -> None:
    """The technician's view of the same: the commune's row, who is behind and why."""
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    base = f"https://localhost:{site.collector.api_port}"
    try:
        log_in(page, base, ADMIN_TOKEN)
        page.click("header >> text=Triển khai")
        row = page.locator("#rollout tr[data-commune=la-nga]")
        expect(row.locator(".enrolled")).to_have_text(str(PCS - 1))
        expect(row.locator(".current")).to_have_text(str(PCS - 1))
        behind = page.locator("#behind")
        expect(behind).to_contain_text("la-nga · pc-01")  # the commune, then the PC
        expect(behind).to_contain_text("count")
        expect(page.locator("#audit")).to_contain_text("thu hồi")  # pc-20's revocation
        shot(page, "rollout")
    finally:
        context.close()


def rollout_of(site: Site, agent: str) -> dict[str, Any]:
    _, overview = site.api("GET", "/api/v1/enrollment/communes?province=dong-nai")
    (commune,) = [c for c in overview["communes"] if c["commune"] == "la-nga"]
    (found,) = [a for a in commune["agents"] if a["agent"] == agent]
    return dict(found)


def current_configs(site: Site) -> int:
    _, overview = site.api("GET", "/api/v1/enrollment/communes?province=dong-nai")
    communes = [c for c in overview["communes"] if c["commune"] == "la-nga"]
    return int(communes[0]["configs_current"]) if communes else 0


def account_of(site: Site, agent: str) -> tuple[str, str]:
    """The broker account enrollment wrote on the PC: its name and password."""
    import tomllib

    folder = site.root / "pcs" / agent
    config = tomllib.loads((folder / "agent.toml").read_text())
    return config["mqtt"]["username"], (folder / "mqtt-password").read_text().strip()


def isolation(site: Site) -> None:
    """An enrolled PC's account: its own topics only."""
    username, password = account_of(site, "pc-01")
    assert username == "dong-nai/la-nga/pc-01@1"  # the first enrollment of pc-01
    spy = Subscriber(site.broker.port, "commune/dong-nai/la-nga/pc-02/config",
                     username=username, password=password)  # fmt: skip
    spy.start()
    own = Subscriber(site.broker.port, "commune/dong-nai/la-nga/pc-01/config",
                     username=username, password=password)  # fmt: skip
    own.start()
    watcher = site.observer("commune/dong-nai/la-nga/pc-02/data")
    try:
        own.wait_for(lambda ms: len(ms) >= 1, timeout=10)  # its retained config
        forged = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="forger")
        forged.username_pw_set(username, password)
        forged.connect("127.0.0.1", site.broker.port)
        forged.loop_start()
        forged.publish("commune/dong-nai/la-nga/pc-02/data", b"{}", qos=1).wait_for_publish(5)
        forged.disconnect()
        forged.loop_stop()
        time.sleep(1.0)
        assert spy.snapshot() == []  # another's config: not delivered
        assert all(m.payload != b"{}" for m in watcher.snapshot())  # forged data: dropped
    finally:
        for client in (spy, own, watcher):
            client.stop()


def new_token(site: Site, commune: str = "la-nga", **extra: Any) -> tuple[str, str]:
    body = {"province": "dong-nai", "commune": commune, "uses": 5, **extra}
    status, created = site.api("POST", "/api/v1/enrollment/tokens", json.dumps(body).encode())
    assert status == 201, created
    return created["token"], created["id"]


def refusal(site: Site, agent: str, token: str, *extra: str) -> tuple[int, str]:
    process = site.enroll(agent, token, *extra)
    _, err = process.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one line naming the problem
    assert not (site.root / "pcs" / agent / "agent.toml").exists()
    assert not (site.root / "pcs" / agent / "mqtt-password").exists()
    return process.returncode, lines[0]


def dynsec_clients(site: Site) -> dict[str, list[str]]:
    """Username → its roles, as the plugin persisted them."""
    assert site.broker.dynsec_file is not None
    data = json.loads(site.broker.dynsec_file.read_text())
    return {c["username"]: [r["rolename"] for r in c.get("roles", [])] for c in data["clients"]}


def dynsec_part(site: Site) -> str:
    _, health = site.api("GET", "/healthz", token="")
    return str(health["detail"]["parts"].get("dynsec"))


def refused_counts(site: Site) -> dict[str, float]:
    status, text = site.api("GET", "/metrics")
    assert status == 200
    counts = {}
    for line in str(text).splitlines():
        if line.startswith("commune_collector_enrollments_refused_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            counts[reason] = float(line.rsplit(" ", 1)[1])
    return counts


def test_bad_enrollments_are_refused_by_reason_and_leave_nothing_behind(site: Site) -> None:
    token, token_id = new_token(site)
    other, _ = new_token(site, commune="phu-ly")
    expiring, _ = new_token(site, ttl_s=1.0)
    revoked, revoked_id = new_token(site)
    assert site.api("DELETE", f"/api/v1/enrollment/tokens/{revoked_id}")[0] == 200
    unknown = token.split(".")[0][::-1] + "." + "A" * 43

    code, line = refusal(site, "pc-01", "not-a-token")
    assert code == 1 and "--token" in line  # refused on the PC, nothing sent
    code, line = refusal(site, "PC 01!", token)
    assert code == 1 and "--id" in line
    code, line = refusal(site, "pc-01", unknown)
    assert code == 1 and "401" in line
    code, line = refusal(site, "pc-01", revoked)
    assert code == 1 and "revoked" in line
    time.sleep(1.1)
    code, line = refusal(site, "pc-01", expiring)
    assert code == 1 and "expired" in line
    code, line = refusal(site, "pc-01", other, "--commune", "la-nga")
    assert code == 1 and "phu-ly" in line

    # A replayed request: the same body again is a duplicate, and spends no second use.
    request = json.dumps({"token": token, "agent": "pc-02", "password": "p" * 32}).encode()
    first = site.api("POST", "/api/v1/enroll", request, token="")
    replayed = site.api("POST", "/api/v1/enroll", request, token="")
    assert first[0] == 201 and replayed[0] == 409, (first, replayed)
    _, listed = site.api("GET", "/api/v1/enrollment/tokens?commune=la-nga")
    (used,) = [t["used"] for t in listed["tokens"] if t["id"] == token_id]
    assert used == 1
    code, line = refusal(site, "pc-02", token)
    assert code == 1 and "enrolled in la-nga already" in line
    code, line = refusal(site, "pc-03", token, "--client-cert")  # no client CA here
    assert code == 1 and "does not issue client certificates" in line

    counts = refused_counts(site)
    for reason in ("token_unknown", "token_revoked", "token_expired", "commune", "duplicate",
                   "csr"):  # fmt: skip
        assert counts[reason] >= 1, (reason, counts)
    assert counts["token_used_up"] == 0  # every reason is shown, at 0 too
    # Nothing half-made at the broker: one account, with its role.
    clients = dynsec_clients(site)
    agents = {name: roles for name, roles in clients.items() if name.startswith("dong-nai/")}
    assert agents == {"dong-nai/la-nga/pc-02@1": ["commune-agent:dong-nai/la-nga/pc-02@1"]}


def enroll_ok(site: Site, agent: str, token: str) -> None:
    process = site.enroll(agent, token)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, (err.decode(), site.collector.log[-2000:])


def test_a_pc_enrolled_under_a_former_slug_is_not_enrolled_twice(site: Site) -> None:
    """The inventory renames xa-la-nga to la-nga: pc-01 under the old slug and a new
    pc-01 under the new one would report as one agent."""
    old, _ = new_token(site, commune="xa-la-nga")
    enroll_ok(site, "pc-01", old)
    inventory = site.root / "dong-nai.toml"
    inventory.write_text(
        'province = "dong-nai"\n[[communes]]\nslug = "la-nga"\nname = "Xã La Ngà"\n'
        'code = "26227"\nformerly = ["xa-la-nga"]\n'
    )
    site.collector.stop()
    config = site.collector.config.read_text()
    site.collector.config.write_text(
        config.replace("[collector]\n", f'[collector]\ninventory = ["{inventory}"]\n', 1)
    )
    site.collector.start()
    token, _ = new_token(site)
    other_pc = site.root / "pcs" / "another-pc" / "agent.toml"  # a second PC, same --id
    process = site.enroll("pc-01", token, "--config", str(other_pc))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "under its slug xa-la-nga" in err.decode(), (
        err,
        site.collector.log[-3000:],
    )
    assert not other_pc.exists()
    enroll_ok(site, "pc-02", token)
    # A token made before the rename puts its next PCs under the commune's slug now.
    late = site.enroll("pc-03", old)
    out, err = late.communicate(timeout=60)
    assert late.returncode == 0, err.decode()
    assert b"enrolled dong-nai/la-nga/pc-03" in out
    written = (site.root / "pcs" / "pc-03" / "agent.toml").read_text()
    assert 'commune = "la-nga"' in written and "xa-la-nga" not in written
    _, communes = site.api("GET", "/api/v1/enrollment/communes?province=dong-nai")
    slugs = [c["commune"] for c in communes["communes"]]
    [la_nga] = [c for c in communes["communes"] if c["commune"] == "la-nga"]
    assert la_nga["enrolled"] == 3 and "xa-la-nga" not in slugs, communes
    assert "dong-nai/la-nga/pc-03@1" in dynsec_clients(site)


def test_with_the_broker_or_the_collector_away_the_pc_is_told_to_try_again(
    site: Site,
) -> None:
    token, token_id = new_token(site)
    site.broker.stop()
    try:
        code, line = refusal(site, "pc-01", token)
        assert code == 3 and "503" in line and "try again" in line, line
    finally:
        site.broker.start()
    _, listed = site.api("GET", "/api/v1/enrollment/tokens?commune=la-nga")
    assert [t["used"] for t in listed["tokens"] if t["id"] == token_id] == [0]  # given back
    wait_for(lambda: dynsec_part(site) == "ok", 20, "the admin session back")
    done = site.enroll("pc-01", token)
    _out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err.decode()

    site.collector.stop()
    code, line = refusal(site, "pc-02", token)
    assert code == 3 and "cannot reach the collector" in line and "try again" in line


def cli(site: Site, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.cli", *arguments, "-c", str(site.collector.config)],
        check=False, capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip


def test_the_command_line_makes_tokens_and_revokes_a_live_agent(site: Site) -> None:
    made = cli(site, "enroll-token", "create", "--province", "dong-nai", "--commune", "la-nga",
               "--uses", "2", "--ttl", "2h", "--by", "technician-an")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()  # stdout is the token alone, for scripts
    assert re.fullmatch(r"[0-9a-f]{8}\.[A-Za-z0-9_-]{43}", token), made.stdout
    assert f"--token {token}" in made.stderr and f"ENROLL_TOKEN={token}" in made.stderr
    assert "msiexec /i commune-agent.msi" in made.stderr
    listed = cli(site, "enroll-token", "list", "--commune", "la-nga")
    assert token.split(".")[0] in listed.stdout and "0/2" in listed.stdout, listed.stdout
    enrolled = site.enroll("pc-01", token)
    _out, err = enrolled.communicate(timeout=60)
    assert enrolled.returncode == 0, err.decode()
    agent = site.agent("pc-01").start()
    observer = site.observer("commune/dong-nai/la-nga/pc-01/data")
    try:
        observer.wait_for(lambda ms: len(ms) >= 1, timeout=30)
        asked = time.time()
        revoked = cli(site, "revoke", "--province", "dong-nai", "--commune", "la-nga",
                      "--agent", "pc-01", "--by", "technician-an")  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        assert "the collector removed its account" in revoked.stdout, revoked.stdout
        wait_for(lambda: "disconnected from broker" in agent.log, 5, "pc-01 cut off")
        assert disconnected_at(agent.log) - asked < 5.0  # the command's own start included
    finally:
        observer.stop()
        agent.stop()
    spent = cli(site, "enroll-token", "revoke", token.split(".")[0])
    assert spent.returncode == 0 and "revoked token" in spent.stdout
    _, audit = site.api("GET", "/api/v1/enrollment/events?province=dong-nai")
    actors = {(e["event"], e["actor"]) for e in audit["events"]}
    assert {("token_created", "technician-an"), ("revoked", "technician-an"),
            ("token_revoked", "cli")} <= actors  # fmt: skip


@pytest.mark.parametrize("site", ["max_per_address = 3"], indirect=True)
def test_one_address_may_enroll_only_so_often(site: Site) -> None:
    token, _ = new_token(site)
    codes = []
    for n in range(4):
        body = json.dumps({"token": token, "agent": f"pc-{n}", "password": "p" * 32}).encode()
        codes.append(site.api("POST", "/api/v1/enroll", body, token="")[0])
    assert codes == [201, 201, 201, 429]
    code, line = refusal(site, "pc-9", token)
    assert code == 3 and "429" in line


def test_a_pc_enrolls_with_its_own_key_and_a_revoked_certificate_can_do_nothing(
    tmp_path: Path,
) -> None:
    """The broker as deploy/mosquitto/dynsec.conf ships it (TLS, a certificate listener);
    the collector signs the PC's CSR with the province's client CA."""
    from tests.hostile.brokersite import broker_site

    with broker_site(tmp_path) as shipped:
        broker, collector, site, pki = (
            shipped.broker,
            shipped.collector,
            shipped.site,
            shipped.broker.pki,
        )
        observer = Subscriber(broker.password_port, "commune/#", username=OBSERVER,
                              password=OBSERVER_PASSWORD, ca_file=str(pki.ca))  # fmt: skip
        agent: AgentProcess | None = None
        try:
            token, token_id = new_token(site)
            # A malformed CSR: refused by reason, the token's use not spent.
            bad = json.dumps(
                {
                    "token": token,
                    "agent": "pc-09",
                    "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
                }
            ).encode()
            status, answer = site.api("POST", "/api/v1/enroll", bad, token="")
            assert status == 400 and "CSR" in answer["detail"], answer
            assert refused_counts(site)["csr"] == 1
            enrolled = site.enroll("pc-01", token, "--client-cert")
            _out, err = enrolled.communicate(timeout=60)
            assert enrolled.returncode == 0, (err.decode(), collector.log[-2000:])
            folder = tmp_path / "pcs" / "pc-01"
            assert (folder / "agent.key").stat().st_mode & 0o777 == 0o600
            assert not (folder / "mqtt-password").exists()  # no secret came from anywhere
            config = (folder / "agent.toml").read_text()
            assert f":{broker.cert_port}" in config and 'cert_file = "agent.crt"' in config
            from cryptography import x509

            certificate = x509.load_pem_x509_certificate((folder / "agent.crt").read_bytes())
            assert certificate.subject.rfc4514_string() == "CN=dong-nai/la-nga/pc-01@1"
            _, listed = site.api("GET", "/api/v1/enrollment/tokens?commune=la-nga")
            assert [t["used"] for t in listed["tokens"] if t["id"] == token_id] == [1]

            observer.start()
            agent = site.agent("pc-01").start()
            observer.wait_for(
                lambda ms: any(s.check == "host" for e in envelopes(ms, "pc-01")
                               for s in e.samples), timeout=30,
            )  # fmt: skip
            asked = time.time()
            status, _ = site.api("POST", "/api/v1/agents/dong-nai/la-nga/pc-01/revoke")
            assert status == 200
            wait_for(lambda: "disconnected from broker" in agent.log, 5, "pc-01 cut off")
            assert disconnected_at(agent.log) - asked < 1.0
            # Its certificate is in the revocation list before its account goes, which
            # the broker reloads (brokersite plays commune-crl-reload.path).
            crl = x509.load_pem_x509_crl(broker.crl.read_bytes())
            assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            observer.messages.clear()
            time.sleep(3.0)  # its account is gone: whether it connects again or not,
            assert envelopes(observer.snapshot(), "pc-01") == []  # it may do nothing
            # Once the broker had time to reload the list, its session is ended again, and
            # the handshake refuses its certificate from then on.
            wait_for(lambda: "certificate verify failed" in broker.log.read_text(), 30,
                     f"pc-01's certificate refused: {agent.log[-1500:]}")  # fmt: skip
            ended = agent.log.count("disconnected from broker")
            time.sleep(3.0)
            assert "connected to" not in agent.log.split("disconnected from broker")[-1]
            assert agent.log.count("disconnected from broker") == ended
        finally:
            observer.stop()
            if agent is not None:
                agent.stop()


def test_hostile_profiles_and_enrollment_bodies_are_refused_by_reason(site: Site) -> None:
    """Whatever the body, the collector answers 4xx naming why, changes nothing, and
    keeps serving."""
    before = site.profiles.read_text()
    for body, status, words in [
        (b"a = " + b"[" * 30_000 + b"]" * 30_000, 422, "nested too deeply"),
        (b"\xff\xfe not utf-8 \xc3\x28", 422, "UTF-8"),
        (b"# " + b"x" * 70_000, 413, "bytes"),
        (PROFILES.replace("dong-nai", "ha-noi").encode(), 422, "province"),
        (PROFILES.encode() + b"\n[profiles.office.colour]\n", 422, "colour"),
        (PROFILES.replace('"2s"', '"forever"').encode(), 422, "interval"),
        (PROFILES.encode() + b'[[profiles.office.checks.antivirus]]\npowershell = "C:/x.exe"\n',
         422, "checks.antivirus[0].powershell: local only"),
        (PROFILES.encode() + b'[vars.pw]\nsecret_file = "/etc/mosquitto/dynsec-admin"\n', 422,
         "vars.pw.secret_file: '/etc/mosquitto/dynsec-admin' is an absolute path"),
        (PROFILES.encode() + b'[[profiles.office.checks.link]]\nname = "x"\nnetwork = "tslcd"'
         b'\ntarget = "${nowhere}"\n', 422, "nowhere"),
    ]:  # fmt: skip
        answered, detail = site.api("PUT", "/api/v1/profiles/dong-nai", body)
        assert answered == status, (body[:60], answered, detail)
        assert words in str(detail), (words, detail)
    assert site.profiles.read_text() == before
    token, _ = new_token(site)
    for body in (
        b"[" * 100_000,
        b'{"token": "' + token.encode() + b'", "agent": "pc-01", "password": ' + b"[" * 50_000,
        json.dumps({"token": token, "agent": "pc-01\n", "password": "p" * 32}).encode(),
        json.dumps({"token": token, "agent": "pc-01", "password": "short"}).encode(),
        json.dumps({"token": token, "agent": "pc-01", "password": "p" * 32, "csr": "x",
                    "extra": 1}).encode(),
    ):  # fmt: skip
        answered, detail = site.api("POST", "/api/v1/enroll", body, token="")
        assert answered in (400, 413), (body[:60], answered, detail)
    _, listed = site.api("GET", "/api/v1/enrollment/tokens?commune=la-nga")
    assert [t["used"] for t in listed["tokens"]] == [0]
    assert site.api("GET", "/healthz", token="")[0] == 200
    assert dynsec_part(site) == "ok"
