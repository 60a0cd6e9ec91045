"""Check profiles: what each kind of agent runs, per commune, in one file per province.

    province = "dong-nai"

    [vars]                         # every commune's values unless it sets its own
    portal = "https://dongnai.gov.vn"

    [profiles.office]              # the PCs of a commune office
    interval = "1m"
    [[profiles.office.checks.host]]
    [[profiles.office.checks.link]]
    name = "tslcd-gateway"
    network = "tslcd"
    target = "${gateway}"

    [communes.la-nga]              # one commune's values
    gateway = "10.75.1.1"
    snmp_community = { secret_file = "secrets/la-nga.community" }

    [agents."la-nga/poller"]       # one agent's own: another profile, checks, removals
    profile = "poller"
    remove = ["link:tslcd-gateway"]

A string that is exactly ``${name}`` becomes the value itself (a number stays a
number); ``${name}`` inside a longer string is replaced by its text. An agent's
checks are its profile's, then its own: a check of the same kind and name
replaces the profile's, a new one is added, ``remove`` drops ``kind:name``.

Every profile is validated for every commune the file lists, and every agent
override, with the agent's own decoder for what comes from the network
(``agent.config.parse_checks`` with ``remote``) when the file is loaded: a bad value,
or a key only a PC's own config may set (a program, a file: ``powershell``,
``password_file``...), is refused here, by file and key, before any agent sees it.
Secrets (``{ secret_file = "la-nga.community" }``) are read at load from the secrets
folder (``[enrollment] secrets_dir``, default the profiles file's own): a relative
name inside it, never an absolute path, ``..`` or a link leading out of it. They
reach only the agent they are for, as values, on its own config topic.

The province's shared systems (``collector/state/systems.py``) are probed from one
agent per commune: a profile that says ``systems = true`` (the poller's) gets one
``[[checks.system]]`` per system the commune uses, and its website. A commune without
a poller names its PC instead (``[agents."<commune>/<agent>"] systems = true``), and a
poller can be left out (``systems = false``). Should two agents of a commune qualify
(two pollers enrolled), only one probes: the one named, else the first enrolled
(``Profiles.probers``). ``remove = ["system:<id>"]`` drops one system for one agent.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import parse_checks
from agent.configtypes import ConfigError, read_secret, read_toml
from agent.units import parse_duration
from agent.wire import IDENT_PATTERN, ReleaseOrder, config_digest
from collector.state.systems import Catalogue

VAR_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
WHOLE_VAR = re.compile(r"\$\{([a-z][a-z0-9_]{0,63})\}")
Value = str | int | float | bool


class ProfileError(ConfigError):
    pass


@dataclass(frozen=True)
class Effective:
    """One agent's config as the collector sends it."""

    profile: str
    interval: float | None
    checks: dict[str, list[dict[str, Any]]]
    release: ReleaseOrder | None = None
    """The agent version to run, from the rollout (``rollouts.py``); None: stay."""

    @property
    def hash(self) -> str:
        return config_digest(self.interval, self.checks, self.release)

    def ordered(self, release: ReleaseOrder | None) -> Effective:
        """The same config with ``release`` as its order."""
        return dataclasses.replace(self, release=release)


