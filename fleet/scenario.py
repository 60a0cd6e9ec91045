"""Simulated communes: what their agents would publish, with a realistic mix of trouble.

Each commune has PCs (host, anti-malware, dedicated-line probe) and one poller
box (router interfaces over SNMP, the Polycom, its own line probe). Everything
is drawn from a seeded random generator, so a run can be replayed exactly:

- anti-malware: most PCs protected; some with old signatures, some with the
  product switched off, a few with none, a few unreadable (the proportions of
  ``VERDICTS``);
- the dedicated line goes down now and then (``outages_per_day``, lasting
  minutes to hours). While it is down the commune's agents cannot reach the
  broker: their envelopes wait (like the agent's outbox) and are delivered in
  order, with their original times, when the line comes back;
- the Polycom joins the province's meetings (30 minutes every 4 hours for most
  communes); a few are not registered to the gatekeeper, a few have a failed
  camera;
- one router port in a few communes is down (unplugged cable);
- a shared system an agent's plan names (``system`` checks) answers in tens to
  hundreds of milliseconds (the land system several times slower), is out of reach
  over the dedicated line while the commune's line is down, and fails for every
  commune at once for 20 minutes twice a day, at hours of its own.

Envelopes follow the wire contract (``agent.wire``), one per check run, as a
real agent sends them. An agent given a ``Plan`` (the collector's config for it,
when the fleet enrolls: ``fleet/enrolled.py``) sends the checks that plan names,
with their names and targets, at its interval; without one, the built-in set.
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import msgspec

from agent import wire
from agent.wire import Envelope, Sample, Status, UpdateReport

#: verdict: share of PCs.
VERDICTS = {"protected": 0.86, "outdated": 0.07, "unprotected": 0.03, "none": 0.02, "unknown": 0.02}
PRODUCTS = ["Windows Defender", "Bkav Pro", "Kaspersky Endpoint Security", "CMC Antivirus"]
TSLCD_GATEWAY = "10.75.0.1"
#: A shared system fails for everyone this long, once per period, at an offset of its own.
SYSTEM_OUTAGE_EVERY_S = 12 * 3600
SYSTEM_OUTAGE_S = 20 * 60

Message = tuple[str, bytes, bool]
"""(topic, payload, retained)."""


@dataclass(frozen=True)
class PlannedCheck:
    kind: str
    name: str
    target: str = ""
    network: str = "tslcd"
    method: str = "icmp"
    system: str = ""
    """A system check's display name and kind (its tags)."""
    system_kind: str = ""
    across_line: bool = True
    """The target is reached over the commune's dedicated line (tslcd); False: it is the
    commune's own router, answering on its side of the line when the line is down."""


@dataclass(frozen=True)
class Plan:
    """What the collector told one agent to run."""

    version: int
    hash: str
    interval: float | None
    checks: tuple[PlannedCheck, ...]

    def names(self) -> list[str]:
        return [f"{c.kind}:{c.name}" for c in self.checks]


@dataclass
class SimAgent:
    commune: SimCommune
    agent: str
    poller: bool
    verdict: str
    product: str
    disk_percent: float = 50.0
    """C:'s use, which drifts slowly: a disk fills over weeks, not between samples."""
    disk_drift: bool = True
    """Drift a little at every sample; False: ``disk_percent`` is set from outside
    (``fleet/life.py`` moves it by the day, whatever the sampling)."""
    seq: int = 0
    plan: Plan | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


@dataclass
class SimCommune:
    slug: str
    rng: random.Random
    polycom_registered: bool
    camera_ok: bool
    joins_meetings: bool
    port_unplugged: bool
    outages_per_day: float
    line_down_until: float = 0.0
    next_outage_at: float = 0.0
    held: list[Message] = field(default_factory=list)
    """Envelopes written while the line is down, delivered when it is back."""
    line_rng: random.Random | None = None
    """Set: the outages are drawn from it and advanced by ``advance_line`` alone, never by
    a check run, so that runs sampling at different rates have the same outages."""
    flaps: list[tuple[float, float]] = field(default_factory=list)
    """Short drops of a flapping line, (start, end), sorted, beside the outages."""
    polycom_power: Callable[[float], bool] | None = None
    """Whether the Polycom is switched on at a time (None: always)."""

    def advance_line(self, now: float) -> None:
        """Start the outage that is due (minutes to a few hours) and draw the next one."""
        if now >= self.next_outage_at and now >= self.line_down_until:
            rng = self.line_rng or self.rng
            if self.next_outage_at:
                duration = min(3 * 3600.0, max(60.0, rng.expovariate(1 / 900)))
                self.line_down_until = now + duration
            self.next_outage_at = (
                max(now, self.line_down_until) + rng.expovariate(self.outages_per_day / 86400)
                if self.outages_per_day
                else float("inf")
            )

    def line_up(self, now: float) -> bool:
        if self.line_rng is None:
            self.advance_line(now)
        if now < self.line_down_until:
            return False
        if self.flaps:
            at = bisect.bisect_right(self.flaps, (now, float("inf"))) - 1
            return at < 0 or now >= self.flaps[at][1]
        return True


