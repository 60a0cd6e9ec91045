"""Write a state store as a given release of the collector writes it, for upgrade tests.

Run with the release's own code on the path (a checkout of its tag or commit):

    git worktree add /tmp/release <commit>
    PYTHONPATH=/tmp/release python tests/data/stores/make_store.py tests/data/stores/<version>

It plays October 2026 for two communes of Dong Nai through that release's
public pieces (the store, the built-in alert rules, acknowledgement, a
silence, the sink's spool) and writes, beside ``state.sqlite``, what that
release reads back from it (``expected.json``: agents, outages, alerts,
silences, spool rows and the monthly figures). The upgrade test opens the store
with the current code and requires the same answers.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import sys
from pathlib import Path

import msgspec

from agent.wire import Envelope, Sample, Status, encode
from collector.alerts.engine import AlertEngine
from collector.alerts.records import acknowledge, add_silence, list_alerts, list_silences
from collector.alerts.rules import default_rules

# Where a release keeps them: 0.1.0 had flat modules; later releases group them by stage.
try:
    from collector.outputs.report.build import build
    from collector.outputs.spool import Spool
    from collector.state.store import StateStore
except ImportError:
    from collector.report.build import build  # type: ignore[no-redef]
    from collector.store import StateStore  # type: ignore[no-redef]

    Spool = None  # type: ignore[assignment,misc]  # 0.1.0: the store was its own spool

# What 0.2.0 added: enrolled agents with their tokens and audit, maintenance windows.
try:
    from collector.rollout import registry, tokens
    from collector.state import maintenance
except ImportError:
    registry = tokens = maintenance = None  # type: ignore[assignment]


def _as_dict(value: object) -> dict[str, object]:
    """A record's fields: a dataclass in the releases before, a struct since
    (``LatestSample``); this script dumps a store with the code of its release."""
    if isinstance(value, msgspec.Struct):
        return msgspec.structs.asdict(value)
    return dataclasses.asdict(value)  # type: ignore[call-overload]


def spool_stats(store: StateStore) -> tuple[int, int, int]:
    if Spool is None:
        return store.spool_stats()  # type: ignore[attr-defined,no-any-return]
    stats = Spool(store).stats()
    return stats.rows, stats.bytes, stats.dropped


#: 2026-10-01 00:00 +07:00.
OCTOBER = 1_790_787_600.0
DAY = 86400.0
PROVINCE = "dong-nai"
PLACES = {"la-nga": ("pc-01", "pc-02", "poller"), "tan-phu": ("pc-01", "ketoan-02")}


def sample(ts: float, check: str, name: str, fields: dict[str, object], **extra: object) -> Sample:
    return Sample(ts=ts, check=check, name=name, fields=fields, **extra)  # type: ignore[arg-type]


def samples_at(commune: str, agent: str, ts: float) -> list[Sample]:
    """What one agent reports at ``ts``: the line, its anti-malware, the Polycom (poller)."""
    day = (ts - OCTOBER) / DAY
    # La Nga's line is down on 3 October from 08:00 to 11:30; Tan Phu's on the 20th, 2 h.
    down = (commune == "la-nga" and 2 + 8 / 24 <= day < 2 + 11.5 / 24) or (
        commune == "tan-phu" and 19 + 14 / 24 <= day < 19 + 16 / 24
    )
    line = sample(
        ts,
        "link",
        "tslcd",
        {"up": 0 if down else 1, "loss_percent": 100.0 if down else 0.0, "rtt_ms": 4.5},
        outcome="timeout" if down else "ok",
        target="10.75.0.1",
        tags={"network": "tslcd", "method": "icmp"},
    )
    if agent == "poller":
        ready = not (5 <= day < 6)
        return [
            line,
            sample(
                ts,
                "polycom",
                "polycom",
                {"up": True, "ready": ready, "registered": ready},
                outcome="ok",
                target="10.75.1.20",
            ),
        ]
    # pc-02 of La Nga has its anti-malware off from the 10th to the 12th; old signatures
    # on ketoan-02 from the 15th.
    verdict = "protected"
    if commune == "la-nga" and agent == "pc-02" and 9 <= day < 12:
        verdict = "unprotected"
    if agent == "ketoan-02" and day >= 14:
        verdict = "outdated"
    return [
        line,
        sample(
            ts,
            "antivirus",
            "antivirus",
            {"verdict": verdict, "protected": verdict == "protected", "products": 1},
            outcome="ok",
            tags={"source": "security_center"},
        ),
    ]


def play(store: StateStore, engine: AlertEngine) -> None:
    seq: dict[str, int] = {}
    for commune, agents in PLACES.items():
        for agent in agents:
            store.apply(
                statuses=[
                    (
                        Status(
                            v=1,
                            state="online",
                            agent=agent,
                            province=PROVINCE,
                            commune=commune,
                            ts=OCTOBER,
                            version="0.1.0",
                            checks=["link:tslcd"],
                            interval=600.0,
                        ),
                        OCTOBER,
                    )
                ],
                received=OCTOBER,
            )
    step = 600.0  # one report every 10 minutes for the whole month
    ts = OCTOBER
    while ts < OCTOBER + 31 * DAY:
        batch = []
        payloads = []
        for commune, agents in PLACES.items():
            for agent in agents:
                key = f"{commune}/{agent}"
                seq[key] = seq.get(key, 0) + 1
                envelope = Envelope(
                    v=1,
                    agent=agent,
                    province=PROVINCE,
                    commune=commune,
                    seq=seq[key],
                    ts=ts,
                    samples=samples_at(commune, agent, ts),
                )
                batch.append(envelope)
                payloads.append(encode(envelope))
        # The last day's points are still in the spool (the sink was away).
        spool = payloads if ts >= OCTOBER + 30 * DAY else None
        store.apply(batch, received=ts + 1, spool=spool)
        if int((ts - OCTOBER) // step) % 6 == 0:
            engine.tick(store, ts + 1)
        ts += step
    # Tan Phu's ketoan-02 was switched off cleanly; pc-01 lost its connection.
    store.apply(
        statuses=[
            (
                Status(
                    v=1,
                    state="offline",
                    agent="ketoan-02",
                    province=PROVINCE,
                    commune="tan-phu",
                    ts=ts,
                    reason="stopped",
                ),
                ts,
            ),
            (
                Status(
                    v=1,
                    state="offline",
                    agent="pc-01",
                    province=PROVINCE,
                    commune="tan-phu",
                    reason="connection lost",
                ),
                ts,
            ),
        ],
        received=ts,
    )
    engine.tick(store, ts + 1)
    first = min(a.id for a in list_alerts(store, ts))
    acknowledge(store, first, "tech-la-nga", "VNPT ticket 4411", OCTOBER + 2 * DAY + 9 * 3600)
    add_silence(
        store,
        starts=ts,
        ends=ts + 30 * DAY,
        created_by="admin",
        now=ts,
        commune="tan-phu",
        comment="PC room rebuilt",
    )
    if registry is not None:
        enroll(store, ts)


def enroll(store: StateStore, now: float) -> None:
    """0.2.0's rollout: a token of La Nga, two PCs enrolled with it (a password, a client
    certificate), one replaced, one revoked; a token revoked; a maintenance window."""
    token, _secret = tokens.create(
        store, province=PROVINCE, commune="la-nga", profile="office", uses=10,
        ttl_s=14 * DAY, created_by="province-admin", now=now - 2 * DAY, allow_replace=True,
    )  # fmt: skip
    spare, _ = tokens.create(
        store, province=PROVINCE, commune="tan-phu", profile="office", uses=5,
        ttl_s=14 * DAY, created_by="province-admin", now=now - 2 * DAY,
    )  # fmt: skip
    tokens.revoke(store, spare.id, now - DAY)
    with store.transaction() as db:
        for agent, at in (("pc-01", now - DAY), ("pc-02", now - DAY + 60)):
            registry.enrolled(
                db, province=PROVINCE, commune="la-nga", agent=agent,
                username=f"{PROVINCE}/la-nga/{agent}", profile="office", token_id=token.id,
                now=at,
            )  # fmt: skip
            registry.record(db, "enrolled", at, province=PROVINCE, commune="la-nga",
                            agent=agent, token_id=token.id, address="10.75.1.21")  # fmt: skip
            registry.config_sent(db, f"{PROVINCE}/la-nga/{agent}", 1, "ab" * 32, at + 1)
        registry.revoked(db, f"{PROVINCE}/la-nga/pc-02", now - 3600)
        registry.record(db, "revoked", now - 3600, province=PROVINCE, commune="la-nga",
                        agent="pc-02", actor="province-admin", address="10.0.0.5")  # fmt: skip
    maintenance.add(
        store, province=PROVINCE, commune="la-nga", device="tslcd-province",
        starts=now + DAY, ends=now + DAY + 4 * 3600, created_by="tech-la-nga", now=now,
        reason="VNPT works", every="week", until=now + 60 * DAY,
    )  # fmt: skip


def dump(path: Path, now: float) -> dict[str, object]:
    store = StateStore(path / "state.sqlite")
    try:
        subjects = store.subjects()
        report = build(store, PROVINCE, "2026-10", now=now)
        spool = spool_stats(store)
        return {
            "now": now,
            "agents": [dataclasses.asdict(a) for a in store.agents()],
            "subjects": [dataclasses.asdict(s) for s in subjects],
            "outages": {
                str(s.id): [dataclasses.asdict(o) for o in store.outages(s.id)] for s in subjects
            },
            "alerts": [dataclasses.asdict(a) for a in list_alerts(store, now, limit=5000)],
            "silences": [
                dataclasses.asdict(s) for s in list_silences(store, now, active_only=False)
            ],
            "spool": {"rows": spool[0], "bytes": spool[1], "dropped": spool[2]},
            "latest": {
                a.agent_key: [_as_dict(s) for s in store.latest(a.agent_key)]
                for a in store.agents()
            },
            "report": dataclasses.asdict(report),
            **(rollout(store) if registry is not None else {}),
        }
    finally:
        store.close()


def rollout(store: StateStore) -> dict[str, object]:
    return {
        "managed": [dataclasses.asdict(m) for m in registry.managed(store)],
        "tokens": [dataclasses.asdict(t) for t in tokens.tokens(store)],
        "events": [dataclasses.asdict(e) for e in registry.events(store, limit=1000)],
        "maintenance": [
            dataclasses.asdict(w) for w in maintenance.windows(store, None, -float("inf"))
        ],
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"):
        (out / name).unlink(missing_ok=True)
    store = StateStore(out / "state.sqlite", clock=lambda: OCTOBER + 31 * DAY)
    if Spool is not None:
        Spool(store).attach()
    engine = AlertEngine(default_rules(), clock=lambda: OCTOBER + 31 * DAY)
    engine.install(store)
    play(store, engine)
    store.close()
    # One file, no WAL beside it: what a stopped collector leaves after a checkpoint.
    db = sqlite3.connect(out / "state.sqlite")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("VACUUM")
    finally:
        db.close()
    expected = dump(out, OCTOBER + 31 * DAY + 3600)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(expected['agents'])} agents, {len(expected['alerts'])} alerts")  # type: ignore[arg-type]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
