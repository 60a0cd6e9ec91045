"""The province's shared systems, from a TOML file beside its inventory.

Every commune office works through the same few systems the province runs (the
one-stop shop, document management, official email...) and through its own website.
The catalogue says what each one is, where it answers, on which network, what a
healthy answer looks like and whose it is; the check profiles turn it into the
``[[checks.system]]`` probes of one agent per commune (``rollout/profiles.py``).

It is parsed strictly, like the inventory: an unknown key, an entry without a URL,
an unknown network or kind, a duplicate id, a commune the inventory does not list
are refused, naming the entry and the key. A name that does not resolve is not a
config error: the probe reports the system down.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from agent.configtypes import ConfigError, convert_strict, read_toml
from agent.wire import IDENT_PATTERN, Ident, whole
from collector.common.filestamps import file_stamps
from collector.state.inventory import Inventory

log = logging.getLogger(__name__)

Kind = Literal[
    "one-stop", "documents", "email", "meetings", "reporting", "website", "land", "lgsp",
    "ioc", "other",
]  # fmt: skip
Network = Literal["tslcd", "internet"]

#: The check name a commune's own website is probed under (one per commune).
WEBSITE = "website"

SystemId = Annotated[str, msgspec.Meta(pattern=whole(r"[a-z0-9][a-z0-9-]{0,63}"))]
#: Text people read (in the console, the report, a message): one line, no control
#: characters.
_ONE_LINE = whole(r"[^\x00-\x1f\x7f]*")
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_ONE_LINE)]
Line = Annotated[str, msgspec.Meta(max_length=200, pattern=_ONE_LINE)]
Status = Annotated[int, msgspec.Meta(ge=100, le=599)]
Statuses = Annotated[list[Status], msgspec.Meta(max_length=20)]
#: Bounded: the probe looks for it in every answer from every commune.
ExpectText = Annotated[str, msgspec.Meta(max_length=200, pattern=_ONE_LINE)]
CertDays = Annotated[int, msgspec.Meta(ge=1, le=365)]
SlowMs = Annotated[int, msgspec.Meta(ge=100, le=120_000)]
#: A healthy answer slower than this is "slow" (DongNai.LIS took minutes a page).
SLOW_MS = 3000
Url = Annotated[str, msgspec.Meta(max_length=2000)]
Host = Annotated[str, msgspec.Meta(max_length=253)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Route = Annotated[str, msgspec.Meta(max_length=64)]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*$")


class System(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: SystemId
    """The probe's check name on every agent, and the system's name in the API."""
    name: Name
    """What the communes call it, in Vietnamese."""
    kind: Kind
    url: Url = ""
    """An HTTP(S) system's address; or ``host`` and ``port`` for one with no HTTP face."""
    host: Host = ""
    port: Port | None = None
    network: Network
    """Which network reaches it from a commune office: the dedicated line or the Internet."""
    expect_status: Statuses = []
    """Healthy answers; empty: any 2xx or 3xx."""
    expect_text: ExpectText = ""
    """Text a healthy page holds: a login or captive page answers 200 too."""
    cert_min_days: CertDays = 14
    """A certificate closer than this to its end is an alert."""
    slow_ms: SlowMs = SLOW_MS
    """A healthy answer (total time; connect time by TCP) slower than this is slow."""
    owner: Line = ""
    route: Route = ""
    """The [[alerts.routes]] its owner is told on; empty: the ordinary routes."""
    communes: Annotated[list[Ident], msgspec.Meta(max_length=2000)] = []
    """The communes that use it; empty: every commune of the inventory."""

    @property
    def target(self) -> str:
        return self.url or f"{self.host}:{self.port}"