class Fleet:
    def __init__(
        self,
        province: str,
        communes: list[str],
        pcs_per_commune: int,
        *,
        seed: int = 1,
        root: str = "commune",
        outages_per_day: float = 2.0,
        version: str = "fleet",
        interval: float = 60.0,
    ) -> None:
        self.province = province
        self.root = root
        self.version = version
        self.interval = interval
        rng = random.Random(seed)
        self.communes: list[SimCommune] = []
        self.agents: list[SimAgent] = []
        for slug in communes:
            commune = SimCommune(
                slug=slug,
                rng=random.Random(rng.random()),
                polycom_registered=rng.random() > 0.05,
                camera_ok=rng.random() > 0.03,
                joins_meetings=rng.random() > 0.2,
                port_unplugged=rng.random() < 0.1,
                outages_per_day=outages_per_day * rng.uniform(0.2, 2.0),
            )
            self.communes.append(commune)
            self.agents.append(SimAgent(commune, "poller", True, "none", ""))
            for index in range(pcs_per_commune):
                verdict = rng.choices(list(VERDICTS), weights=list(VERDICTS.values()))[0]
                # One PC in twenty near full, as in a real office; the others well below.
                disk = rng.uniform(91, 96) if rng.random() < 0.05 else rng.uniform(30, 80)
                self.agents.append(
                    SimAgent(commune, f"pc-{index + 1:02d}", False, verdict,
                             rng.choice(PRODUCTS), disk_percent=disk)
                )  # fmt: skip

    def _topic(self, agent: SimAgent, kind: str) -> str:
        return f"{self.root}/{self.province}/{agent.commune.slug}/{agent.agent}/{kind}"

    def will(self, agent: SimAgent) -> Message:
        """What the broker says for an agent whose session is lost."""
        return self._status(agent, "offline", 0.0, "connection lost")

    def _status(
        self,
        agent: SimAgent,
        state: str,
        now: float,
        reason: str = "stopped",
        update: UpdateReport | None = None,
    ) -> Message:
        checks = (
            agent.plan.names()
            if agent.plan
            else ["snmp:router", "polycom:polycom", "link:tslcd-province"]
            if agent.poller
            else ["host:host", "antivirus:antivirus", "link:tslcd-province"]
        )
        status = Status(
            v=wire.SCHEMA_VERSION,
            state=state,  # type: ignore[arg-type]
            agent=agent.agent,
            province=self.province,
            commune=agent.commune.slug,
            ts=now,
            version=self.version,
            checks=checks if state == "online" else [],
            reason="" if state == "online" else reason,
            interval=self.interval_of(agent),
            config_version=agent.plan.version if agent.plan else 0,
            config_hash=agent.plan.hash if agent.plan else "",
            update=update,
        )
        return self._topic(agent, "status"), wire.encode(status), True

    def interval_of(self, agent: SimAgent) -> float:
        if agent.plan is not None and agent.plan.interval is not None:
            return agent.plan.interval
        return self.interval

    def status(self, agent: SimAgent, now: float, update: UpdateReport | None = None) -> Message:
        """One agent's birth message (again, after its plan changed)."""
        return self._status(agent, "online", now, update=update)

    def goodbye(self, agent: SimAgent, now: float) -> Message:
        """One agent's clean stop (its PC shut down)."""
        return self._status(agent, "offline", now)

    def births(self, now: float) -> list[Message]:
        return [self._status(agent, "online", now) for agent in self.agents]

    def goodbyes(self, now: float) -> list[Message]:
        return [self._status(agent, "offline", now) for agent in self.agents]

    def cycle(
        self, agent: SimAgent, now: float, only: Collection[str] | None = None
    ) -> list[Message]:
        """One cycle of an agent's checks: what reaches the broker now (maybe a backlog).

        ``only``: the checks (by name) that run this time; None: all of them."""
        commune = agent.commune
        up = commune.line_up(now)
        if agent.plan is not None:
            samples = self._planned(agent, agent.plan, now, up, only)
        elif agent.poller:
            samples = self.poller_samples(commune, now, up)
        else:
            samples = self._pc_samples(agent, now, up)
        if only is not None and agent.plan is None:
            samples = [group for group in samples if group[0].name in only]
        envelopes = [
            Envelope(
                v=wire.SCHEMA_VERSION,
                agent=agent.agent,
                province=self.province,
                commune=commune.slug,
                seq=agent.next_seq(),
                ts=now,
                samples=group,
            )
            for group in samples
        ]
        messages = [(self._topic(agent, "data"), wire.encode(e), False) for e in envelopes]
        if not up:
            commune.held.extend(messages)
            return []
        if commune.held:
            messages = commune.held + messages
            commune.held = []
        return messages

    def pc_samples(self, agent: SimAgent, now: float) -> list[list[Sample]]:
        """One run of a PC's checks, grouped as its envelopes carry them (for a caller that
        numbers and sends them itself, e.g. through an agent's outbox)."""
        return self._pc_samples(agent, now, agent.commune.line_up(now))

    def _planned(
        self,
        agent: SimAgent,
        plan: Plan,
        now: float,
        up: bool,
        only: Collection[str] | None = None,
    ) -> list[list[Sample]]:
        """The plan's checks, each as the built-in one of its kind, renamed and aimed."""
        groups: list[list[Sample]] = []
        commune, rng = agent.commune, agent.commune.rng
        for check in plan.checks:
            if only is not None and check.name not in only:
                continue
            if check.kind == "link":
                line_up = up if check.network == "tslcd" and check.across_line else True
                group = [self._line_sample(now, line_up, rng, check.name, check.target,
                                           check.network, check.method)]  # fmt: skip
            elif check.kind == "system":
                line_up = up if check.network == "tslcd" else True
                group = [self._system_sample(now, line_up, rng, check)]
            elif check.kind in ("host", "antivirus"):
                host, antivirus, _line = self._pc_samples(agent, now, up)
                group = host if check.kind == "host" else antivirus
            elif check.kind in ("snmp", "polycom"):
                router, polycom, _line = self.poller_samples(commune, now, up)
                group = router if check.kind == "snmp" else polycom
            else:
                continue  # a kind the simulator does not play
            retargeted = [
                msgspec.structs.replace(
                    sample, name=check.name,
                    target=check.target if check.target and not sample.item else sample.target,
                )
                for sample in group
            ]  # fmt: skip
            groups.append(retargeted)
        return groups

    def _line_sample(
        self,
        now: float,
        up: bool,
        rng: random.Random,
        name: str = "tslcd-province",
        target: str = TSLCD_GATEWAY,
        network: str = "tslcd",
        method: str = "icmp",
    ) -> Sample:
        rtt = max(2.0, rng.gauss(18.0, 4.0))
        lost = 0 if not up else (1 if rng.random() < 0.02 else 0)
        return Sample(
            ts=now,
            check="link",
            name=name,
            outcome="ok" if up else "timeout",
            target=target,
            fields={
                "up": int(up),
                "sent": 3,
                "received": 3 - lost if up else 0,
                "loss_percent": 100.0 * lost / 3 if up else 100.0,
                **({"rtt_ms": round(rtt, 2)} if up else {}),
            },
            tags={"network": network, "method": method},
        )

    def _system_sample(
        self, now: float, line_up: bool, rng: random.Random, check: PlannedCheck
    ) -> Sample:
        """One look at a shared system from one commune (the province's side is shared:
        its outages come at the same time for every commune)."""
        seed = zlib.crc32(check.name.encode())
        system_up = (now - seed % SYSTEM_OUTAGE_EVERY_S) % SYSTEM_OUTAGE_EVERY_S >= SYSTEM_OUTAGE_S
        http = check.target.startswith(("http://", "https://"))
        tags = {"network": check.network}
        tags |= {"system": check.system} if check.system else {}
        tags |= {"kind": check.system_kind} if check.system_kind else {}
        if not line_up:
            return Sample(ts=now, check="system", name=check.name, outcome="down",
                          target=check.target, fields={"up": False}, tags=tags,
                          error="timed out after 10 s (no connection)")  # fmt: skip
        connect_ms = round(max(3.0, rng.gauss(25.0, 6.0)), 1)
        fields: dict[str, wire.FieldValue] = {"up": system_up, "connect_ms": connect_ms}
        error = ""
        if http:
            slowness = 8.0 if check.system_kind == "land" else 1.0
            ttfb = connect_ms + slowness * max(20.0, rng.gauss(150.0, 60.0))
            fields |= {
                "status": 200 if system_up else 503,
                "ttfb_ms": round(ttfb, 1),
                "total_ms": round(ttfb + rng.uniform(20.0, 200.0), 1),
                "bytes": rng.randrange(20_000, 90_000) if system_up else 512,
            }
            if check.target.startswith("https://"):
                fields["cert_days"] = round(9.5 + seed % 360 - (now % 86400) / 86400, 2)
            error = "" if system_up else "answered 503, expected 2xx or 3xx"
        elif not system_up:
            fields = {"up": False}
            error = f"{check.target} refused the connection"
        return Sample(ts=now, check="system", name=check.name,
                      outcome="ok" if system_up else "bad_response" if http else "down",
                      target=check.target, fields=fields, tags=tags, error=error)  # fmt: skip

    def _pc_samples(self, agent: SimAgent, now: float, up: bool) -> list[list[Sample]]:
        rng = agent.commune.rng
        if agent.disk_drift:
            step = rng.uniform(-0.05, 0.06)
            agent.disk_percent = min(99.0, max(5.0, agent.disk_percent + step))
        host = [
            Sample(
                ts=now,
                check="host",
                name="host",
                outcome="ok",
                fields={
                    "cpu_percent": round(rng.uniform(2, 60), 1),
                    "mem_percent": round(rng.uniform(35, 90), 1),
                    "uptime_s": float(int(now) % 604800),
                },
            ),
            Sample(
                ts=now,
                check="host",
                name="host",
                outcome="ok",
                item="disk",
                target="C:",
                fields={"used_percent": round(agent.disk_percent, 1)},
            ),
        ]
        verdict = agent.verdict
        product_state = "on" if verdict in ("protected", "outdated") else "off"
        antivirus = [
            Sample(
                ts=now,
                check="antivirus",
                name="antivirus",
                outcome="ok",
                fields={
                    "verdict": verdict,
                    "protected": verdict == "protected",
                    "products": 0 if verdict == "none" else 1,
                    "products_on": int(product_state == "on" and verdict != "none"),
                },
                tags={"source": "windows"},  # the reader; each product says where it was found
            )
        ]
        if verdict != "none":
            antivirus.append(
                Sample(
                    ts=now,
                    check="antivirus",
                    name="antivirus",
                    outcome="ok",
                    item="product",
                    target=agent.product,
                    fields={
                        "state": "unknown" if verdict == "unknown" else product_state,
                        "up_to_date": verdict == "protected",
                        "signature_age_days": 0.5 if verdict == "protected" else 9.0,
                    },
                    tags={"source": "security_center"},
                )
            )
        return [host, antivirus, [self._line_sample(now, up, rng)]]

    def poller_samples(self, commune: SimCommune, now: float, up: bool) -> list[list[Sample]]:
        rng = commune.rng
        ports = {"Gi0/0/1": up, "Gi0/0/2": True, "Gi0/0/3": not commune.port_unplugged}
        router = [
            Sample(
                ts=now,
                check="snmp",
                name="router",
                outcome="ok",
                target="192.168.1.1",
                fields={
                    "up": 1,
                    "sys_name": f"{commune.slug}-router",
                    "interfaces": len(ports) + 1,
                    "interfaces_up": sum(ports.values()),
                },
            )
        ]
        for name, oper in ports.items():
            router.append(
                Sample(
                    ts=now,
                    check="snmp",
                    name="router",
                    outcome="ok",
                    item="interface",
                    target=name,
                    fields={
                        "oper_up": oper,
                        "oper_state": "up" if oper else "down",
                        "admin_status": 1,
                        "speed_bps": 1e9,
                        "in_bps": round(rng.uniform(1e5, 2e7)) if oper else 0.0,
                    },
                )
            )
        router.append(
            Sample(
                ts=now,
                check="snmp",
                name="router",
                outcome="ok",
                item="interface",
                target="Gi0/0/4",
                fields={"oper_up": False, "oper_state": "down", "admin_status": 2},
            )
        )
        in_meeting = commune.joins_meetings and (now % (4 * 3600)) < 1800
        ready = commune.polycom_registered and commune.camera_ok
        if commune.polycom_power is not None and not commune.polycom_power(now):
            # Switched off: as the agent reports an endpoint that does not answer.
            off = Sample(ts=now, check="polycom", name="polycom", outcome="timeout",
                         target="192.168.1.20", fields={"up": 0, "ready": False},
                         tags={"method": "snmp", "family": "unknown"},
                         error="no answer from 192.168.1.20")  # fmt: skip
            return [router, [off], [self._line_sample(now, up, rng)]]
        polycom = Sample(
            ts=now,
            check="polycom",
            name="polycom",
            outcome="ok",
            target="192.168.1.20",
            fields={
                "up": 1,
                "ready": ready,
                "registered": commune.polycom_registered,
                "in_call": in_meeting and commune.polycom_registered,
                "camera_ok": commune.camera_ok,
                "microphone_ok": True,
                "model": "RealPresence Group 500",
            },
            tags={"method": "snmp", "family": "group_series"},
        )
        return [router, [polycom], [self._line_sample(now, up, rng)]]
