"""commune-collector broker-config / client-crl: the broker's side of the trust model."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path

import click

from collector.cli.common import _load, config_option
from collector.rollout import brokerconf


@click.command("broker-config")
@click.argument("conf", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--crl", "crl_file", default="",
              help="The revocation list the certificate listener must load (the collector's "
                   "[enrollment] client_crl_file).")  # fmt: skip
@click.option("--write", is_flag=True,
              help="Change the file (a copy of it is kept as FILE.bak); without: show what "
                   "would change, exit 1 if anything is missing.")  # fmt: skip
def broker_config_command(conf: Path, crl_file: str, write: bool) -> None:
    """Check a deployed Mosquitto config against what this release needs, and upgrade it.

    Every listener must name each session after its account (use_username_as_clientid),
    so that no account takes another's session by its client id; the certificate
    listener must load the collector's revocation list. Nothing else is touched.
    Reload the broker after --write (systemctl reload mosquitto); the collector brings
    the dynamic security plugin's side in line itself when it starts.

    \b
    Example:
        commune-collector broker-config /etc/mosquitto/conf.d/commune.conf \\
            --crl /var/lib/commune-crl/client-crl.pem --write
        systemctl restart mosquitto
    """
    text = conf.read_text(encoding="utf-8")
    found = brokerconf.problems(text, crl_file)
    if not found:
        click.echo(f"{conf}: up to date")
        return
    for problem in found:
        click.echo(f"{conf}: {problem}", err=True)
    upgraded = brokerconf.upgrade(text, crl_file)
    if not write:
        click.echo("".join(difflib.unified_diff(
            text.splitlines(keepends=True), upgraded.splitlines(keepends=True),
            str(conf), f"{conf} (upgraded)",
        )))  # fmt: skip
        raise click.ClickException("not changed: run again with --write")
    shutil.copy2(conf, conf.with_name(conf.name + ".bak"))
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=conf.parent, prefix=f".{conf.name}.", delete=False
    ) as out:
        out.write(upgraded)
    shutil.copymode(conf, out.name)
    stat = conf.stat()
    if os.geteuid() == 0:
        os.chown(out.name, stat.st_uid, stat.st_gid)
    os.replace(out.name, conf)
    left = brokerconf.problems(upgraded, crl_file)
    click.echo(f"{conf}: upgraded (the previous file is {conf.name}.bak); reload the broker")
    for problem in left:
        click.echo(f"{conf}: still: {problem}: change it by hand", err=True)


@click.command("client-crl")
@config_option
def client_crl_command(config_path: Path | None) -> None:
    """Write the revocation list of client certificates now, at [enrollment]
    client_crl_file: the certificates of every replaced or revoked PC, signed with the
    client CA. The running collector keeps it up to date itself; run this once before
    the broker first starts (its certificate listener needs the file), or to rebuild it.

    \b
    Example:
        commune-collector client-crl -c /etc/commune-collector/collector.toml
    """
    from collector.rollout import registry
    from collector.rollout.signer import load_signer, write_public
    from collector.state.store import StateStore

    config = _load(config_path)
    enrollment = config.enrollment
    if enrollment is None or not enrollment.client_ca_cert_file or not enrollment.client_crl_file:
        raise click.ClickException(
            "no client certificates here: [enrollment] client_ca_cert_file, "
            "client_ca_key_file and client_crl_file name them"
        )
    signer = load_signer(enrollment.client_ca_cert_file, enrollment.client_ca_key_file, 1)
    serials: list[tuple[str, float]] = []
    if Path(config.store.path).exists():
        with StateStore(Path(config.store.path)) as store:
            serials = registry.revoked_serials(store)
    path = Path(enrollment.client_crl_file)
    write_public(path, signer.revocation_list(serials))
    click.echo(f"{path}: {len(serials)} revoked certificates")
