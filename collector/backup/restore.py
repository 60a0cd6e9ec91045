"""``commune-collector restore``: a verified archive written where the current config
says each role lives.

Nothing is written before the whole archive matched its manifest, its store was
found readable by this collector (not from a newer one) and no process had the
target store open; nor when two roles would land on one file, or a role on the config
or the store. Each file is written atomically (``safewrite``: no link followed that
another account could have planted), with the existing file's owner and mode when
there is one, else the archive's mode without execute or world-write bits and, as
root, its owner; the store's stale -wal and -shm go just before its rename, so that no
old log is replayed into the new file and a failed copy leaves the old store whole.

The manifest's hashes find damage, not tampering: whoever can rewrite an archive can
rewrite its manifest. Keep archives where only root writes (OPERATIONS.md, "Backups").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from collector.backup import archive, safewrite
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
    _refuse_collisions(verified, steps, config_path)
    return steps


def _refuse_collisions(verified: Verified, steps: list[Step], config_path: Path) -> None:
    """Two roles on one file, or a role on the config or the store: a crafted (or
    confused) archive; refused whole, before anything is written."""
    seen: dict[str, str] = {}
    store = next((s.target for s in steps if s.entry.role == STORE and s.target), None)
    guarded = {os.path.normpath(config_path.absolute()): CONFIG}
    if store is not None:
        guarded[os.path.normpath(store.absolute())] = STORE
    for step in steps:
        if step.target is None:
            continue
        where = os.path.normpath(step.target.absolute())
        owner = guarded.get(where)
        if owner is not None and owner != step.entry.role:
            raise ArchiveError(
                f"{verified.archive}: {step.entry.role} would be written over the {owner} "
                f"({where}): refused, nothing was written"
            )
        if where in seen:
            raise ArchiveError(
                f"{verified.archive}: {step.entry.role} and {seen[where]} would both be "
                f"written to {where}: refused, nothing was written"
            )
        seen[where] = step.entry.role


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply(verified: Verified, steps: list[Step]) -> None:
    """Every step with a target written (the store last: a restore stopped halfway
    leaves the old store in place, with the collector's files already restored)."""
    for step in steps:  # every target's way checked before the first file is written
        if step.target is not None:
            try:
                safewrite.check_reachable(step.target.parent)
            except safewrite.UnsafePath as exc:
                raise ArchiveError(f"{step.entry.role}: {exc}; nothing was written") from None
    ordered = sorted(steps, key=lambda step: step.entry.role == STORE)
    for step in ordered:
        if step.target is None:
            continue
        write_one(verified.file(step.entry), step.entry, step.target)


#: An archived mode is kept without execute, setuid/setgid/sticky or world-write bits.
MODE_MASK = 0o664


def write_one(source: Path, entry: Entry, path: Path) -> None:
    """One file: owner and mode from the same place (the file there, else the archive),
    so a secret is never left wider or locked away from the collector's group."""
    mode, owner = _mode_and_owner(entry, path)
    stale = tuple(f"{path.name}{suffix}" for suffix in ("-wal", "-shm", "-journal"))
    try:
        safewrite.write(source, path, mode, owner, stale if entry.role == STORE else ())
    except safewrite.UnsafePath as exc:
        raise ArchiveError(f"{entry.role}: {exc}") from None


def _mode_and_owner(entry: Entry, path: Path) -> tuple[int, tuple[int, int] | None]:
    try:
        folder = safewrite.open_folder(path.parent)
    except (FileNotFoundError, NotADirectoryError, safewrite.UnsafePath):
        there = None
    else:
        try:
            there = safewrite.existing(folder, path.name)
        finally:
            os.close(folder)
    root = os.geteuid() == 0
    if there is not None:
        return there.st_mode & 0o777 & ~0o111, ((there.st_uid, there.st_gid) if root else None)
    return entry.mode & MODE_MASK, (archive.owner_ids(entry) if root else None)
