"""What the tests build over and over: samples, envelopes, statuses, an agent's config.

Dong Nai's La Ngà and its PC pc-01 unless told otherwise; every builder takes the
place and the parts a test cares about, nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.wire import Envelope, Sample, Status
from collector.rollout.configkey import ConfigKeys, SigningKey

PROVINCE, COMMUNE, AGENT = "dong-nai", "la-nga", "pc-01"


def link(
    ts: float,
    up: bool = True,
    *,
    name: str = "tslcd",
    target: str = "10.10.1.1",
    network: str = "tslcd",
    outcome: str | None = None,
    method: str | None = None,
    **fields: Any,
) -> Sample:
    """A link probe's main sample: up (1) or down (0, a timeout), its loss, more fields."""
    values: dict[str, Any] = {"up": int(up), **fields}
    values.setdefault("loss_percent", 0.0 if up else 100.0)
    return Sample(
        ts=ts,
        check="link",
        name=name,
        outcome=outcome or ("ok" if up else "timeout"),  # type: ignore[arg-type]
        target=target,
        fields=values,
        tags={"network": network} | ({"method": method} if method else {}),
    )


def system(
    ts: float,
    name: str = "mot-cua",
    outcome: str = "ok",
    *,
    total_ms: float | None = 200.0,
    status: int | None = 200,
    cert_days: float | None = None,
    target: str = "https://motcua.dongnai.gov.vn/",
    network: str = "tslcd",
    error: str = "",
) -> Sample:
    """A shared system's probe (check "system"): ok, down or bad_response."""
    fields: dict[str, Any] = {"up": outcome == "ok"}
    if outcome != "down":
        fields |= {"status": status, "total_ms": total_ms, "ttfb_ms": total_ms}
    if cert_days is not None:
        fields["cert_days"] = cert_days
    return Sample(
        ts=ts,
        check="system",
        name=name,
        outcome=outcome,  # type: ignore[arg-type]
        target=target,
        fields={k: v for k, v in fields.items() if v is not None},
        tags={"network": network, "system": name, "kind": "other"},
        error=error or ("" if outcome == "ok" else f"{outcome}: as the test says"),
    )


def envelope(
    seq: int,
    *samples: Sample,
    agent: str = AGENT,
    commune: str = COMMUNE,
    province: str = PROVINCE,
    ts: float | None = None,
) -> Envelope:
    """One check run's envelope; its time is its first sample's unless given."""
    return Envelope(
        v=1,
        agent=agent,
        province=province,
        commune=commune,
        seq=seq,
        ts=ts if ts is not None else (samples[0].ts if samples else 0.0),
        samples=list(samples),
    )


def status(
    state: str,
    ts: float,
    *,
    reason: str = "",
    agent: str = AGENT,
    commune: str = COMMUNE,
    province: str = PROVINCE,
    **extra: Any,
) -> Status:
    return Status(
        v=1,
        state=state,  # type: ignore[arg-type]
        agent=agent,
        province=province,
        commune=commune,
        ts=ts,
        reason=reason,
        **extra,
    )


class Feed:
    """Each commune's poller (agent "poller"): its line and its probes, applied to a store
    as the ingest does, one envelope per send."""

    def __init__(self, store: Any, start: float) -> None:
        self.store = store
        self.start = start
        self.seq: dict[str, int] = {}

    def online(self, *communes: str, at: float | None = None) -> None:
        ts = self.start if at is None else at
        self.store.apply(
            statuses=[(status("online", ts, agent="poller", commune=c), ts) for c in communes]
        )

    def send(self, commune: str, *samples: Sample) -> None:
        self.seq[commune] = self.seq.get(commune, 0) + 1
        self.store.apply(
            [envelope(self.seq[commune], *samples, agent="poller", commune=commune)],
            received=samples[0].ts,
        )


def agent_toml(
    agent: str = AGENT, *, commune: str = COMMUNE, province: str = PROVINCE, extra: str = ""
) -> str:
    """An agent config's [agent] table, then whatever the test adds (sections, checks)."""
    return f'[agent]\nprovince = "{province}"\ncommune = "{commune}"\nid = "{agent}"\n{extra}'


def write_agent_config(path: Path, agent: str = AGENT, extra: str = "") -> Path:
    path.write_text(agent_toml(agent, extra=extra))
    return path


def signing_key(seed: int = 1) -> SigningKey:
    """A config signing key of the tests' own, the same at every run for one seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collector.rollout.configkey import _signing_key

    return _signing_key(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def trust(folder: Path, *keys: SigningKey) -> Path:
    """config-key.pub beside an agent.toml in ``folder``: the agent trusts these keys
    (the tests' first key unless told)."""
    from agent.configkeys import KEY_FILE, write_key_file

    path = folder / KEY_FILE
    write_key_file(path, [k.public for k in keys or (signing_key(),)], "the tests")
    return path


def agent_config(
    checks: dict[str, list[dict[str, Any]]],
    *,
    version: int = 1,
    interval: float | None = None,
    agent: str = AGENT,
    commune: str = COMMUNE,
    province: str = PROVINCE,
    profile: str = "office",
    next_key: str = "",
) -> bytes:
    """An AgentConfig's bytes as the collector makes them, hash and all (not signed)."""
    from agent.wire import SCHEMA_VERSION, AgentConfig, config_digest, encode

    return encode(
        AgentConfig(
            v=SCHEMA_VERSION,
            agent=agent,
            province=province,
            commune=commune,
            version=version,
            hash=config_digest(interval, checks),
            profile=profile,
            interval=interval,
            checks=checks,
            published=1.7e9,
            next_key=next_key,
        )
    )


def signed(config: bytes, key: SigningKey | None = None) -> bytes:
    """``config``'s bytes signed as the collector signs them (the tests' first key)."""
    from agent.wire import encode

    return encode(ConfigKeys(key or signing_key()).sign(config))


def central_config(
    checks: dict[str, list[dict[str, Any]]],
    *,
    key: SigningKey | None = None,
    next_key: SigningKey | None = None,
    **fields: Any,
) -> bytes:
    """The retained SignedConfig the collector would send (``agent_config``'s fields),
    signed with ``key`` (the tests' first one unless told)."""
    announced = next_key.public_text if next_key else ""
    return signed(agent_config(checks, next_key=announced, **fields), key)
