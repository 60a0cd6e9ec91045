"""commune-collector backup / restore: everything a province's collector cannot lose,
in one archive, and back (deploy/OPERATIONS.md, "Backups")."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.backup import archive, restore
from collector.backup.archive import ArchiveError, Entry, Verified
from collector.backup.places import CONFIG, DYNSEC, STORE, places
from collector.backup.restore import Step
from collector.backup.storecopy import StoreCopyError, holder
from collector.config import load_collector_config
from collector.state import migrations

_config = click.option(
    "--config", "-c", "config_path", required=True,
    type=click.Path(dir_okay=False, path_type=Path), envvar="COMMUNE_COLLECTOR_CONFIG",
    help="The collector's config (TOML). Env: COMMUNE_COLLECTOR_CONFIG.",
)  # fmt: skip
_DYNSEC_HELP = "The broker's dynamic-security.json (its accounts and hashed passwords)."


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _summary(entries: list[Entry]) -> list[str]:
    """One line per role; a folder role's files together."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.role.split("/", 1)[0], []).append(entry)
    lines = []
    for role, members in groups.items():
        size = _size(sum(e.size for e in members))
        if len(members) == 1 and members[0].role == role:
            lines.append(f"  {role:<40} {size:>10}  {members[0].source}")
        else:
            lines.append(f"  {role:<40} {size:>10}  {len(members)} files")
    return lines


