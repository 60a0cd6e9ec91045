"""The agent's TOML config, decoded strictly into frozen typed models.

Unknown keys and bad values are refused at start-up with the file, the key and
what was expected. Secrets are typed ``Secret`` and print as ``<secret>``.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from agent.checks.base import CheckOptions
from agent.checks.options import (
    AntivirusOptions,
    HostOptions,
    LinkOptions,
    PolycomOptions,
    SnmpOptions,
    SystemOptions,
)
from agent.configtypes import (
    BrokerSection,
    ConfigError,
    ConfigProblem,
    Duration,
    Size,
    convert_strict,
    encode_hook,
    read_secret,
    read_toml,
    resolve_paths,
)
from agent.wire import IDENT_PATTERN, Ident

Struct = msgspec.Struct


class AgentSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    province: Ident
    """Province slug, e.g. "dong-nai"; part of every topic."""
    commune: Ident
    """Commune slug, e.g. "la-nga"."""
    id: str = ""
    """This agent's id; defaults to the host name (lower case)."""
    interval: Duration = Duration(60)
    state_dir: str = ""
    """Where the outbox lives; defaults to $STATE_DIRECTORY, /var/lib/commune-agent
    (root), %ProgramData%\\commune-agent (Windows) or ~/.local/state/commune-agent."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class MqttSection(BrokerSection, frozen=True, forbid_unknown_fields=True, kw_only=True):
    inflight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    """Envelopes published and not yet acknowledged at once."""
    reconnect_max: Duration = Duration(120)
    """Longest wait between reconnect attempts (backoff doubles from 1 s up to this)."""


class OutboxSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    path: str = ""
    """SQLite file; defaults to <state_dir>/outbox.sqlite."""
    max_age: Duration = Duration(72 * 3600)
    max_size: Size = Size(64 * 1024 * 1024)


class RemoteSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    """Run the checks the collector sends on this agent's config topic (set by
    ``commune-agent enroll``); the local [checks] and the overrides file still win."""
    overrides: str = ""
    """Local overrides (TOML: interval, remove, [checks]); defaults to local.toml next to
    this file."""
    cache: str = ""
    """The last config the collector sent, to start with while it is away; defaults to
    <state_dir>/central-config.json."""
    config_key: str = ""
    """The collector's config signing keys (public, one per line): only configs signed by
    one of them run. Defaults to config-key.pub next to this file (``commune-agent
    enroll`` and ``commune-agent config-key fetch`` write it)."""


class UpdateSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where the agent takes the releases the collector's config names (run by the
    launcher only: an agent run another way never updates itself)."""

    url: str = ""
    """The collector's signed releases (TUF), e.g. "https://collector.example:8443/releases"."""
    ca_file: str = ""
    """The CA that signed the collector's HTTPS certificate (default: the system's)."""
    bundle_dir: str = ""
    """Tests only: take ``commune-agent-<v>.zip`` from this folder instead of ``url``
    (checked against its manifest, not a signature). The update process refuses it
    unless its environment says tests (``agent.update.process.UNSIGNED_BUNDLES_ENV``)."""
    retry_min: Duration = Duration(300)
    """After a failed or refused attempt, wait this long (doubling up to retry_max) unless
    the collector said when (Retry-After)."""
    retry_max: Duration = Duration(6 * 3600)


