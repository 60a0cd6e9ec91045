"""The checks an agent runs: the collector's config, local overrides, and the last good one.

Layers, lowest first:

1. the collector's ``AgentConfig`` (retained on this agent's own ``config`` topic),
   minus the names the overrides file lists under ``remove``;
2. the ``[checks]`` of the local config file (``agent.toml``);
3. the overrides file (``local.toml`` next to ``agent.toml``): its checks and
   ``interval``.

A later layer wins name by name (a check's ``name``, else its kind). The
collector's config is judged before anything changes, and refused whole (the agent
keeps running the previous one and reports the refused version and why) unless:

- it is signed (``SignedConfig``) by a key this agent trusts (``agent.configkeys``),
  and the signature verifies over the exact bytes it carries;
- it is for this agent (the identity inside matches the topic);
- its version is above the one running (the same version again is nothing to do if
  its content is the same, refused if not): an old config replayed never runs;
- its checks pass the same strict decoder as the local file, with ``remote``: keys
  naming this PC's own programs, files, sockets or folders are local only
  (``agent.config.parse_checks``), so a config from the network is data.

The last config applied is kept on disk (``central-config.json`` in the state folder,
0600) as the signed message it came in, with the keys trusted since, so the agent
starts with it while the collector or the broker is away; it is verified again at
each start. Keys: applying a config signed by key K that announces a next key N
makes the agent trust K and N, nothing else: during a rotation the current key
introduces its successor, and the first config signed by the successor drops the
old key. On Windows the mode bits mean nothing: the file takes the ACL of its folder
(%ProgramData%\\commune-agent, which the installer gives to SYSTEM and the
Administrators only).

An agent upgraded from 0.2 has no key yet and a cache holding a bare, unsigned
AgentConfig. It refuses every config from the network until a key is installed
(``commune-agent config-key fetch``), and meanwhile runs its 0.2 cache only if that
passes today's remote decoder: it is what the PC ran yesterday, and with no
local-only key it can name no program and no file, so keeping it keeps the PC
monitored without trusting anything new. The first signed config replaces it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from agent.config import ChecksSection, Config, parse_checks, validate_checks
from agent.configkeys import (
    KEY_FILE,
    decode_public_key,
    describe,
    encode_public_key,
    read_key_file,
    verify,
)
from agent.configtypes import ConfigError, Duration, convert_strict, read_toml, resolve_paths
from agent.wire import (
    MAX_CONFIG_BYTES,
    MAX_SIGNED_CONFIG_BYTES,
    AgentConfig,
    KeyId,
    PublicKey,
    SignedConfig,
    TopicIdentity,
    WireError,
    config_key_id,
    decode_config,
    decode_signed_config,
)

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


class SavedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """central-config.json: the last config applied, as signed, and what it made trusted."""

    signed: SignedConfig
    keys: dict[KeyId, PublicKey]
    """The signing keys trusted since it was applied: its signer and the next key it
    announced."""
    anchor: list[KeyId]
    """The key file's keys then: when that file changes (``config-key fetch`` after a
    leak), the keys learnt from configs are forgotten and the file's alone are trusted."""


_saved = msgspec.json.Decoder(SavedConfig)


class Effective(msgspec.Struct, frozen=True):
    """What runs: the checks, the agent interval, and where each came from."""

    checks: ChecksSection
    interval: float
    sources: dict[str, str]
    """Check name → the layer it came from."""
    interval_source: str
    central: AgentConfig | None = None
    signed: SignedConfig | None = None
    """What ``central`` came in (None: the unsigned one a 0.2 agent kept)."""


class CentralState(msgspec.Struct):
    """What self-metrics and the birth message tell about the collector's config."""

    version: int = 0
    hash: str = ""
    refused_version: int = 0
    error: str = ""
    applied_at: float | None = None
    withdrawn: bool = False
    signed_by: str = ""
    """The key id that signed the config running ("" : none, or the unsigned 0.2 one)."""


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


