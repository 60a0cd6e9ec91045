"""``commune-collector restore``: a verified archive written where the current config
says each role lives.

Nothing is written before the whole archive matched its manifest, its store was
found readable by this collector (not from a newer one) and no process had the
target store open. Each file is written atomically (temporary file, rename), with
its mode and, as root, its owner from the archive (or the existing file's); the
store's stale -wal and -shm go first, so that no old log is replayed into the new file.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from collector.backup import archive
from collector.backup.archive import ArchiveError, Entry, Verified
from collector.backup.places import CONFIG, STORE, Place, target
from collector.backup.storecopy import schema_of
from collector.state import migrations


@dataclass(frozen=True)
class Step:
    entry: Entry
    target: Path | None
    """None: the current config has no place for this role (or --dynsec is not given)."""
    note: str = ""
    """Why nothing is written although there is a place (the same file is there)."""


def check_schema(verified: Verified) -> int:
    """The archived store's schema; ArchiveError for a store of a newer collector."""
    stores = [e for e in verified.manifest.entries if e.role == STORE]
    if len(stores) != 1:
        raise ArchiveError(f"{verified.archive}: expected one state store, found {len(stores)}")
    try:
        schema = schema_of(verified.file(stores[0]))
    except Exception as exc:
        raise ArchiveError(f"{verified.archive}: {exc}") from None
    if schema > migrations.LATEST:
        raise ArchiveError(
            f"{verified.archive}: its state store is at schema version {schema}, written by "
            f"a newer collector; this one knows up to {migrations.LATEST}: restore with that "
            "collector's version or newer (nothing was written)"
        )
    return schema


def plan(verified: Verified, current: list[Place], config_path: Path) -> list[Step]:
    """Where each archived file goes by the current places. The config itself is never
    written over an existing one: its archived copy goes beside it (``.restored``)."""
    steps: list[Step] = []
    for entry in verified.manifest.entries:
        if entry.role == CONFIG:
            if config_path.exists() and _digest(config_path) == entry.sha256:
                steps.append(Step(entry, None, f"{config_path} is the archive's config"))
            elif config_path.exists():
                steps.append(Step(entry, config_path.with_name(config_path.name + ".restored")))
            else:
                steps.append(Step(entry, config_path))
        else:
            steps.append(Step(entry, target(entry.role, current)))
    return steps


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply(verified: Verified, steps: list[Step]) -> None:
    """Every step with a target written (the store last: a restore stopped halfway
    leaves the old store in place, with the collector's files already restored)."""
    ordered = sorted(steps, key=lambda step: step.entry.role == STORE)
    for step in ordered:
        if step.target is None:
            continue
        write_one(verified.file(step.entry), step.entry, step.target)


def _make_folders(folder: Path) -> None:
    """``folder`` and its missing parents, each with its parent's owner, group and mode:
    a folder made under the collector's state folder is the collector's, one under
    /etc/commune-collector root's and readable by the collector's group."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        parent = made.parent.stat()
        made.mkdir(mode=0o700)
        os.chmod(made, parent.st_mode & 0o777)
        if os.geteuid() == 0:
            os.chown(made, parent.st_uid, parent.st_gid)


def write_one(source: Path, entry: Entry, path: Path) -> None:
    _make_folders(path.parent)
    owner = _owner(entry, path)
    if entry.role == STORE:
        for stale in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    # Never setuid/setgid/sticky, whatever the archive says.
    archive.copy_into(source, path, entry.mode & 0o777)
    if owner is not None:
        os.chown(path, *owner)


def _owner(entry: Entry, path: Path) -> tuple[int, int] | None:
    """As root: the existing file's owner, else the archive's if known here."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        return st.st_uid, st.st_gid
    return archive.owner_ids(entry)
