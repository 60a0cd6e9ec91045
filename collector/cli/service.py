"""commune-collector install-service: the collector as a systemd unit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import click

from collector.cli.common import _load


@click.command("install-service")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default="/etc/commune-collector/collector.toml",
    show_default=True,
    help="The collector's config (the unit passes it to `run`).",
)
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    help="Where to write the unit.",
)
@click.option("--no-start", is_flag=True, help="Install only; do not enable or start.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit and change nothing.")
def install_service_command(
    config_path: Path, unit_dir: Path, no_start: bool, print_only: bool
) -> None:
    """Install the collector as a hardened systemd service.

    The unit runs this very installation (the interpreter or console script you
    invoked, in its venv) as the system user commune-collector, its store in
    /var/lib/commune-collector. It first checks that this user can read the
    program, the config and every file the config names (secrets, inventory,
    rules), and write where the store is, and says what is wrong.

    \b
    Example:
        sudo /opt/commune-collector/venv/bin/commune-collector install-service \\
            -c /etc/commune-collector/collector.toml
        commune-collector install-service -c collector.toml --print
    """
    config = _load(config_path)
    from agent import systemd
    from collector import service

    if print_only:
        click.echo(service.unit(config, config_path), nl=False)
        found = systemd.preview(
            service.SERVICE, config_path, lambda who: service.check(config, config_path, who)
        )
        for problem in found:
            click.echo(f"warning: {problem}", err=True)
        return
    try:
        for line in service.install(config, config_path, unit_dir, start=not no_start):
            click.echo(line)
    except systemd.InstallError as exc:
        raise click.ClickException(
            "not installed: the service user would fail:\n  " + "\n  ".join(exc.problems)
        ) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise click.ClickException(f"install failed: {exc}") from None
