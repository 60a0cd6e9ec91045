"""The checks an agent runs: the collector's config, local overrides, and the last good one.

Layers, lowest first:

1. the collector's ``AgentConfig`` (retained on this agent's own ``config`` topic),
   minus the names the overrides file lists under ``remove``;
2. the ``[checks]`` of the local config file (``agent.toml``);
3. the overrides file (``local.toml`` next to ``agent.toml``): its checks and
   ``interval``.

A later layer wins name by name (a check's ``name``, else its kind). The
collector's config is judged by the same strict decoder as the local file
(``agent.config.parse_checks``) and merged before anything changes: a config that
does not pass is refused whole, the agent keeps running the previous one and
reports the refused version and why. The last config applied is kept on disk
(``central-config.json`` in the state folder) so the agent starts with it while
the collector or the broker is away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.config import ChecksSection, Config, parse_checks, validate_checks
from agent.configtypes import ConfigError, Duration, convert_strict, read_toml, resolve_paths
from agent.wire import MAX_CONFIG_BYTES, AgentConfig, TopicIdentity, WireError, decode_config

log = logging.getLogger(__name__)

#: Where each layer is said to come from, in ``check-config --show`` and the logs.
LOCAL = "local config"
OVERRIDES = "local overrides"


class Overrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The overrides file: what this PC does differently from the collector's config."""

    interval: Duration | None = None
    """Replaces the interval of both the collector's config and ``[agent].interval``."""
    remove: list[str] = []
    """Names of the collector's checks this PC does not run."""
    checks: dict[str, Any] = {}
    """A ``[checks]`` table as in agent.toml; a check named as one of the collector's
    replaces it."""


class _Version(msgspec.Struct):
    version: Annotated[int, msgspec.Meta(ge=0, le=2**53)] = 0


_version_only = msgspec.json.Decoder(_Version)


@dataclass(frozen=True)
class Effective:
    """What runs: the checks, the agent interval, and where each came from."""

    checks: ChecksSection
    interval: float
    sources: dict[str, str]
    """Check name → the layer it came from."""
    interval_source: str
    central: AgentConfig | None = None


@dataclass
class CentralState:
    """What self-metrics and the birth message tell about the collector's config."""

    version: int = 0
    hash: str = ""
    refused_version: int = 0
    error: str = ""
    applied_at: float | None = None
    withdrawn: bool = False


def central_source(config: AgentConfig) -> str:
    return f"collector config v{config.version} (profile {config.profile or '-'})"


def load_overrides(path: Path) -> tuple[Overrides, ChecksSection]:
    """The overrides file, validated (a missing file is no overrides)."""
    if not path.is_file():
        return Overrides(), ChecksSection()
    data = resolve_paths(read_toml(path), path.absolute().parent)
    overrides = convert_strict(data, Overrides, str(path))
    return overrides, parse_checks(overrides.checks, str(path))


def merge(
    central: AgentConfig | None,
    central_checks: ChecksSection,
    local: ChecksSection,
    overrides: Overrides,
    override_checks: ChecksSection,
    agent_interval: float,
) -> Effective:
    """The layers made one, later ones winning name by name; validated as a whole."""
    chosen: dict[str, tuple[str, Any, str]] = {}  # name -> (kind, options, source)
    layers = [
        (central_source(central) if central else "", central_checks),
        (LOCAL, local),
        (OVERRIDES, override_checks),
    ]
    for position, (source, section) in enumerate(layers):
        for kind, _index, options in section.options():
            name = options.name or kind
            chosen.pop(name, None)  # re-inserted: a replaced check takes the later place
            chosen[name] = (kind, options, source)
        if position == 0:
            for name in overrides.remove:
                chosen.pop(name, None)
    by_kind: dict[str, list[Any]] = {kind: [] for kind in ChecksSection.__struct_fields__}
    for kind, options, _source in chosen.values():
        by_kind[kind].append(options)
    checks = ChecksSection(**by_kind)
    validate_checks(checks, "effective config")
    if overrides.interval is not None:
        interval, interval_source = float(overrides.interval), OVERRIDES
    elif central is not None and central.interval is not None:
        interval, interval_source = central.interval, central_source(central)
    else:
        interval, interval_source = agent_interval, LOCAL
    return Effective(
        checks=checks,
        interval=interval,
        sources={name: source for name, (_k, _o, source) in chosen.items()},
        interval_source=interval_source,
        central=central,
    )


