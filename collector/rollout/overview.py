"""How far the rollout has come, per commune: PCs expected (the inventory), enrolled,
reporting; tokens in use; and whether each agent runs the config it is sent.

What an agent runs is what it said last: its self-metrics sample (every interval,
and at once after a config arrives) or else its birth message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.catalogue import AGENT
from collector.rollout import registry, tokens
from collector.state.inventory import Inventory
from collector.state.store import StateStore


@dataclass
class AgentRollout:
    agent: str
    profile: str
    enrolled_at: float
    revoked_at: float | None
    state: str
    """online, offline or unknown (never reported)."""
    sent_version: int
    """The config version the collector sent (0: none yet)."""
    running_version: int
    """The version the agent says it runs (0: none, or not said yet)."""
    config_error: str
    """Why the agent refused the config it was sent ("" when it did not)."""

    @property
    def config_current(self) -> bool:
        return self.sent_version > 0 and self.running_version == self.sent_version


@dataclass
class TokenView:
    id: str
    profile: str
    uses: int
    used: int
    expires: float
    state: str
    created_by: str


@dataclass
class CommuneRollout:
    province: str
    commune: str
    name: str
    code: str
    expected_pcs: int | None
    enrolled: int
    reporting: int
    configs_current: int
    agents: list[AgentRollout] = field(default_factory=list)
    tokens: list[TokenView] = field(default_factory=list)


def _running(store: StateStore, place: str) -> dict[str, tuple[str, int, str]]:
    """Per agent key: state, config version it runs, its config error."""
    lo, hi = place, place + "\U0010ffff"
    with store.reading() as db:
        rows = db.execute(
            "SELECT agent_key, state, config_version FROM agents "
            "WHERE agent_key >= ? AND agent_key < ?",
            (lo, hi),
        ).fetchall()
    running = {str(k): (str(s), int(v), "") for k, s, v in rows}
    for sample in store.latest_of("agent", place):
        if sample.item:
            continue
        state, version, _ = running.get(sample.agent_key, ("unknown", 0, ""))
        reported = AGENT.number(sample.fields, "config_version")
        error = AGENT.text(sample.fields, "config_error") or ""
        running[sample.agent_key] = (
            state,
            int(reported) if reported is not None else version,
            error,
        )
    return running


def communes(
    store: StateStore, inventories: list[Inventory], province: str, now: float
) -> list[CommuneRollout]:
    """Every commune of the province the inventory lists or an agent or token names."""
    inventory = next((i for i in inventories if i.province == province), None)
    renames = inventory.renames() if inventory else {}

    def current(commune: str) -> str:  # an agent enrolled under a former slug reports here
        return renames.get((province, commune), commune)

    enrolled = registry.managed(store, province)
    issued = tokens.tokens(store, province)
    running = _running(store, f"{province}/")
    slugs = {c.slug for c in inventory.communes} if inventory else set()
    slugs |= {current(m.commune) for m in enrolled} | {current(t.commune) for t in issued}
    result = []
    for slug in sorted(slugs):
        info = inventory.commune(slug) if inventory else None
        agents = []
        for m in enrolled:
            if current(m.commune) != slug:
                continue
            # What it runs is recorded under the commune's slug now (the ingest renames).
            state, version, error = running.get(f"{province}/{slug}/{m.agent}", ("unknown", 0, ""))
            agents.append(
                AgentRollout(
                    agent=m.agent,
                    profile=m.profile,
                    enrolled_at=m.enrolled_at,
                    revoked_at=m.revoked_at,
                    state=state,
                    sent_version=m.config_version,
                    running_version=version,
                    config_error=error,
                )
            )
        active = [a for a in agents if a.revoked_at is None]
        result.append(
            CommuneRollout(
                province=province,
                commune=slug,
                name=info.name if info else slug,
                code=info.code if info else "",
                expected_pcs=info.pcs if info else None,
                enrolled=len(active),
                reporting=sum(1 for a in active if a.state == "online"),
                configs_current=sum(1 for a in active if a.config_current),
                agents=agents,
                tokens=[
                    TokenView(
                        t.id, t.profile, t.uses, t.used, t.expires, t.state(now), t.created_by
                    )
                    for t in issued
                    if current(t.commune) == slug
                ],
            )
        )
    return result
