"""``commune-collector backup``: one archive of what the config names, the store copied
while the collector runs."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from collector import __version__
from collector.backup import archive
from collector.backup.archive import ArchiveError, Entry
from collector.backup.places import DYNSEC, STORE, Place
from collector.backup.storecopy import StoreCopyError, copy_store


@dataclass
class Written:
    archive: Path
    entries: list[Entry] = field(default_factory=list)
    missing: list[tuple[str, Path]] = field(default_factory=list)
    schema: int = 0


def archive_name(now: float) -> str:
    return time.strftime("commune-collector-%Y%m%d-%H%M%S.tar.gz", time.localtime(now))


def back_up(found: list[Place], out_dir: Path, now: float | None = None) -> Written:
    """The archive of every place that exists, in ``out_dir``; ArchiveError (or
    StoreCopyError) with nothing left behind otherwise."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _remove_leftovers(out_dir)
    target = out_dir / archive_name(time.time() if now is None else now)
    if target.exists():
        raise ArchiveError(f"{target} exists already: wait a second and run again")
    work = Path(tempfile.mkdtemp(prefix=".commune-backup-", dir=out_dir))
    try:
        return _back_up(found, target, work)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ArchiveError(f"no space left in {out_dir}: nothing written") from None
        raise ArchiveError(f"backup failed, nothing written: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: A backup's working copies older than this are a killed run's, not a running one's.
LEFTOVER_AGE_S = 86400.0


def _remove_leftovers(out_dir: Path) -> None:
    """What a run killed outright (power cut, SIGKILL) left: copies of secrets."""
    for leftover in [*out_dir.glob(".commune-backup-*"), *out_dir.glob(".*.tar.gz.partial")]:
        try:
            if time.time() - leftover.lstat().st_mtime < LEFTOVER_AGE_S:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()
        except OSError:
            continue


def _back_up(found: list[Place], target: Path, work: Path) -> Written:
    written = Written(target)
    copies: dict[str, Path] = {}
    entries: list[Entry] = []
    for role, source in _files(found, written):
        copy = work / f"{len(entries):04d}"
        if role == STORE:
            written.schema = copy_store(source, copy)
            st = source.stat()
            entries.append(archive.entry_for(role, len(entries), source,
                                             _measured(copy, st)))  # fmt: skip
        else:
            try:
                copied = archive.snapshot(source, copy)
            except PermissionError:
                raise ArchiveError(
                    f"cannot read {source} ({role}): permission denied; run as root "
                    "(deploy/systemd/commune-collector-backup.service)"
                ) from None
            if role == DYNSEC:
                _check_json(source, copy)
            entries.append(archive.entry_for(role, len(entries), source, copied))
        copies[entries[-1].member] = copy
    manifest = archive.new_manifest(__version__, written.schema)
    manifest.entries = entries
    manifest.missing = [{"role": role, "path": str(path)} for role, path in written.missing]
    archive.write(target, manifest, copies)
    written.entries = entries
    return written


def _files(found: list[Place], written: Written) -> list[tuple[str, Path]]:
    """(role, path) of every file to take; the named ones absent go to ``missing``."""
    files: list[tuple[str, Path]] = []
    for place in found:
        if not place.folder:
            if place.path.is_file():
                files.append((place.role, place.path))
            elif place.role == STORE:
                raise StoreCopyError(f"no state store at {place.path}: nothing to back up")
            elif not place.role.endswith(".next"):  # only there during a key rotation
                written.missing.append((place.role, place.path))
            continue
        if place.names is not None:
            for name in place.names:
                path = place.path / name
                if path.is_file() and not path.is_symlink():
                    files.append((f"{place.role}/{name}", path))
                elif place.role != "releases.online_keys_dir":
                    written.missing.append((f"{place.role}/{name}", path))
            continue
        if not place.path.is_dir():
            continue  # e.g. no release repository yet: nothing of it to keep
        for path in sorted(place.path.rglob("*")):
            # Links are not followed: a folder role holds its own files only.
            if path.is_file() and not path.is_symlink():
                files.append((f"{place.role}/{path.relative_to(place.path).as_posix()}", path))
    return files


def _measured(copy: Path, st: os.stat_result) -> tuple[int, str, os.stat_result]:
    digest = hashlib.sha256()
    with copy.open("rb") as reading:
        while chunk := reading.read(1024 * 1024):
            digest.update(chunk)
    return copy.stat().st_size, digest.hexdigest(), st


def _check_json(source: Path, copy: Path) -> None:
    try:
        json.loads(copy.read_bytes())
    except ValueError as exc:
        raise ArchiveError(
            f"{source} is not JSON ({exc}): is it the plugin's dynamic-security.json?"
        ) from None