class Website(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    commune: Ident
    url: Url
    name: Line = ""
    """Default "Trang thông tin điện tử " and the commune's name in the inventory."""
    network: Network = "internet"
    expect_status: Statuses = []
    expect_text: ExpectText = ""
    cert_min_days: CertDays = 14
    slow_ms: SlowMs = SLOW_MS
    owner: Line = ""
    route: Route = ""


class Catalogue(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    province: Ident
    systems: Annotated[list[System], msgspec.Meta(max_length=200)] = []
    websites: Annotated[list[Website], msgspec.Meta(max_length=5000)] = []

    def used_by(self, system: System, inventory: Inventory | None) -> list[str]:
        """The communes that use ``system``: its own list, or every commune."""
        if system.communes:
            return list(system.communes)
        return [c.slug for c in inventory.communes] if inventory else []

    def website(self, commune: str) -> Website | None:
        return next((w for w in self.websites if w.commune == commune), None)

    def probes(self, commune: str) -> list[dict[str, Any]]:
        """The ``[[checks.system]]`` entries of the agent that probes for ``commune``:
        every system it uses, in the file's order, then its website."""
        entries = [
            _probe(s.id, s.name, s.kind, s.network, s.url, s.host, s.port, s.expect_status,
                   s.expect_text)
            for s in self.systems
            if not s.communes or commune in s.communes
        ]  # fmt: skip
        site = self.website(commune)
        if site is not None:
            entries.append(
                _probe(WEBSITE, site.name, "website", site.network, site.url, "", None,
                       site.expect_status, site.expect_text)
            )  # fmt: skip
        return entries

    def summary(self) -> str:
        """ "9 shared systems, 95 websites"."""
        systems, sites = len(self.systems), len(self.websites)
        return (
            f"{systems} shared system{'s' if systems != 1 else ''}, "
            f"{sites} website{'s' if sites != 1 else ''}"
        )


def _probe(
    id_: str, name: str, kind: str, network: str, url: str, host: str, port: int | None,
    status: list[int], text: str,
) -> dict[str, Any]:  # fmt: skip
    """One probe in the keys of the agent's ``system`` check (the contract of issue 25)."""
    entry: dict[str, Any] = {"name": id_}
    if url:
        entry["url"] = url
    else:
        entry["host"], entry["port"] = host, port
    entry["network"] = network
    if url:
        if status:
            entry["expect_status"] = list(status)
        if text:
            entry["expect_text"] = text
        entry["verify_tls"] = True
    entry["system"] = name
    entry["kind"] = kind
    return entry


def _url_problem(url: str) -> str:
    """Why ``url`` cannot be probed ("" when it can)."""
    if any(c.isspace() or ord(c) < 32 for c in url):
        return f"expected a URL without spaces or control characters, got {url!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected http(s)://host/..., got {url!r}"
    if parts.username is not None or parts.password is not None:
        return "no user or password in the URL: it travels to every probing agent"
    try:
        parts.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError:
        return f"the port of {url!r} is not a port"
    return ""


def _host_problem(host: str) -> str:
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    if _HOSTNAME.fullmatch(host):
        return ""
    return f"expected a host name or an address, got {host!r}"


_ENTRY = re.compile(r"^(?P<head>.*?: )(?P<table>systems|websites)\[(?P<index>[0-9]+)\]")


def _named(message: str, data: dict[str, Any]) -> str:
    """msgspec's "systems[3].foo: unknown key" with the entry's id or commune added."""
    match = _ENTRY.match(message)
    if match is None:
        return message
    table, index = match["table"], int(match["index"])
    entries = data.get(table)
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else None
    key = "id" if table == "systems" else "commune"
    label = entry.get(key) if isinstance(entry, dict) else None
    # Only a label that is a slug: the entry's own text may be what is wrong with it.
    if not isinstance(label, str) or not re.fullmatch(IDENT_PATTERN, label):
        return message
    return f"{match[0]} ({label}){message[match.end() :]}"


def parse_catalogue(
    data: dict[str, Any],
    source: str,
    inventory: Inventory | None,
    routes: Iterable[str] | None = None,
) -> Catalogue:
    """Decoded strictly, then checked against the province's ``inventory`` (the communes
    named exist) and, when given, the collector's alert ``routes``."""
    try:
        catalogue = convert_strict(data, Catalogue, source)
    except ConfigError as exc:
        raise ConfigError(_named(str(exc), data)) from None
    if inventory is None or inventory.province != catalogue.province:
        raise ConfigError(
            f"{source}: province: no inventory for {catalogue.province!r} ([collector] "
            "inventory): the catalogue's communes are the inventory's"
        )
    known = {c.slug for c in inventory.communes}
    former = {old: c.slug for c in inventory.communes for old in c.formerly}
    route_names = None if routes is None else sorted(set(routes))
    seen: dict[str, int] = {}
    for index, system in enumerate(catalogue.systems):
        where = f"{source}: systems[{index}] ({system.id})"
        if system.id in seen:
            raise ConfigError(
                f"{where}.id: {system.id!r} is listed twice (also systems[{seen[system.id]}])"
            )
        seen[system.id] = index
        if system.id == WEBSITE:
            raise ConfigError(
                f"{where}.id: {WEBSITE!r} is the communes' own sites' name: list them under "
                "[[websites]], or choose another id"
            )
        _check_address(system, where)
        _check_communes(system.communes, known, former, f"{where}.communes")
        _check_route(system.route, route_names, f"{where}.route")
    communes: dict[str, int] = {}
    sites: list[Website] = []
    for index, site in enumerate(catalogue.websites):
        where = f"{source}: websites[{index}] ({site.commune})"
        if site.commune not in known:
            raise ConfigError(f"{where}.commune: {_unknown(site.commune, former)}")
        if site.commune in communes:
            raise ConfigError(
                f"{where}.commune: {site.commune} has a website already "
                f"(websites[{communes[site.commune]}]): one per commune"
            )
        communes[site.commune] = index
        problem = _url_problem(site.url)
        if problem:
            raise ConfigError(f"{where}.url: {problem}")
        _check_route(site.route, route_names, f"{where}.route")
        commune = inventory.commune(site.commune)
        assert commune is not None
        named = site.name or f"Trang thông tin điện tử {commune.name}"
        sites.append(msgspec.structs.replace(site, name=named))
    return msgspec.structs.replace(catalogue, websites=sites)


def _check_address(system: System, where: str) -> None:
    """A URL, or a host and a port: one of the two, and only what it can be judged by."""
    if system.url and (system.host or system.port is not None):
        raise ConfigError(f"{where}.url: either url, or host and port, not both")
    if system.url:
        problem = _url_problem(system.url)
        if problem:
            raise ConfigError(f"{where}.url: {problem}")
        return
    if not system.host and system.port is None:
        raise ConfigError(
            f'{where}.url: required key is missing (or host = "..." and port = N for a '
            "system with no HTTP face)"
        )
    if not system.host:
        raise ConfigError(f"{where}.host: required with port")
    if system.port is None:
        raise ConfigError(f"{where}.port: required with host")
    problem = _host_problem(system.host)
    if problem:
        raise ConfigError(f"{where}.host: {problem}")
    for key in ("expect_status", "expect_text"):
        if getattr(system, key):
            raise ConfigError(
                f"{where}.{key}: a system probed by host and port is judged by its TCP "
                "connection alone (no status, no page)"
            )


def _unknown(slug: str, former: Mapping[str, str]) -> str:
    if slug in former:
        return f"{slug!r} is the former slug of {former[slug]!r}: write {former[slug]!r}"
    return f"{slug!r} is no commune of the inventory"


def _check_communes(
    slugs: list[str], known: set[str], former: Mapping[str, str], where: str
) -> None:
    listed: set[str] = set()
    for slug in slugs:
        if slug not in known:
            raise ConfigError(f"{where}: {_unknown(slug, former)}")
        if slug in listed:
            raise ConfigError(f"{where}: {slug!r} is listed twice")
        listed.add(slug)


def _check_route(route: str, names: list[str] | None, where: str) -> None:
    if route and names is not None and route not in names:
        raise ConfigError(
            f"{where}: no [[alerts.routes]] named {route!r} in the collector's config "
            f"(routes: {', '.join(names) or 'none'})"
        )


def load_catalogue(
    path: str | Path, inventory: Inventory | None, routes: Iterable[str] | None = None
) -> Catalogue:
    return parse_catalogue(read_toml(path), str(path), inventory, routes)


def load_catalogues(
    paths: Iterable[str | Path],
    inventories: Iterable[Inventory],
    routes: Iterable[str] | None = None,
) -> dict[str, Catalogue]:
    """Each province's catalogue (one file per province); ConfigError naming the file."""
    by_province = {i.province: i for i in inventories}
    route_names = None if routes is None else list(routes)
    loaded: dict[str, tuple[Catalogue, str]] = {}
    for path in paths:
        province = _province_of(path)
        catalogue = load_catalogue(path, by_province.get(province), route_names)
        if catalogue.province in loaded:
            raise ConfigError(
                f"{path}: province: {catalogue.province!r} has a catalogue in "
                f"{loaded[catalogue.province][1]} already"
            )
        loaded[catalogue.province] = (catalogue, str(path))
    return {province: catalogue for province, (catalogue, _) in loaded.items()}


def _province_of(path: str | Path) -> str:
    """The ``province`` a file says, to find its inventory before decoding the rest."""
    value = read_toml(path).get("province")
    return value if isinstance(value, str) else ""


@dataclass
class _Loaded:
    catalogues: dict[str, Catalogue]
    stamps: tuple[tuple[int, int], ...]


class SystemFiles:
    """The loaded catalogues, read again when a file changes on disk (an invalid one is
    not applied: the previous catalogue goes on). ``generation`` goes up at each change
    applied, so that each user (the check profiles, the API) sees it once."""

    def __init__(
        self,
        paths: Iterable[str],
        inventories: Iterable[Inventory] = (),
        routes: Iterable[str] | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.inventories = tuple(inventories)
        self.routes = None if routes is None else tuple(routes)
        self._lock = threading.Lock()
        stamps = self._stat()
        self._loaded = _Loaded(self._load(), stamps)
        self.generation = 0
        self.error = ""
        """Why the files on disk are not what runs ("" when they are)."""

    def _load(self) -> dict[str, Catalogue]:
        return load_catalogues(self.paths, self.inventories, self.routes)

    def _stat(self) -> tuple[tuple[int, int], ...]:
        return file_stamps(self.paths)

    def __call__(self) -> dict[str, Catalogue]:
        return self._loaded.catalogues

    def reload_if_changed(self) -> bool:
        """True when a file changed and the catalogues it holds now apply."""
        with self._lock:
            stamps = self._stat()
            if stamps == self._loaded.stamps:
                return False
            try:
                catalogues = self._load()
            except (ConfigError, OSError) as exc:
                self._loaded = _Loaded(self._loaded.catalogues, stamps)
                self.error = str(exc)
                log.error("shared systems not applied (the previous ones still run): %s", exc)
                return False
            self._loaded = _Loaded(catalogues, stamps)
            self.error = ""
            self.generation += 1
            log.info("shared systems reloaded from %s", ", ".join(self.paths))
            return True
