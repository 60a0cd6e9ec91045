"""Where each file a collector cannot lose lives, by role, as a config names it.

A role is a stable name ("mqtt.password_file", "collector.inventory[0]",
"releases.path"): the archive records files by role, and a restore writes each to
where the CURRENT config says that role lives, so a host with other paths works.
A folder role ("releases.path", "enrollment.secrets_dir") holds files named relative
to it ("releases.path/metadata/1.root.json").

The release root and targets keys are never here: they are offline, never on the
collector (deploy/OPERATIONS.md, "Who holds which key").
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.config import CollectorConfig
from collector.rollout.configkey import key_path, next_path

STORE = "store"
CONFIG = "config"
DYNSEC = "broker.dynamic_security"

#: The online release keys (and their public halves) in ``[releases] online_keys_dir``;
#: release-root.key and release-targets.key are deliberately absent.
ONLINE_KEY_FILES = (
    "release-snapshot.key",
    "release-snapshot.key.pub",
    "release-timestamp.key",
    "release-timestamp.key.pub",
)


@dataclass(frozen=True)
class Place:
    """A role and where it lives. ``folder``: a folder role; ``names``: only these files
    of it (None: every regular file under it)."""

    role: str
    path: Path
    folder: bool = False
    names: tuple[str, ...] | None = None


def places(
    config: CollectorConfig,
    config_path: Path,
    dynsec: Path | None = None,
    profiles: dict[int, Path] | None = None,
) -> list[Place]:
    """Every place the config names that holds state or a secret (the store first).
    ``profiles``: the profiles files to read the secrets' names from, by index (a
    restore onto a new host: the archive's copies, the files not being there yet)."""
    found = [Place(STORE, Path(config.store.path)), Place(CONFIG, config_path)]
    found += [Place(role, Path(path)) for role, path in _named_files(config) if path]
    found += _folders(config, profiles or {})
    if dynsec is not None:
        found.append(Place(DYNSEC, dynsec))
    return found


def _named_files(config: CollectorConfig) -> Iterator[tuple[str, str]]:
    for section, broker in (("mqtt", config.mqtt), ("dynsec", config.dynsec)):
        if broker is None:
            continue
        for key in ("password_file", "ca_file", "cert_file", "key_file"):
            yield f"{section}.{key}", str(getattr(broker, key))
    yield "console.secret_file", config.console.secret_file
    yield "api.tls_cert_file", config.api.tls_cert_file
    yield "api.tls_key_file", config.api.tls_key_file
    if config.sink is not None:
        yield "sink.token_file", config.sink.token_file
    for index, path in enumerate(config.collector.inventory):
        yield f"collector.inventory[{index}]", path
    for index, path in enumerate(config.collector.systems):
        yield f"collector.systems[{index}]", path
    for index, path in enumerate(config.alerts.rules):
        yield f"alerts.rules[{index}]", path
    for route in config.alerts.routes:
        where = f"alerts.routes[{route.name}]"
        yield f"{where}.urls_file", route.urls_file
        if route.zalo is not None:
            yield f"{where}.zalo.secret_key_file", route.zalo.secret_key_file
            yield f"{where}.zalo.token_file", route.zalo.token_file
    enrollment = config.enrollment
    if enrollment is not None:
        for key in ("broker_ca_file", "client_ca_cert_file", "client_ca_key_file",
                    "client_crl_file"):  # fmt: skip
            yield f"enrollment.{key}", str(getattr(enrollment, key))
        for index, path in enumerate(enrollment.profiles):
            yield f"enrollment.profiles[{index}]", path
        signing = key_path(enrollment.config_key_file, config.store.path)
        yield "enrollment.config_key_file", str(signing)
        yield "enrollment.config_key_file.next", str(next_path(signing))


def _folders(config: CollectorConfig, profiles: dict[int, Path]) -> list[Place]:
    found: list[Place] = []
    enrollment = config.enrollment
    if enrollment is not None and enrollment.secrets_dir:
        found.append(Place("enrollment.secrets_dir", Path(enrollment.secrets_dir), folder=True))
    elif enrollment is not None:
        # Without secrets_dir, profiles read their secrets beside themselves: only the
        # files they name are taken, not the whole folder (often /etc/commune-collector).
        for index, path in enumerate(enrollment.profiles):
            names = tuple(sorted(_secret_names(profiles.get(index, Path(path)))))
            if names:
                found.append(Place(f"enrollment.profiles[{index}].secrets", Path(path).parent,
                                   folder=True, names=names))  # fmt: skip
    releases = config.releases
    found.append(Place("releases.path", releases.repository_path(config.store.path), folder=True))
    found.append(Place("releases.online_keys_dir", releases.keys_dir(config.store.path),
                       folder=True, names=ONLINE_KEY_FILES))  # fmt: skip
    return found


def _secret_names(profiles: Path) -> set[str]:
    """The ``{ secret_file = name }`` a profiles file names (unreadable: none; its
    own check at the collector's start says why)."""
    try:
        data = tomllib.loads(profiles.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"secret_file"} and isinstance(value["secret_file"], str):
                names.add(value["secret_file"])
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return names


def safe_relative(name: str) -> bool:
    """A name inside a folder role: relative, no '..', no empty or '.' parts."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def target(role: str, current: list[Place]) -> Path | None:
    """Where ``role`` lives by the current places; None when they have no place for it
    (or the name inside a folder role is not a plain relative one)."""
    for place in current:
        if role == place.role and not place.folder:
            return place.path
        prefix = place.role + "/"
        if place.folder and role.startswith(prefix):
            name = role[len(prefix) :]
            if not safe_relative(name):
                return None
            if place.names is not None and name not in place.names:
                # Only the files the place holds: never a root or targets key in the
                # online keys' folder, never a file the profiles do not name beside them.
                return None
            return place.path / name
    return None