class ChecksSection(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: list[HostOptions] = []
    antivirus: list[AntivirusOptions] = []
    link: list[LinkOptions] = []
    snmp: list[SnmpOptions] = []
    polycom: list[PolycomOptions] = []
    system: list[SystemOptions] = []

    def options(self) -> list[tuple[str, int, Any]]:
        """(kind, position, options) for every check, in config order."""
        return [
            (kind, position, options)
            for kind in ChecksSection.__struct_fields__
            for position, options in enumerate(getattr(self, kind))
        ]


#: The options class of each check kind (from ``ChecksSection``), for the keys each may
#: take from the network.
OPTIONS: dict[str, type[CheckOptions]] = {
    field.name: get_args(field.type)[0] for field in msgspec.structs.fields(ChecksSection)
}

LOCAL_ONLY = "local only: set it in this PC's agent.toml or local.toml"


def parse_checks(
    data: dict[str, Any], source: str, key: str = "checks", *, remote: bool = False
) -> ChecksSection:
    """A ``[checks]`` table, decoded and validated as the agent runs it: each check's
    options, names unique. What the collector sends is judged by this very function
    with ``remote`` (local-only keys refused by name), on the collector before it sends
    and on the agent before it applies."""
    if remote:
        refused = local_only_key(data)
        if refused:
            raise ConfigError(f"{source}: {key}.{refused}: {LOCAL_ONLY}")
    try:
        checks = convert_strict({"checks": data}, _Checks, source).checks
    except ConfigError as exc:  # name the key where the caller found the table
        raise ConfigError(str(exc).replace(f"{source}: checks", f"{source}: {key}", 1)) from None
    validate_checks(checks, source, key)
    return checks


def local_only_key(data: dict[str, Any]) -> str:
    """The first local-only key a ``[checks]`` table sets (``antivirus[0].powershell``),
    nested tables included; "" when none. Read from the table as written, before any
    default fills in: a key is refused for being sent, whatever its value."""
    for kind, entries in data.items():
        options = OPTIONS.get(kind)
        if options is None or not isinstance(entries, list):
            continue  # the strict decoder names what is wrong with it
        for position, entry in enumerate(entries):
            found = _local_only_in(options, entry)
            if found:
                return f"{kind}[{position}].{found}"
    return ""


def _local_only_in(options: type[CheckOptions], entry: Any) -> str:
    if not isinstance(entry, dict):
        return ""
    for name, value in entry.items():
        if name in options.local_only_keys:
            return str(name)
        nested = _nested_options(options, name)
        if nested is not None:
            found = _local_only_in(nested, value)
            if found:
                return f"{name}.{found}"
    return ""


def _nested_options(options: type[CheckOptions], name: str) -> type[CheckOptions] | None:
    """The options class of a nested table (snmp's ``interfaces``), if ``name`` is one."""
    for field in msgspec.structs.fields(options):
        found = field.type
        if field.name == name and isinstance(found, type) and issubclass(found, CheckOptions):
            return found
    return None


def validate_checks(checks: ChecksSection, source: str, key: str = "checks") -> None:
    """What types alone cannot say: each check's own rules, names unique."""
    names: dict[str, str] = {}
    for kind, position, options in checks.options():
        where = f"{key}.{kind}[{position}]"
        try:
            options.validate()
        except ConfigProblem as exc:
            raise ConfigError(f"{source}: {where}.{exc.key}: {exc}") from None
        name = options.name or kind
        if name in names:
            raise ConfigError(
                f"{source}: {where}.name: duplicate check name {name!r} (also {names[name]})"
            )
        names[name] = where


class _Checks(Struct, frozen=True, forbid_unknown_fields=True):
    checks: ChecksSection


class Config(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    agent: AgentSection
    mqtt: MqttSection = MqttSection()
    outbox: OutboxSection = OutboxSection()
    checks: ChecksSection = ChecksSection()
    remote: RemoteSection = RemoteSection()
    update: UpdateSection = UpdateSection()
    source: str = ""
    """The file this was read from (set by load_config, not a config key)."""

    @property
    def agent_id(self) -> str:
        return self.agent.id or default_agent_id()

    @property
    def state_dir(self) -> Path:
        return Path(self.agent.state_dir) if self.agent.state_dir else default_state_dir()

    @property
    def outbox_path(self) -> Path:
        return Path(self.outbox.path) if self.outbox.path else self.state_dir / "outbox.sqlite"

    def check_options(self) -> list[tuple[str, int, Any]]:
        """(kind, position, options) for every configured check, in config order."""
        return self.checks.options()


def default_agent_id() -> str:
    name = socket.gethostname().split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9._-]", "-", name).strip("-._") or "agent"
    return cleaned[:64]


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "commune-agent"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/commune-agent")
    return Path.home() / ".local" / "state" / "commune-agent"


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    config = convert_strict({**data, "source": source}, Config, source)
    _validate(config, source)
    return config


def load_config(path: str | Path) -> Config:
    data = read_toml(path)
    if "source" in data:
        raise ConfigError(f"{path}: source: unknown key")
    # Relative paths are the config file's neighbours, whatever folder the agent runs in
    # (a Windows service runs in System32); outbox.path is a file of the state folder.
    base = Path(path).absolute().parent
    data = resolve_paths(data, base)
    remote = data.get("remote")
    if isinstance(remote, dict):
        remote.update(resolve_paths(remote, base, frozenset({"overrides", "cache", "config_key"})))
    update = data.get("update")
    if isinstance(update, dict):
        update.update(resolve_paths(update, base, frozenset({"ca_file", "bundle_dir"})))
    outbox = data.get("outbox")
    if isinstance(outbox, dict) and isinstance(outbox.get("path"), str) and outbox["path"]:
        outbox["path"] = resolve_paths({"path": outbox["path"]}, base, frozenset({"path"}))["path"]
    return parse_config(data, str(path))


def _validate(config: Config, source: str) -> None:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {message}")

    if config.agent.id and not re.fullmatch(IDENT_PATTERN, config.agent.id):
        raise fail("agent.id", "letters, digits, '.', '_' or '-' only (it is an MQTT topic level)")
    try:
        config.mqtt.validate()
    except ConfigProblem as exc:
        raise fail(f"mqtt.{exc.key}", str(exc)) from None
    validate_checks(config.checks, source)
    for kind, position, options in config.check_options():
        where = f"checks.{kind}[{position}]"
        password_file = getattr(options, "password_file", "")
        if password_file:
            try:
                read_secret(password_file)  # as the service will: readable, decodable, not empty
            except (OSError, ValueError) as exc:
                raise fail(f"{where}.password_file", f"cannot read it: {exc}") from None


def redacted(config: Config) -> dict[str, Any]:
    """The config as plain data with secrets shown as <secret>, for printing."""
    data: dict[str, Any] = msgspec.to_builtins(config, enc_hook=encode_hook)
    data.pop("source", None)
    return data
