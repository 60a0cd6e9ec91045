"""commune-collector enroll / revoke: agents' broker accounts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from collector.cli.common import _load, audited_outside, config_option
from collector.rollout.passwordfile import (
    EnrollError,
    Enrollment,
    account,
    enroll,
    enrolled,
    revoke,
)
from collector.rollout.sessionend import NotReloaded
from collector.rollout.staticcrl import CrlError

ACCOUNTS_FILE = "/etc/mosquitto/commune/passwd"
#: Where deploy/mosquitto/ has the broker find the CA and the PCs' revocation list.
CA_FILE = "/etc/mosquitto/commune/ca.crt"
CRL_FILE = "/var/lib/commune-crl/client-crl.pem"
place = [
    click.option("--province", required=True, help="Province slug, e.g. dong-nai."),
    click.option("--commune", required=True, help="Commune slug, e.g. la-nga."),
    click.option("--agent", required=True, help="Agent id, e.g. ketoan-01."),
    click.option(
        "--passwd-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=ACCOUNTS_FILE,
        show_default=True,
        help="Mosquitto's password file.",
    ),
    click.option(
        "--broker-group",
        default="mosquitto",
        show_default=True,
        help="The broker's group: it owns the password file (0640) so the broker can read it.",
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def with_place(function: F) -> F:
    for option in reversed(place):
        function = option(function)
    return function


def _in_file(province: str, commune: str, agent: str, passwd_file: Path) -> dict[str, object]:
    """What the audit keeps of an account in the password file: its name and whether it
    is there (never its hash)."""
    try:
        username = account(province, commune, agent)
        return {"account": username, "in_password_file": username in enrolled(passwd_file)}
    except (EnrollError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("enroll")
@with_place
@config_option
@click.option("--broker-url", required=True, help="mqtts://broker.dong-nai.example:8883")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("enrolled"),
    show_default=True,
    help="Where the agent's config and password go.",
)
@click.option("--tslcd-target", default="", help="Address to probe over the dedicated line.")
@click.option("--replace", is_flag=True, help="Give an enrolled agent a new password.")
def enroll_command(
    province: str,
    commune: str,
    agent: str,
    passwd_file: Path,
    broker_group: str,
    config_path: Path | None,
    broker_url: str,
    out_dir: Path,
    tslcd_target: str,
    replace: bool,
) -> None:
    """Give an agent a broker account and write its ready config.

    Adds "<province>/<commune>/<agent>" to Mosquitto's password file (a salted
    PBKDF2 hash, as mosquitto_passwd writes it; the password never appears on
    a command line) and writes OUT/<account>/agent.toml with mqtt-password
    (mode 0600) for the agent's PC. Reload Mosquitto afterwards. Recorded in the
    operators' audit of the collector's store (-c, else the default config's).

    \b
    Example:
        commune-collector enroll --province dong-nai --commune la-nga --agent ketoan-01 \\
            --broker-url mqtts://broker.dong-nai.example:8883 --tslcd-target 10.75.0.1
        systemctl reload mosquitto
    """
    config = _load(config_path)
    before = _in_file(province, commune, agent, passwd_file)

    def act() -> Enrollment:
        return enroll(
            province,
            commune,
            agent,
            passwd_file=passwd_file,
            out_dir=out_dir,
            broker_url=broker_url,
            tslcd_target=tslcd_target,
            broker_group=broker_group,
            replace=replace,
        )

    try:
        done = audited_outside(
            config, "agent_enroll", act,
            lambda made: {"account": made.username, "in_password_file": True,
                          "replace": replace, "broker_url": broker_url},
            before=before, object_of=lambda made: made.username,
            province=province, commune=commune, agent=agent,
        )  # fmt: skip
    except (EnrollError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enrolled {done.username}: {done.config} and {done.password_file}")
    click.echo("reload the broker: systemctl reload mosquitto")


@click.command("revoke")
@with_place
@config_option
@click.option("--by", "actor", default="cli", show_default=True, help="For the audit table.")
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Without -c: the PC's client certificate, to list in the revocation list (--crl).",
)
@click.option(
    "--crl",
    "crl_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=CRL_FILE,
    show_default=True,
    help="The revocation list the broker's certificate listener loads (crlfile).",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=CA_FILE,
    show_default=True,
    help="The CA that signed the PCs' certificates.",
)
@click.option(
    "--ca-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Its private key, to sign the revocation list (with --cert).",
)
@click.option(
    "--broker-url",
    default="",
    help="With --cert: the broker's certificate listener (mqtts://host:8884), to end a "
    "session the certificate holds now, once the broker has reloaded the list.",
)
@click.option(
    "--broker-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CA of the broker's server certificate (default: --ca-cert).",
)
def revoke_command(
    province: str,
    commune: str,
    agent: str,
    passwd_file: Path,
    broker_group: str,
    config_path: Path | None,
    actor: str,
    cert_file: Path | None,
    crl_file: Path,
    ca_cert: Path,
    ca_key: Path | None,
    broker_url: str,
    broker_ca: Path | None,
) -> None:
    """Cut an agent off the broker. With [enrollment] and [dynsec] in the collector's
    config (-c): recorded in the store and the audit table, then its dynamic-security
    account is removed (by the running collector, or here when none runs) and its live
    session ends; its certificate, if it had one, joins the revocation list. Without:
    its line leaves Mosquitto's password file (--passwd-file), and with --cert its
    certificate joins the revocation list (--crl, signed with --ca-cert/--ca-key);
    reload Mosquitto afterwards (commune-crl-reload.path does on a list's change). A
    reload refuses the certificate's next handshake only: with --broker-url the
    command waits for the reload and ends the session the certificate holds (under a
    certificate of the account's name, valid minutes, listed after); without, restart
    the broker. Recorded in the operators' audit either way (without -c, the default
    config's store).

    \b
    Example:
        commune-collector revoke -c /etc/commune-collector/collector.toml \\
            --province dong-nai --commune la-nga --agent ketoan-01
        commune-collector revoke --province dong-nai --commune la-nga --agent ketoan-01 \\
            --passwd-file /etc/mosquitto/commune/passwd && systemctl reload mosquitto
        commune-collector revoke --province dong-nai --commune la-nga --agent ketoan-02 \\
            --cert ketoan-02.crt --ca-key /root/pc-ca.key \\
            --broker-url mqtts://broker.dong-nai.example:8884
    """
    if config_path is not None and _load(config_path).enrollment is not None:
        from collector.cli.tokens import revoke_enrolled

        click.echo(revoke_enrolled(config_path, province, commune, agent, actor))
        return
    config = _load(config_path)
    before = _in_file(province, commune, agent, passwd_file)
    if cert_file is None:
        try:
            username = audited_outside(
                config, "agent_revoke",
                lambda: revoke(province, commune, agent, passwd_file=passwd_file,
                               broker_group=broker_group),
                lambda gone: {"account": gone, "in_password_file": False, "by": actor},
                before=before, object_of=lambda gone: gone,
                province=province, commune=commune, agent=agent,
            )  # fmt: skip
        except (EnrollError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"revoked {username}; reload the broker: systemctl reload mosquitto")
        return
    if ca_key is None:
        raise click.ClickException("--cert needs --ca-key: the revocation list is signed")
    name = str(before["account"])
    try:
        click.echo(audited_outside(
            config, "agent_revoke",
            lambda: revoke_certificate(province, commune, agent, passwd_file, broker_group,
                                       cert_file, crl_file, ca_cert, ca_key, broker_url,
                                       broker_ca or ca_cert),
            lambda _said: {"account": name, "in_password_file": False,
                           "certificate": cert_file.name, "by": actor},
            before=before, object_of=lambda _said: name,
            province=province, commune=commune, agent=agent,
        ))  # fmt: skip
    except (EnrollError, CrlError, NotReloaded, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def revoke_certificate(
    province: str,
    commune: str,
    agent: str,
    passwd_file: Path,
    broker_group: str,
    cert_file: Path,
    crl_file: Path,
    ca_cert: Path,
    ca_key: Path,
    broker_url: str = "",
    broker_ca: Path | None = None,
) -> str:
    """The certificate listed first (the part that lasts), then the account's password,
    if it had one too, removed; with ``broker_url``, its live session ended."""
    from collector.rollout import sessionend, staticcrl
    from collector.rollout.signer import load_signer

    username = account(province, commune, agent)
    signer = load_signer(str(ca_cert), str(ca_key), 1)
    certificate = staticcrl.certificate_of(cert_file, signer, username)
    serial = format(certificate.serial_number, "x")
    already = serial in {listed for listed, _ in staticcrl.listed(signer, crl_file)}
    staticcrl.revoke(signer, crl_file, certificate)
    said = [f"revoked {username}: its certificate {serial} "
            + ("was listed already in " if already else "listed in ") + str(crl_file)]  # fmt: skip
    if username in enrolled(passwd_file):
        revoke(province, commune, agent, passwd_file=passwd_file, broker_group=broker_group)
        said.append(f"its password removed from {passwd_file}")
    if broker_url:
        try:
            sessionend.end_session(signer, crl_file, certificate, broker_url,
                                   broker_ca or ca_cert)  # fmt: skip
        except sessionend.NotReloaded as exc:
            raise sessionend.NotReloaded(
                f"{'; '.join(said)}; but {exc}: reload or restart the broker (a session the "
                "certificate holds now ends at the restart)"
            ) from None
        said.append("the broker reloaded the list and the session the certificate held ended")
    else:
        said.append(
            "reload the broker (commune-crl-reload.path does): the certificate is refused at "
            "its next connection; a session it holds now ends at the broker's restart: "
            "systemctl restart mosquitto"
        )
    return "; ".join(said)