@click.command("backup")
@_config
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The folder the archive is written to (made 0700 if missing).")  # fmt: skip
@click.option("--dynsec", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=_DYNSEC_HELP)  # fmt: skip
def backup_command(config_path: Path, out_dir: Path, dynsec: Path | None) -> None:
    """Write ONE archive (tar.gz, 0600) of everything this collector cannot lose: the
    state store (copied consistently while the collector runs, then checked), the
    config, every file it names that holds state or a secret (passwords, TLS keys, the
    client CA and its key, the config signing key, profiles and their secrets, the
    inventory, rules, alert routes' secrets, the release repository and its online
    keys) and, with --dynsec, the broker's accounts. Never the release root or targets
    keys: they are offline. The archive holds the CA key: keep it like the key.

    \b
    Example:
        commune-collector backup -c /etc/commune-collector/collector.toml \\
            -o /var/backups/commune-collector \\
            --dynsec /var/lib/mosquitto/dynamic-security.json
    """
    from collector.backup.backup import back_up

    if not config_path.is_file():
        raise click.ClickException(f"no config at {config_path}")
    try:
        # Unchecked: a named file that is missing is reported, not a reason to keep nothing.
        config = load_collector_config(config_path, check=False)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    found = places(config, config_path.absolute(), dynsec.absolute() if dynsec else None)
    # Stopped by systemd (a timeout, a shutdown): the copies of secrets are removed on
    # the way out as on any failure, not left beside the archives.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        written = back_up(found, out_dir)
    except (ArchiveError, StoreCopyError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in _summary(written.entries):
        click.echo(line)
    for role, path in written.missing:
        click.echo(f"  missing: {role} names {path}, which does not exist")
    click.echo(f"store schema {written.schema}; integrity_check ok")
    click.echo(f"wrote {written.archive} ({_size(written.archive.stat().st_size)})")


@click.command("restore")
@click.argument("archive_path", metavar="ARCHIVE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@_config
@click.option("--dynsec", type=click.Path(dir_okay=False, path_type=Path),
              help=_DYNSEC_HELP + " Where to write it; without, it is not restored.")  # fmt: skip
@click.option(
    "--dry-run", is_flag=True, help="Verify and say what would be written; write nothing."
)
@click.option("--force", is_flag=True,
              help="Restore even though a process has the store open (never while the "
              "collector runs: stop it first).")  # fmt: skip
def restore_command(
    archive_path: Path, config_path: Path, dynsec: Path | None, dry_run: bool, force: bool
) -> None:
    """Verify an archive of `backup` against its manifest (sizes, SHA-256; a changed or
    truncated archive is refused before anything is written), then write each file where
    THIS config says its role lives, atomically, with its mode. A store from a newer
    collector is refused; an older one is brought up to date at the collector's next
    start. Stop the collector first. A config missing at -c is restored from the
    archive first; an existing one is kept (the archive's copy goes to <config>.restored).

    \b
    Example:
        systemctl stop commune-collector mosquitto
        commune-collector restore \\
            /var/backups/commune-collector/commune-collector-20261204-030000.tar.gz \\
            -c /etc/commune-collector/collector.toml \\
            --dynsec /var/lib/mosquitto/dynamic-security.json --dry-run
    """
    staging = Path(tempfile.mkdtemp(prefix="commune-restore-"))
    try:
        try:
            verified = archive.verify(archive_path, staging)
            schema = restore.check_schema(verified)
        except ArchiveError as exc:
            raise click.ClickException(f"{exc}; nothing was written") from None
        click.echo(
            f"{archive_path}: {len(verified.manifest.entries)} files verified; made "
            f"{verified.manifest.created} on {verified.manifest.host or '?'} by collector "
            f"{verified.manifest.collector_version}, store schema {schema}"
        )
        config = load_collector_config(
            _config_of(verified, config_path), check=False, base=config_path.absolute().parent
        )
        store = Path(config.store.path)
        pid = holder(store)
        if pid is not None and not force:
            raise click.ClickException(
                f"process {pid} has the state store {store} open: is the collector running? "
                "Stop it (systemctl stop commune-collector) and run again; --force restores "
                "anyway. Nothing was written"
            )
        if pid is not None:
            click.echo(f"  --force: process {pid} has {store} open; restoring anyway", err=True)
        # The secrets' names from the archived profiles: on a new host the files are not
        # there until this restore writes them.
        archived_profiles = {
            int(e.role[len("enrollment.profiles[") : -1]): verified.file(e)
            for e in verified.manifest.entries
            if re.fullmatch(r"enrollment\.profiles\[[0-9]+\]", e.role)
        }
        current = places(
            config, config_path.absolute(), dynsec.absolute() if dynsec else None,
            archived_profiles,
        )  # fmt: skip
        steps = restore.plan(verified, current, config_path.absolute())
        for step in steps:
            click.echo(_step_line(step, dry_run))
        if dry_run:
            click.echo("dry run: nothing written")
            return
        restore.apply(verified, steps)
        if schema < migrations.LATEST:
            click.echo(f"store schema {schema}: the collector's next start brings it to "
                       f"{migrations.LATEST}")  # fmt: skip
        click.echo("restored; now restart the broker (dynsec), then start the collector")
    except (ConfigError, ArchiveError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"restore failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _config_of(verified: Verified, config_path: Path) -> Path:
    """The config the places are read from: -c when it exists, else the archive's copy
    (read where it was unpacked, its relative paths taken as -c's; written to -c with the
    other files)."""
    if config_path.exists():
        return config_path
    archived = [e for e in verified.manifest.entries if e.role == CONFIG]
    if not archived:
        raise click.ClickException(f"no config at {config_path}, and none in the archive")
    click.echo(f"  config: none at {config_path}; the archive's is read, and written there")
    return verified.file(archived[0])


def _step_line(step: Step, dry_run: bool) -> str:
    entry = step.entry
    if step.note:
        return f"  kept: {entry.role}: {step.note}"
    if step.target is None:
        why = "give --dynsec PATH" if entry.role == DYNSEC else "this config has no place for it"
        return f"  not restored: {entry.role} ({_size(entry.size)}, from {entry.source}): {why}"
    verb = "would write" if dry_run else "wrote"
    extra = " (stale -wal/-shm removed)" if entry.role == STORE else ""
    size, mode = _size(entry.size), oct(entry.mode)
    return f"  {verb} {entry.role:<40} {size:>10} {mode} -> {step.target}{extra}"