@dataclass
class ProvinceProfiles:
    province: str
    source: str
    profiles: dict[str, dict[str, Any]]
    """Name -> {"interval": seconds or None, "checks": {kind: [options]}, "systems": bool}
    (unsubstituted)."""
    vars: dict[str, Value] = field(default_factory=dict)
    communes: dict[str, dict[str, Value]] = field(default_factory=dict)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """"<commune>/<agent>" -> {"profile", "interval", "checks", "remove", "vars", "systems"}."""
    systems: Catalogue | None = None
    """The province's shared systems, probed by the agents whose profile says so."""

    def _profile_of(self, commune: str, agent: str, profile: str) -> str:
        name = str(self.agents.get(f"{commune}/{agent}", {}).get("profile") or profile)
        if name not in self.profiles:
            raise ProfileError(
                f"{self.source}: no profile {name!r} (profiles: {sorted(self.profiles)})"
            )
        return name

    def probes(self, commune: str, agent: str, profile: str) -> tuple[bool, bool]:
        """(whether the agent would probe the shared systems, whether its own table
        names it for that)."""
        own = self.agents.get(f"{commune}/{agent}", {}).get("systems")
        if own is not None:
            return bool(own), bool(own)
        return bool(self.profiles[self._profile_of(commune, agent, profile)]["systems"]), False

    def effective(
        self, commune: str, agent: str, profile: str, probes: bool | None = None
    ) -> Effective:
        """The config for one agent; ProfileError naming the file and key otherwise.
        ``probes``: whether it probes the shared systems (``Profiles.probers`` decides
        among a commune's agents); None: as its profile and its own table say."""
        own = self.agents.get(f"{commune}/{agent}", {})
        name = self._profile_of(commune, agent, profile)
        values = {**self.vars, **self.communes.get(commune, {}), **own.get("vars", {})}
        base = self.profiles[name]
        where = f"profiles.{name}"
        checks = _substituted(base["checks"], values, f"{self.source}: {where}", commune)
        interval = own.get("interval") or base["interval"]
        if own:
            mine = f"{self.source}: agents.{commune}/{agent}"
            checks = _overridden(
                checks, _substituted(own.get("checks", {}), values, mine, commune), own
            )
        try:
            parse_checks(checks, self.source, f"{where} for {commune}/{agent}: checks", remote=True)
        except ConfigError as exc:
            raise ProfileError(str(exc)) from None
        if probes is None:
            probes = self.probes(commune, agent, name)[0]
        if probes and self.systems is not None:
            checks = self._with_systems(checks, commune, agent, own)
            try:  # the probes as the agent will decode them: refused here, not on the PC
                parse_checks(checks, self.source, f"shared systems for {commune}/{agent}",
                             remote=True)  # fmt: skip
            except ConfigError as exc:
                raise ProfileError(str(exc)) from None
        return Effective(name, interval, checks)

    def _with_systems(
        self, checks: dict[str, list[dict[str, Any]]], commune: str, agent: str,
        own: dict[str, Any],
    ) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
        """``checks`` and the probes of the shared systems ``commune`` uses. The probes
        are made from the catalogue, checked when it was loaded; a ``[[checks.system]]``
        of the same name written in the profile or the agent's table stays instead, and
        the agent's ``remove = ["system:<id>"]`` drops one."""
        assert self.systems is not None
        removed = set(own.get("remove", []))
        names = {
            str(o.get("name") or kind): kind for kind, entries in checks.items() for o in entries
        }
        probes = []
        for probe in self.systems.probes(commune):
            if f"system:{probe['name']}" in removed or names.get(probe["name"]) == "system":
                continue
            if probe["name"] in names:
                raise ProfileError(
                    f"{self.source}: checks for {commune}/{agent}: the shared system "
                    f"{probe['name']!r} has the name of its {names[probe['name']]} check: "
                    "rename one (check names are unique on an agent)"
                )
            probes.append(probe)
        if not probes:
            return checks
        return {**checks, "system": [*checks.get("system", []), *probes]}

    def check(self) -> None:
        """Every profile for every listed commune, and every agent's own, resolve."""
        places = sorted(self.communes) or ["(any commune)"]
        for name in self.profiles:
            for commune in places:
                self.effective(commune, "(an agent)", name)
        for key, own in self.agents.items():
            commune, agent = key.split("/", 1)
            for name in [own["profile"]] if own.get("profile") else list(self.profiles):
                self.effective(commune, agent, str(name))
        self._check_systems()

    def _check_systems(self) -> None:
        """Probing asks for a catalogue; a commune names one agent to probe at most."""
        if self.systems is None:
            for name, profile in self.profiles.items():
                if profile["systems"]:
                    raise ProfileError(
                        f"{self.source}: profiles.{name}.systems: no catalogue of shared "
                        f"systems for {self.province}: add its file to [collector] systems"
                    )
        named: dict[str, str] = {}
        for key, own in self.agents.items():
            commune, agent = key.split("/", 1)
            if own.get("systems") is not True:
                continue
            if self.systems is None:
                raise ProfileError(
                    f"{self.source}: agents.{key}.systems: no catalogue of shared systems "
                    f"for {self.province}: add its file to [collector] systems"
                )
            if commune in named:
                raise ProfileError(
                    f"{self.source}: agents.{key}.systems: {named[commune]} of {commune} "
                    "probes the shared systems already: one agent per commune does"
                )
            named[commune] = agent


def _substituted(
    checks: dict[str, list[dict[str, Any]]], values: dict[str, Value], where: str, commune: str
) -> dict[str, list[dict[str, Any]]]:
    def resolve(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = WHOLE_VAR.fullmatch(value)
        if whole:
            return lookup(whole[1], key)
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(lookup(m[1], key)), value)

    def lookup(name: str, key: str) -> Value:
        if name not in values:
            raise ProfileError(
                f"{where}.{key}: ${{{name}}} is not set for commune {commune} "
                f"(set communes.{commune}.{name}, or vars.{name})"
            )
        return values[name]

    return {
        kind: [resolve(options, f"checks.{kind}[{i}]") for i, options in enumerate(entries)]
        for kind, entries in checks.items()
    }