def default_overrides_path(config: Config) -> Path:
    if config.remote.overrides:
        return Path(config.remote.overrides)
    base = Path(config.source).absolute().parent if config.source else Path.cwd()
    return base / "local.toml"


def default_cache_path(config: Config) -> Path:
    if config.remote.cache:
        return Path(config.remote.cache)
    return config.state_dir / "central-config.json"


class CentralConfig:
    """The agent's effective checks over time: offered configs are judged, applied or
    refused; the last applied one is on disk."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.identity = TopicIdentity(
            config.agent.province, config.agent.commune, config.agent_id, "config"
        )
        self.enabled = config.remote.enabled
        self.overrides_path = default_overrides_path(config)
        self.cache_path = default_cache_path(config)
        # A wrong overrides file stops the start, as a wrong agent.toml does: it is local.
        self.overrides, self.override_checks = load_overrides(self.overrides_path)
        self.state = CentralState()
        self.current = self._merge(None, ChecksSection())
        if self.enabled:
            self._load_cache()

    def _merge(self, central: AgentConfig | None, checks: ChecksSection) -> Effective:
        return merge(
            central,
            checks,
            self.config.checks,
            self.overrides,
            self.override_checks,
            float(self.config.agent.interval),
        )

    def _judge(self, payload: bytes) -> Effective:
        """The effective config ``payload`` would make, or ConfigError/WireError."""
        message = decode_config(payload, self.identity)
        source = central_source(message)
        checks = parse_checks(message.checks, source)
        return self._merge(message, checks)

    def _load_cache(self) -> None:
        try:
            payload = self.cache_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the last collector config %s: %s", self.cache_path, exc)
            return
        try:
            self.current = self._judge(payload[: MAX_CONFIG_BYTES + 1])
        except (ConfigError, WireError) as exc:
            log.warning("ignoring the saved collector config %s: %s", self.cache_path, exc)
            return
        assert self.current.central is not None
        self._applied(self.current.central)
        log.info("starting with the saved %s", central_source(self.current.central))

    def _applied(self, message: AgentConfig) -> None:
        self.state.version = message.version
        self.state.hash = message.hash
        self.state.applied_at = self.clock()
        self.state.withdrawn = False

    def offer(self, payload: bytes) -> Effective | None:
        """A message on the config topic, judged: the effective config it would make if
        that changes what runs (not yet applied: ``commit`` it once its checks are built,
        or ``refuse`` it); None if it is the same, refused, or withdrawn."""
        if not payload:
            # The collector withdrew it (the agent was revoked or left the profiles):
            # keep running what is in effect; a new config replaces it when one comes.
            self.state.withdrawn = True
            log.warning("the collector withdrew this agent's config; keeping the current one")
            return None
        try:
            candidate = self._judge(payload)
        except (ConfigError, WireError) as exc:
            self.refuse(payload, str(exc))
            return None
        message = candidate.central
        assert message is not None
        if message.hash == self.state.hash:
            if message.version != self.state.version:
                self._applied(message)  # same content, renumbered: nothing to restart
            return None
        return candidate

    def commit(self, candidate: Effective, payload: bytes) -> None:
        """``candidate`` (from ``offer``) runs now: keep it on disk, report it."""
        message = candidate.central
        assert message is not None
        try:
            self._save(payload)
        except OSError as exc:  # applied anyway: running it matters more than the copy
            log.warning("cannot keep the collector config in %s: %s", self.cache_path, exc)
        self.current = candidate
        self._applied(message)
        self.state.error = ""
        log.info("applied %s: %d checks", central_source(message), len(candidate.sources))

    def refuse(self, payload: bytes, error: str) -> None:
        """Keep running the current config; report the refused version and why."""
        version = 0
        # The version, if the message says one, for the console.
        with contextlib.suppress(msgspec.DecodeError, RecursionError):  # incl. ValidationError
            version = _version_only.decode(payload[:MAX_CONFIG_BYTES]).version
        error = error[:500]
        if (version, error) != (self.state.refused_version, self.state.error):
            log.warning(
                "refused the collector's config v%d: %s; keeping the current one", version, error
            )
        self.state.refused_version = version
        self.state.error = error

    def _save(self, payload: bytes) -> None:
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_path.with_name(self.cache_path.name + ".new")
        partial.write_bytes(payload)
        os.replace(partial, self.cache_path)

    def fields(self) -> dict[str, float | int | bool | str | None]:
        """For the self-metrics sample."""
        return {
            "config_version": self.state.version,
            "config_hash": self.state.hash,
            "config_refused_version": self.state.refused_version,
            "config_error": self.state.error,
        }