def default_key_path(config: Config) -> Path:
    if config.remote.config_key:
        return Path(config.remote.config_key)
    base = Path(config.source).absolute().parent if config.source else Path.cwd()
    return base / KEY_FILE


def no_key_error(path: Path) -> str:
    return (
        f"no config signing key in {path}: the collector's configs are refused until one "
        "is there (commune-agent config-key fetch --collector https://...)"
    )


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
        self.key_path = default_key_path(config)
        # A wrong overrides file stops the start, as a wrong agent.toml does: it is local.
        self.overrides, self.override_checks = load_overrides(self.overrides_path)
        self.state = CentralState()
        self.current = self._merge(None, ChecksSection())
        self.anchor: dict[str, bytes] = {}
        self.trusted: dict[str, bytes] = {}
        """The keys a config must be signed by: the key file's, or those the last config
        applied made trusted."""
        if self.enabled:
            # Local too: a key file that is there but wrong stops the start by its name.
            self.anchor = read_key_file(self.key_path)
            self.trusted = dict(self.anchor)
            self._load_cache()
            if not self.trusted:
                self.state.error = no_key_error(self.key_path)
                log.warning("%s", self.state.error)

    def _merge(
        self,
        central: AgentConfig | None,
        checks: ChecksSection,
        signed: SignedConfig | None = None,
    ) -> Effective:
        effective = merge(
            central,
            checks,
            self.config.checks,
            self.overrides,
            self.override_checks,
            float(self.config.agent.interval),
        )
        return msgspec.structs.replace(effective, signed=signed)

    def _judge(self, signed: SignedConfig, keys: dict[str, bytes]) -> Effective:
        """The effective config a signed config would make, or ConfigError/WireError:
        its signature, its identity, its checks (versions are ``offer``'s to judge)."""
        message = decode_config(verify(signed, keys), self.identity)
        return self._checked(message, signed)

    def _checked(self, message: AgentConfig, signed: SignedConfig | None) -> Effective:
        source = central_source(message)
        checks = parse_checks(message.checks, source, remote=True)
        return self._merge(message, checks, signed)

    def _load_cache(self) -> None:
        try:
            with self.cache_path.open("rb") as cache:  # bounded: a wrong file is not read whole
                payload = cache.read(MAX_SIGNED_CONFIG_BYTES + 4096)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read the last collector config %s: %s", self.cache_path, exc)
            return
        self._restrict_cache()
        try:
            saved = _saved.decode(payload)
        except (msgspec.DecodeError, RecursionError):  # incl. ValidationError
            self._load_unsigned(payload)
            return
        if sorted(saved.anchor) == sorted(self.anchor):
            self.trusted = {k: decode_public_key(v) for k, v in saved.keys.items()}
        else:
            log.warning(
                "%s changed since the saved collector config was applied: trusting its "
                "keys alone (%s)", self.key_path, describe(self.anchor),
            )  # fmt: skip
        try:
            self.current = self._judge(saved.signed, self.trusted)
        except (ConfigError, WireError) as exc:
            log.warning("ignoring the saved collector config %s: %s", self.cache_path, exc)
            return
        assert self.current.central is not None
        self._applied(self.current.central, saved.signed)
        log.info("starting with the saved %s", central_source(self.current.central))

    def _load_unsigned(self, payload: bytes) -> None:
        """The cache of a 0.2 agent: a bare AgentConfig, run only if it is data."""
        try:
            message = decode_config(payload[:MAX_CONFIG_BYTES], self.identity)
            self.current = self._checked(message, None)
        except (ConfigError, WireError) as exc:
            log.warning("ignoring the saved collector config %s: %s", self.cache_path, exc)
            return
        self._applied(message, None)
        self.state.error = (
            f"running the unsigned config v{message.version} kept by an earlier version of "
            "the agent until the collector sends a signed one"
        )
        log.warning("%s", self.state.error)

    def _restrict_cache(self) -> None:
        """A cache written by an earlier version (0644 outside the unit) made 0600."""
        if sys.platform == "win32":
            return
        with contextlib.suppress(OSError):
            if self.cache_path.stat().st_mode & 0o077:
                os.chmod(self.cache_path, 0o600)

    def _applied(self, message: AgentConfig, signed: SignedConfig | None) -> None:
        self.state.version = message.version
        self.state.hash = message.hash
        self.state.applied_at = self.clock()
        self.state.withdrawn = False
        self.state.signed_by = signed.key if signed else ""

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
            if not self.trusted:
                raise ConfigError(no_key_error(self.key_path))
            signed = decode_signed_config(payload)
            candidate = self._judge(signed, self.trusted)
        except (ConfigError, WireError) as exc:
            self.refuse(payload, str(exc))
            return None
        message = candidate.central
        assert message is not None
        running = self.state.version
        unsigned = self.state.version > 0 and not self.state.signed_by
        if message.version < running or (message.version == running and not unsigned):
            if message.version == running and message.hash == self.state.hash:
                return None  # the same again (retained, sent again after a restart)
            said = "older than" if message.version < running else "the version of"
            self.refuse(
                payload,
                f"replayed: v{message.version} is {said} the config running "
                f"(v{running}); the collector sends a higher version for any change",
                message.version,
            )
            return None
        if message.hash == self.state.hash:
            # Same checks, renumbered or signed anew (a key rotation): nothing to restart,
            # but it is what runs now, and what the keys are.
            self.commit(candidate, payload)
            return None
        return candidate

    def commit(self, candidate: Effective, payload: bytes) -> None:
        """``candidate`` (from ``offer``) runs now: keep it on disk, trust what it says,
        report it."""
        message, signed = candidate.central, candidate.signed
        assert message is not None and signed is not None
        keys = {signed.key: self.trusted[signed.key]}
        if message.next_key:
            following = decode_public_key(message.next_key)
            keys[config_key_id(following)] = following
        try:
            self._save(SavedConfig(
                signed, {k: encode_public_key(v) for k, v in keys.items()}, sorted(self.anchor)
            ))  # fmt: skip
        except OSError as exc:  # applied anyway: running it matters more than the copy
            log.warning("cannot keep the collector config in %s: %s", self.cache_path, exc)
        if keys != self.trusted:
            log.info("config signing keys trusted now: %s (were %s)",
                     describe(keys), describe(self.trusted))  # fmt: skip
        self.trusted = keys
        self.current = candidate
        self._applied(message, signed)
        self.state.error = ""
        log.info("applied %s: %d checks", central_source(message), len(candidate.sources))

    def refuse(self, payload: bytes, error: str, version: int | None = None) -> None:
        """Keep running the current config; report the refused version and why."""
        if version is None:
            version = claimed_version(payload)
        error = error[:500]
        if (version, error) != (self.state.refused_version, self.state.error):
            log.warning(
                "refused the collector's config v%d: %s; keeping the current one", version, error
            )
        self.state.refused_version = version
        self.state.error = error

    def _save(self, saved: SavedConfig) -> None:
        """Written whole then renamed into place, 0600 (it holds credentials sent as
        values); on Windows the folder's ACL decides."""
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_path.with_name(self.cache_path.name + ".new")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if sys.platform != "win32":
                os.fchmod(out.fileno(), 0o600)  # a leftover .new may have had another mode
            out.write(msgspec.json.encode(saved))
        os.replace(partial, self.cache_path)

    def fields(self) -> dict[str, float | int | bool | str | None]:
        """For the self-metrics sample."""
        return {
            "config_version": self.state.version,
            "config_hash": self.state.hash,
            "config_refused_version": self.state.refused_version,
            "config_error": self.state.error,
            "config_keys": ",".join(sorted(self.trusted)),
        }


def claimed_version(payload: bytes) -> int:
    """The version a config payload says it is (0 if none can be read), for reporting a
    refusal: nothing is trusted from it."""
    with contextlib.suppress(WireError):
        payload = decode_signed_config(payload).config
    with contextlib.suppress(msgspec.DecodeError, RecursionError):  # incl. ValidationError
        return _version_only.decode(payload[:MAX_CONFIG_BYTES]).version
    return 0