def _overridden(
    base: dict[str, list[dict[str, Any]]],
    own: dict[str, list[dict[str, Any]]],
    settings: dict[str, Any],
) -> dict[str, list[dict[str, Any]]]:
    removed = set(settings.get("remove", []))
    merged: dict[str, list[dict[str, Any]]] = {}
    for kind in dict.fromkeys([*base, *own]):
        mine = {str(o.get("name") or kind): o for o in own.get(kind, [])}
        entries = [
            mine.pop(str(o.get("name") or kind), o)
            for o in base.get(kind, [])
            if f"{kind}:{o.get('name') or kind}" not in removed
        ]
        entries += list(mine.values())
        if entries:
            merged[kind] = entries
    return merged


def secret_path(secrets: Path, name: object, where: str) -> Path:
    """The file a ``{ secret_file = name }`` names, inside ``secrets``; ProfileError
    naming ``where`` (the key) for anything that would read another file."""

    def refuse(why: str) -> ProfileError:
        return ProfileError(f"{where}: {why}: name a file in the secrets folder {secrets}")

    if not isinstance(name, str) or not name.strip():
        raise refuse("expected a file name")
    # Either system's absolute forms (/etc, \\server\share, C:\...), wherever this runs.
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise refuse(f"{name!r} is an absolute path")
    if ".." in re.split(r"[\\/]", name):
        raise refuse(f"{name!r} goes up with '..'")
    folder = secrets.resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder):
        raise refuse(f"{name!r} is a link to {path}, outside it")
    return path


def _values(table: Any, where: str, secrets: Path) -> dict[str, Value]:
    if not isinstance(table, dict):
        raise ProfileError(f"{where}: expected a table of values")
    values: dict[str, Value] = {}
    for name, value in table.items():
        if not VAR_NAME.fullmatch(name):
            raise ProfileError(f"{where}.{name}: a name of lower-case letters, digits and '_'")
        if isinstance(value, dict) and set(value) == {"secret_file"}:
            path = secret_path(secrets, value["secret_file"], f"{where}.{name}.secret_file")
            try:
                values[name] = read_secret(path)
            except (OSError, ValueError) as exc:
                raise ProfileError(
                    f"{where}.{name}.secret_file: cannot read {path}: {exc}"
                ) from None
        elif isinstance(value, str | int | float | bool):
            values[name] = value
        else:
            raise ProfileError(f"{where}.{name}: a string, a number, true/false or {{secret_file}}")
    return values


