"""Which enrolled agents trust a config signing key: what they said last.

Every agent's self-metrics carry ``config_keys``, the ids of the keys it trusts. A
rotation's next key may become the current one (``commune-collector config-key
finish``) once every active agent trusts it: one that does not would refuse every
config signed by it, and could then only be given the key by hand
(``commune-agent config-key fetch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.catalogue import AGENT
from collector.rollout import registry
from collector.state.store import StateStore


@dataclass
class Adoption:
    key: str
    trusting: list[str] = field(default_factory=list)
    """Active agents (province/commune/agent) that said they trust the key."""
    lacking: list[str] = field(default_factory=list)
    """Active agents that did not (or have not reported since enrolling)."""


def adoption(store: StateStore, key: str) -> Adoption:
    said: dict[str, set[str]] = {}
    for sample in store.latest_of("agent"):
        if sample.item:
            continue
        keys = AGENT.text(sample.fields, "config_keys") or ""
        said[sample.agent_key] = set(keys.split(","))
    found = Adoption(key)
    for agent in registry.managed(store, active=True):
        trusts = key in said.get(agent.agent_key, set())
        (found.trusting if trusts else found.lacking).append(agent.agent_key)
    return found
