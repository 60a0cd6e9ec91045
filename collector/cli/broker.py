"""commune-collector broker-config / client-crl: the broker's side of the trust model."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path

import click

from collector.cli.common import _load, config_option
from collector.cli.enroll import CA_FILE, CRL_FILE
from collector.rollout import brokerconf


@click.command("broker-config")
@click.argument("conf", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--crl", "crl_file", default="",
              help="The revocation list the certificate listener must load (the collector's "
                   "[enrollment] client_crl_file; without the plugin: revoke --crl).")  # fmt: skip
@click.option("--acl", "acl_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The ACL file, when not where the config's acl_file says (a config "
                   "without the plugin).")  # fmt: skip
@click.option("--collector-user", default="commune-collector", show_default=True,
              help="The collector's account in the ACL file ([mqtt] username).")  # fmt: skip
@click.option("--write", is_flag=True,
              help="Change the files (a copy of each is kept as FILE.bak); without: show what "
                   "would change, exit 1 if anything is missing.")  # fmt: skip
def broker_config_command(
    conf: Path, crl_file: str, acl_path: Path | None, collector_user: str, write: bool
) -> None:
    """Check a deployed Mosquitto config against what this release needs, and upgrade it.

    Every listener must name each session after its account (use_username_as_clientid),
    so that no account takes another's session by its client id; the certificate
    listener must load the revocation list. A config without the plugin names an ACL
    file (acl_file): the collector's account there must read the broker's uptime
    ($SYS/broker/uptime), without which it never tells its session taken over. Nothing
    else is touched. Reload the broker after --write (systemctl reload mosquitto); the
    collector brings the dynamic security plugin's side in line itself when it starts.

    \b
    Example:
        commune-collector broker-config /etc/mosquitto/conf.d/commune.conf \\
            --crl /var/lib/commune-crl/client-crl.pem --write
        systemctl restart mosquitto
    """
    text = conf.read_text(encoding="utf-8")
    files = [(conf, text, brokerconf.problems(text, crl_file),
              brokerconf.upgrade(text, crl_file))]  # fmt: skip
    named = brokerconf.acl_file(text)
    acl = acl_path or (Path(named) if named else None)
    if acl is not None:
        if not acl.is_file():
            raise click.ClickException(
                f"{conf}: its ACL file {acl} is not there: name it with --acl"
            )
        rules = acl.read_text(encoding="utf-8")
        files.append((acl, rules, brokerconf.acl_problems(rules, collector_user),
                      brokerconf.upgrade_acl(rules, collector_user)))  # fmt: skip
    if not any(found for _path, _text, found, _new in files):
        for path, *_ in files:
            click.echo(f"{path}: up to date")
        return
    for path, old, found, upgraded in files:
        for problem in found:
            click.echo(f"{path}: {problem}", err=True)
        if not write and upgraded != old:
            click.echo("".join(difflib.unified_diff(
                old.splitlines(keepends=True), upgraded.splitlines(keepends=True),
                str(path), f"{path} (upgraded)",
            )))  # fmt: skip
    if not write:
        raise click.ClickException("not changed: run again with --write")
    for path, old, _found, upgraded in files:
        if upgraded != old:
            _replace(path, upgraded)
            click.echo(f"{path}: upgraded (the previous file is {path.name}.bak)")
    left = brokerconf.problems(files[0][3], crl_file)
    if acl is not None:
        left += [f"{acl}: {p}" for p in brokerconf.acl_problems(files[1][3], collector_user)]
    click.echo("reload the broker: systemctl reload mosquitto")
    for problem in left:
        click.echo(f"{conf}: still: {problem}: change it by hand", err=True)


def _replace(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole, with its owner and mode; FILE.bak the previous one."""
    shutil.copy2(path, path.with_name(path.name + ".bak"))
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as out:
        out.write(text)
    shutil.copymode(path, out.name)
    stat = path.stat()
    if os.geteuid() == 0:
        os.chown(out.name, stat.st_uid, stat.st_gid)
    os.replace(out.name, path)


@click.command("client-crl")
@config_option
@click.option("--ca-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Without the plugin (no -c): the key of the CA that signed the PCs' "
                   "certificates; the list is written at --crl.")  # fmt: skip
@click.option("--ca-cert", type=click.Path(dir_okay=False, path_type=Path),
              default=CA_FILE, show_default=True, help="That CA (with --ca-key).")  # fmt: skip
@click.option("--crl", "crl_file", type=click.Path(dir_okay=False, path_type=Path),
              default=CRL_FILE, show_default=True,
              help="Where the broker's certificate listener reads it (with --ca-key).")  # fmt: skip
def client_crl_command(
    config_path: Path | None, ca_key: Path | None, ca_cert: Path, crl_file: Path
) -> None:
    """Write the revocation list of client certificates now, at [enrollment]
    client_crl_file: the certificates of every replaced or revoked PC, signed with the
    client CA. The running collector keeps it up to date itself; run this once before
    the broker first starts (its certificate listener needs the file), or to rebuild it.
    Without the plugin (--ca-key, no -c), the list is its own record: written anew with
    the serials it holds (none at first); `revoke --cert` adds to it.

    \b
    Example:
        commune-collector client-crl -c /etc/commune-collector/collector.toml
        commune-collector client-crl --ca-key /root/pc-ca.key   # without the plugin
    """
    if ca_key is not None and config_path is None:
        from collector.rollout import staticcrl
        from collector.rollout.signer import load_signer

        try:
            held = staticcrl.write_empty(load_signer(str(ca_cert), str(ca_key), 1), crl_file)
        except (staticcrl.CrlError, OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{crl_file}: {held} revoked certificates")
        return
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