def _interval(value: Any, where: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise ProfileError(f"{where}: {exc}") from None
    if not 1.0 <= seconds <= 86400.0:
        raise ProfileError(f"{where}: between 1s and 1d")
    return seconds


KNOWN = {"province", "vars", "profiles", "communes", "agents"}
PROFILE_KEYS = {"interval", "checks", "systems"}
AGENT_KEYS = {"profile", "interval", "checks", "remove", "vars", "systems"}


def _flag(table: dict[str, Any], where: str) -> bool | None:
    value = table.get("systems")
    if value is not None and not isinstance(value, bool):
        raise ProfileError(f"{where}.systems: true or false")
    return value


def parse_profiles(
    data: dict[str, Any], source: str, secrets: Path, systems: Catalogue | None = None
) -> ProvinceProfiles:
    """``secrets``: the folder ``{ secret_file = ... }`` values are read from;
    ``systems``: the province's shared systems, for the profiles that probe them."""
    unknown = set(data) - KNOWN
    if unknown:
        raise ProfileError(f"{source}: {sorted(unknown)[0]}: unknown key")
    province = data.get("province")
    if not isinstance(province, str) or not re.fullmatch(IDENT_PATTERN, province):
        raise ProfileError(f'{source}: province: the province\'s slug, e.g. "dong-nai"')
    profiles: dict[str, dict[str, Any]] = {}
    for name, table in _tables(data.get("profiles", {}), f"{source}: profiles").items():
        where = f"{source}: profiles.{name}"
        if not re.fullmatch(IDENT_PATTERN, name):
            raise ProfileError(f"{where}: a profile name of letters, digits, '-' or '_'")
        _only(table, PROFILE_KEYS, where)
        checks = table.get("checks", {})
        if not isinstance(checks, dict):
            raise ProfileError(f"{where}.checks: a table of check kinds")
        profiles[name] = {"interval": _interval(table.get("interval"), f"{where}.interval")}
        profiles[name]["checks"] = checks
        profiles[name]["systems"] = bool(_flag(table, where))
    if not profiles:
        raise ProfileError(f"{source}: profiles: at least one profile")
    communes = {
        slug: _values(table, f"{source}: communes.{slug}", secrets)
        for slug, table in _tables(data.get("communes", {}), f"{source}: communes").items()
    }
    for slug in communes:
        if not re.fullmatch(IDENT_PATTERN, slug):
            raise ProfileError(f"{source}: communes.{slug}: a commune's slug")
    agents: dict[str, dict[str, Any]] = {}
    for key, table in _tables(data.get("agents", {}), f"{source}: agents").items():
        where = f"{source}: agents.{key}"
        commune, _, agent = key.partition("/")
        if not (re.fullmatch(IDENT_PATTERN, commune) and re.fullmatch(IDENT_PATTERN, agent)):
            raise ProfileError(f'{where}: named "<commune>/<agent>"')
        _only(table, AGENT_KEYS, where)
        own = dict(table)
        own["interval"] = _interval(table.get("interval"), f"{where}.interval")
        own["vars"] = _values(table.get("vars", {}), f"{where}.vars", secrets)
        own["systems"] = _flag(table, where)
        remove = table.get("remove", [])
        if not isinstance(remove, list) or not all(isinstance(r, str) and ":" in r for r in remove):
            raise ProfileError(f'{where}.remove: a list of "kind:name"')
        agents[key] = own
    loaded = ProvinceProfiles(
        province,
        source,
        profiles,
        _values(data.get("vars", {}), f"{source}: vars", secrets),
        communes,
        agents,
        systems if systems is not None and systems.province == province else None,
    )
    loaded.check()
    return loaded


def _tables(value: Any, where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ProfileError(f"{where}: a table of tables")
    return value


def _only(table: dict[str, Any], keys: set[str], where: str) -> None:
    unknown = set(table) - keys
    if unknown:
        raise ProfileError(f"{where}.{sorted(unknown)[0]}: unknown key (known: {sorted(keys)})")


def load_profiles(
    path: str | Path, secrets_dir: str = "", systems: Mapping[str, Catalogue] | None = None
) -> ProvinceProfiles:
    """``secrets_dir``: where secret files are ("" : the profiles file's folder);
    ``systems``: every province's shared systems."""
    path = Path(path)
    data = copy.deepcopy(read_toml(path))
    province = data.get("province")
    catalogue = (systems or {}).get(province) if isinstance(province, str) else None
    return parse_profiles(data, str(path), secrets_folder(path, secrets_dir), catalogue)


def secrets_folder(path: Path, secrets_dir: str = "") -> Path:
    return Path(secrets_dir) if secrets_dir else path.parent


@dataclass
class Profiles:
    """Every province's profiles the collector was given, by province."""

    provinces: dict[str, ProvinceProfiles] = field(default_factory=dict)
    renames: dict[tuple[str, str], str] = field(default_factory=dict)
    """(province, former slug) -> slug now: an agent enrolled under a commune's former
    slug gets the commune's values (``communes.<slug now>``, ``agents.<slug now>/<id>``)."""

    def effective(
        self, province: str, commune: str, agent: str, profile: str, probes: bool | None = None
    ) -> Effective:
        found = self.provinces.get(province)
        if found is None:
            raise ProfileError(f"no check profiles for province {province!r}")
        commune = self.renames.get((province, commune), commune)
        return found.effective(commune, agent, profile, probes)

    def has(self, province: str, profile: str) -> bool:
        found = self.provinces.get(province)
        return found is not None and profile in found.profiles

    def probers(self, agents: Iterable[Candidate]) -> set[str]:
        """The agents (keys) that probe the shared systems: per commune, the one its own
        table names (``systems = true``), else the first enrolled of those whose profile
        says so. Two pollers enrolled in one commune never both probe."""
        chosen: dict[tuple[str, str], tuple[tuple[bool, float, str], str]] = {}
        for candidate in agents:
            found = self.provinces.get(candidate.province)
            commune = self.renames.get((candidate.province, candidate.commune), candidate.commune)
            if found is None or found.systems is None:
                continue
            try:
                probes, named = found.probes(commune, candidate.agent, candidate.profile)
            except ProfileError:  # the agent's config fails too, and says why
                continue
            if not probes:
                continue
            rank = (not named, candidate.enrolled_at, candidate.agent_key)
            place = (candidate.province, commune)
            if place not in chosen or rank < chosen[place][0]:
                chosen[place] = (rank, candidate.agent_key)
        return {key for _, key in chosen.values()}


@dataclass(frozen=True)
class Candidate:
    """An enrolled agent, as ``Profiles.probers`` weighs it."""

    province: str
    commune: str
    agent: str
    profile: str
    enrolled_at: float

    @property
    def agent_key(self) -> str:
        return f"{self.province}/{self.commune}/{self.agent}"


def load_all(
    paths: list[str],
    renames: dict[tuple[str, str], str] | None = None,
    secrets_dir: str = "",
    systems: Mapping[str, Catalogue] | None = None,
) -> Profiles:
    """``systems``: every province's shared systems (``[collector] systems``)."""
    loaded = Profiles(renames=dict(renames or {}))
    for path in paths:
        province = load_profiles(path, secrets_dir, systems)
        if province.province in loaded.provinces:
            raise ProfileError(
                f"{path}: province {province.province} has profiles in "
                f"{loaded.provinces[province.province].source} already"
            )
        loaded.provinces[province.province] = province
    return loaded
