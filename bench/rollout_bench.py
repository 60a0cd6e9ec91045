"""Rollout benchmark: enrolling a province's PCs, and sending them all a new config.

    .venv/bin/python bench/rollout_bench.py [--agents 5000] [--communes 95]

Starts a private Mosquitto with the dynamic security plugin. The collector's
rollout as ``commune-collector run`` wires it (token check, dynsec account and role,
store, audit, the agent's first config) runs in this process and enrolls
``--agents`` PCs spread over ``--communes`` communes, one token each, as the
enrollment endpoint would (without HTTP). Then the province's profile changes and
every agent is sent its new config (retained, QoS 1, acknowledged).

Reported, with baselines measured in the same run against the same broker:
- enrollments/s over the first and the last tenth of the run (the plugin rewrites its
  JSON file on every change, so the cost grows with the accounts), against bare
  ``createRole`` + ``createClient`` commands on the same admin session for as many
  new accounts;
- the plugin's file size per account;
- a province-wide config change: configs sent/s, against publishing as many retained
  QoS 1 messages of the same size from one paho client (the sender's ceiling);
- the collector process's RSS after it all.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.configtypes import BrokerSection  # noqa: E402
from agent.enrollwire import EnrollRequest  # noqa: E402
from collector.rollout import tokens  # noqa: E402
from collector.rollout.service import Rollout, RolloutSettings  # noqa: E402
from collector.state.store import StateStore  # noqa: E402
from tests.servers import dynsec_broker  # noqa: E402

ADMIN, ADMIN_PASSWORD = "commune-admin", "bench-admin-password-0123"
COLLECTOR, COLLECTOR_PASSWORD = "commune-collector", "bench-collector-password-0123"
PROFILES = """
province = "dong-nai"
[vars]
gateway = "10.75.0.1"
[profiles.office]
interval = "{interval}"
[[profiles.office.checks.host]]
[[profiles.office.checks.antivirus]]
interval = "10m"
[[profiles.office.checks.link]]
name = "tslcd-province"
network = "tslcd"
target = "${{gateway}}"
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=5000)
    parser.add_argument("--communes", type=int, default=95)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="commune-rollout-bench-"))
    broker = dynsec_broker(work / "broker", ADMIN, ADMIN_PASSWORD).start()
    try:
        run(work, broker.port, broker.dynsec_file, args.agents, args.communes)
    finally:
        broker.stop()


def run(work: Path, port: int, dynsec_file: Path | None, agents: int, communes: int) -> None:
    url = f"mqtt://127.0.0.1:{port}"
    (work / "admin").write_text(ADMIN_PASSWORD)
    (work / "collector").write_text(COLLECTOR_PASSWORD)
    profiles = work / "dong-nai.toml"
    profiles.write_text(PROFILES.format(interval="1m"))
    store = StateStore(work / "state.sqlite")
    settings = RolloutSettings(
        admin=BrokerSection(url=url, username=ADMIN, password_file=str(work / "admin")),
        admin_client_id="bench-admin",
        admin_timeout_s=30.0,
        collector=BrokerSection(url=url, username=COLLECTOR, password_file=str(work / "collector")),
        publisher_username=f"{COLLECTOR}-configs",
        broker_url=url,
        broker_ca_file="",
        profile_files=(str(profiles),),
    )
    rollout = Rollout(store, settings)
    rollout.start()
    assert rollout.sender.wait_connected(10), "the config sender did not connect"
    slugs = [f"commune-{i:03d}" for i in range(communes)]
    texts = {}
    now = time.time()
    for slug in slugs:
        _token, texts[slug] = tokens.create(
            store, province="dong-nai", commune=slug, profile="office",
            uses=agents, ttl_s=86400, created_by="bench", now=now,
        )  # fmt: skip
    stamps: list[float] = []
    started = time.monotonic()
    for n in range(agents):
        slug = slugs[n % communes]
        request = EnrollRequest(token=texts[slug], agent=f"pc-{n:05d}", password="p" * 32)
        rollout.enroller.enroll(request, "10.75.0.10")
        stamps.append(time.monotonic())
    enrolling = stamps[-1] - started
    tenth = max(1, agents // 10)
    first = tenth / (stamps[tenth - 1] - started)
    last = tenth / (stamps[-1] - stamps[-tenth - 1]) if agents > tenth else first

    # Baseline: bare accounts, as many, on the same admin session and broker (now as
    # full as at the end of the run).
    bare_started = time.monotonic()
    for n in range(tenth):
        rollout.admin.run(
            {"command": "createRole", "rolename": f"bare-{n}", "acls": []},
            {"command": "createClient", "username": f"bare-{n}", "password": "p" * 32,
             "roles": [{"rolename": f"bare-{n}"}]},
        )  # fmt: skip
    bare = tenth / (time.monotonic() - bare_started)
    file_bytes = dynsec_file.stat().st_size if dynsec_file else 0

    # A province-wide change: every agent's effective config changes.
    profiles.write_text(PROFILES.format(interval="2m"))
    assert rollout.profiles.reload_if_changed()
    sync_started = time.monotonic()
    report = rollout.sender.sync()
    sync_s = time.monotonic() - sync_started
    assert len(report.sent) == agents and not report.failed, report.failed
    size = len(rollout.sender.last.sent) and _config_size(rollout, store)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ceiling")
    client.username_pw_set(COLLECTOR, COLLECTOR_PASSWORD)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    payload = b"x" * size
    ceiling_started = time.monotonic()
    infos = [
        client.publish(f"commune/dong-nai/x/pc-{n:05d}/config", payload, qos=1, retain=True)
        for n in range(agents)
    ]
    for info in infos:
        info.wait_for_publish(30)
    ceiling_s = time.monotonic() - ceiling_started
    client.disconnect()
    client.loop_stop()
    rollout.stop()
    store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"rollout: {agents} PCs in {communes} communes, Mosquitto dynsec plugin")
    print(f"  enrolled in {enrolling:.1f} s: {agents / enrolling:.0f}/s on average")
    print(f"    first tenth {first:.0f}/s, last tenth {last:.0f}/s ({last / first:.2f} x)")
    print(f"    bare dynsec accounts (baseline, at the end) {bare:.0f}/s "
          f"(ours {last / bare:.2f} x)")  # fmt: skip
    print(f"  plugin file {file_bytes / 1e6:.1f} MB, {file_bytes / (agents + tenth):.0f} B/account")
    print(f"  config change to all: {sync_s:.2f} s, {agents / sync_s:.0f} configs/s "
          f"({size} B each)")  # fmt: skip
    print(f"    bare retained QoS 1 publishes (baseline) {agents / ceiling_s:.0f}/s "
          f"(ours {ceiling_s / sync_s:.2f} x)")  # fmt: skip
    print(f"  peak RSS of this process {rss:.0f} MiB")


def _config_size(rollout: Rollout, store: StateStore) -> int:
    """The size of one agent's config as sent, signed (the largest profile, here the only
    one)."""
    from agent.wire import SCHEMA_VERSION, AgentConfig, encode

    wanted = rollout.profiles().effective("dong-nai", "commune-000", "pc-00000", "office")
    message = AgentConfig(
        v=SCHEMA_VERSION, agent="pc-00000", province="dong-nai", commune="commune-000",
        version=2, hash=wanted.hash, profile="office", interval=wanted.interval,
        checks=wanted.checks, published=time.time(),
    )  # fmt: skip
    return len(encode(rollout.keys().sign(encode(message))))


if __name__ == "__main__":
    main()
