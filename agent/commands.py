"""commune-agent: the command line of the agent (``run`` as a service gives it starts without
it: agent/cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from agent import __version__, start
from agent.central import LOCAL, CentralConfig
from agent.config import Config, redacted
from agent.configkeys import describe as describe_keys
from agent.configtypes import ConfigError, encode_hook
from agent.start import CONFIG_ENV, DEFAULT_CONFIG


def config_path_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--config/-c``: where the agent's config is (or goes), the same for every command."""
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        envvar=CONFIG_ENV,
        help=f"{help_text} Env: {CONFIG_ENV}.",
    )


config_option = config_path_option("Agent config file (TOML).")


def _load(path: Path) -> Config:
    try:
        return start.load(path)
    except start.StartError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="commune-agent")
def main() -> None:
    """Report this PC's health, anti-malware, dedicated line and commune devices over MQTT.

    \b
    Example:
        commune-agent check-config -c /etc/commune-agent/agent.toml
        commune-agent once -c agent.toml --check host
        commune-agent run -c agent.toml
    """


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the agent until stopped (SIGTERM/Ctrl-C): collect, store in the outbox, publish.

    \b
    Example:
        commune-agent run --config /etc/commune-agent/agent.toml
    """
    try:
        code = start.run(config_path)
    except start.StartError as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        sys.exit(code)


@main.command()
@config_option
@click.option("--check", "only", metavar="NAME", help="Run only the check with this name or kind.")
def once(config_path: Path, only: str | None) -> None:
    """Run the checks once and print their envelopes as JSON; nothing is stored or published.

    \b
    Example:
        commune-agent once -c agent.toml --check tslcd-province
    """
    config = _load(config_path)
    start.setup_logging("warning")
    from agent.runner import run_once

    envelopes = run_once(config, only)
    if only and not envelopes:
        raise click.ClickException(f"no check named {only!r} in {config_path}")
    for envelope in envelopes:
        click.echo(json.dumps(msgspec.to_builtins(envelope), ensure_ascii=False, indent=2))


@main.command("check-config")
@config_option
@click.option(
    "--show",
    is_flag=True,
    help="Print the effective config (secrets hidden) and where each check came from.",
)
def check_config(config_path: Path, show: bool) -> None:
    """Validate the config file (and the overrides file, and the collector's last config
    when enrolled); exit 1 with the file, key and problem if one is wrong.

    \b
    Example:
        commune-agent check-config -c /etc/commune-agent/agent.toml --show
    """
    config = _load(config_path)
    central = _central(config)
    from agent.runner import checks_of

    effective = central.current
    checks = checks_of(effective.checks)
    # Enrolled and waiting for the collector's first config, the file itself runs nothing:
    # "0 checks" right after enrollment said the profile has four read as a failure.
    waiting = central.enabled and not central.state.version and not checks
    click.echo(
        f"{config_path}: ok — agent {config.agent_id} in "
        f"{config.agent.province}/{config.agent.commune}, "
        + ("checks: the collector's config brings them once the agent runs"
           if waiting else f"{len(checks)} checks")
    )  # fmt: skip
    if central.enabled:
        click.echo(
            f"  collector config: v{central.state.version} ({central.cache_path})"
            if central.state.version
            else f"  collector config: none yet (kept in {central.cache_path} once received)"
        )
        click.echo(f"  config signing keys trusted: {describe_keys(central.trusted)} "
                   f"(anchored by {central.key_path})")  # fmt: skip
        if central.state.error:
            click.echo(f"  warning: {central.state.error}")
        click.echo(f"  local overrides: {central.overrides_path}"
                   f"{'' if central.overrides_path.is_file() else ' (none)'}")  # fmt: skip
    for check in checks:
        click.echo(f"  {check.describe():50} from {effective.sources[check.name]}")
    click.echo(f"  {'interval ' + format(effective.interval, 'g') + 's':50} "
               f"from {effective.interval_source}")  # fmt: skip
    if show:
        click.echo(json.dumps(_effective(config, central), ensure_ascii=False, indent=2))


def _central(config: Config) -> CentralConfig:
    try:
        return CentralConfig(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _effective(config: Config, central: CentralConfig) -> dict[str, Any]:
    data = redacted(config)
    data["agent"]["id"] = config.agent_id
    if central.current.interval_source != LOCAL:
        data["agent"]["interval"] = central.current.interval
    data["outbox"]["path"] = str(config.outbox_path)
    data["checks"] = msgspec.to_builtins(central.current.checks, enc_hook=encode_hook)
    data["sources"] = {
        "checks": central.current.sources,
        "interval": central.current.interval_source,
    }
    return data


#: The collector's HTTPS: a PC enrolling or fetching the config keys checks it.
collector_ca_option = click.option(
    "--ca",
    "ca_file",
    type=click.Path(exists=True, dir_okay=False),
    help="CA that signs the collector's HTTPS certificate (default: the system's).",
)


@main.command()
@click.option(
    "--collector",
    required=True,
    metavar="URL",
    help="The collector's address, e.g. https://collector.example:8443.",
)
@click.option(
    "--token",
    required=True,
    envvar="COMMUNE_ENROLL_TOKEN",
    help="The enrollment token of this commune. Env: COMMUNE_ENROLL_TOKEN.",
)
@click.option(
    "--id",
    "agent_id",
    metavar="NAME",
    help="This agent's id in the commune; default the host name as a slug.",
)
@collector_ca_option
@click.option(
    "--commune",
    default="",
    metavar="SLUG",
    help="The commune this PC is in: a token of another commune is refused.",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Take over an agent id already enrolled (a reinstalled PC; the token must allow it).",
)
@click.option(
    "--client-cert",
    is_flag=True,
    help="Make a key pair here and get a client certificate for it instead of a password "
    "(for brokers that authenticate by certificate).",
)
@click.option("--force", is_flag=True, help="Write over an existing config file.")
@config_path_option(
    "Where to write the agent's config (its password and the broker's CA go beside it)."
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for the collector.",
)
def enroll(
    collector: str,
    token: str,
    agent_id: str | None,
    ca_file: str | None,
    commune: str,
    replace: bool,
    client_cert: bool,
    force: bool,
    config_path: Path,
    timeout: float,
) -> None:
    """Enroll this PC with the collector: make a broker password here, send it with the
    commune's token, write the local config (identity and broker). Exit 1 if refused
    (the reason on one line), 3 if the collector could not be reached (run it again).

    \b
    Example:
        sudo commune-agent enroll --collector https://collector.example:8443 \\
            --token 1a2b3c4d.xxxxxxxx... && sudo commune-agent install-service
    """  # fmt: skip
    from agent import enroll as enrolling
    from agent.config import default_agent_id

    agent = agent_id or default_agent_id()
    try:
        url = enrolling.check_request(collector, token, agent, commune)
        enrolling.preflight(config_path, force)
        kept_ca = enrolling.collector_ca(ca_file or "")  # read before a token use is spent
        credential = (
            enrolling.new_key_and_csr(agent)
            if client_cert
            else enrolling.Credential(password=enrolling.new_password())
        )
        answer = enrolling.request(
            url, token, agent, credential, replace=replace, commune=commune,
            ca_file=ca_file or "", timeout=timeout,
        )  # fmt: skip
        written = enrolling.write(
            config_path, answer, credential, releases_url=f"{collector.rstrip('/')}/releases",
            collector_ca=kept_ca,
        )  # fmt: skip
    except enrolling.EnrollFailed as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(
        f"enrolled {answer.province}/{answer.commune}/{answer.agent}"
        f"{' (replacing the previous one)' if answer.replaced else ''}; "
        f"profile {answer.profile}; wrote {', '.join(str(p) for p in written.files)}"
    )
    if not answer.config_keys:
        click.echo(
            "warning: the collector sent no config signing key: this agent refuses its "
            f"configs until `commune-agent config-key fetch -c {config_path} --collector "
            f"{collector}` (a collector older than 0.3?)",
            err=True,
        )
    click.echo(f"next: commune-agent install-service -c {config_path}")


@main.group("config-key")
def config_key_group() -> None:
    """The collector's config signing keys this agent trusts (config-key.pub beside the
    config): only configs signed by one of them run.

    \b
    Example:
        commune-agent config-key show -c /etc/commune-agent/agent.toml
        sudo commune-agent config-key fetch -c /etc/commune-agent/agent.toml \\
            --collector https://collector.example:8443
    """


@config_key_group.command("fetch")
@config_option
@click.option(
    "--collector",
    required=True,
    metavar="URL",
    help="The collector's address, e.g. https://collector.example:8443.",
)
@collector_ca_option
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the collector.")  # fmt: skip
def config_key_fetch(
    config_path: Path, collector: str, ca_file: str | None, timeout: float
) -> None:
    """Get the collector's config signing keys over HTTPS, verified as for enrollment,
    and write them to config-key.pub: for a PC enrolled before configs were signed (the
    upgrade runs it), or to trust anew after the collector's key leaked. Restart the
    agent to use them. Exit 1 if refused, 3 if the collector could not be reached.

    \b
    Example:
        sudo commune-agent config-key fetch -c /etc/commune-agent/agent.toml \\
            --collector https://collector.example:8443 --ca /etc/commune-agent/collector-ca.pem
    """
    from agent import enroll as enrolling
    from agent.central import default_key_path
    from agent.configkeys import write_key_file
    from agent.wire import config_key_id

    config = _load(config_path)
    path = default_key_path(config)
    try:
        keys = enrolling.fetch_config_keys(collector, ca_file or "", timeout)
        write_key_file(path, keys, f"{collector}, on {time.strftime('%Y-%m-%d %H:%M')}")
    except enrolling.EnrollFailed as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    ids = ", ".join(config_key_id(k) for k in keys)
    click.echo(f"wrote {path}: keys {ids}; restart the agent to use them")


@config_key_group.command("show")
@config_option
def config_key_show(config_path: Path) -> None:
    """The keys in config-key.pub, the keys this agent trusts now (a rotation may have
    added or dropped some since), and which one signed the config it runs.

    \b
    Example:
        commune-agent config-key show -c /etc/commune-agent/agent.toml
    """
    central = _central(_load(config_path))
    click.echo(f"{central.key_path}: {describe_keys(central.anchor)}")
    click.echo(f"trusted now: {describe_keys(central.trusted)}")
    if central.state.signed_by:
        click.echo(f"the config running (v{central.state.version}) is signed by "
                   f"{central.state.signed_by}")  # fmt: skip
    if central.state.error:
        click.echo(f"warning: {central.state.error}")


@main.command("list-checks")
@config_option
@click.option("--all-kinds", is_flag=True, help="List the kinds of check this agent knows instead.")
def list_checks(config_path: Path, all_kinds: bool) -> None:
    """List the configured checks with their interval and timeout.

    \b
    Example:
        commune-agent list-checks -c agent.toml
        commune-agent list-checks --all-kinds
    """
    from agent.checks import REGISTRY, check_type

    if all_kinds:
        for kind in REGISTRY:
            summary = (sys.modules[check_type(kind).__module__].__doc__ or kind).splitlines()[0]
            click.echo(f"{kind:10} {summary}")
        return
    config = _load(config_path)
    from agent.runner import checks_of

    effective = _central(config).current
    for check in checks_of(effective.checks):
        interval = check.interval(effective.interval)
        click.echo(f"{check.describe():60} every {interval:g}s, timeout {check.timeout:g}s")
    click.echo(f"{'agent:agent (self-metrics)':60} every {effective.interval:g}s")


@main.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the schema files into this directory instead of printing.",
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of the wire contract (envelope and status payloads) and
    the field catalogue (fields.json: each check's fields and tags, their types).

    \b
    Example:
        commune-agent schema -o ./schema
    """
    from agent import catalogue
    from agent.wire import json_schemas

    documents = {**json_schemas(), "fields.json": catalogue.document()}
    for name, document in documents.items():
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output:
            output.mkdir(parents=True, exist_ok=True)
            (output / name).write_text(text, encoding="utf-8")
            click.echo(f"wrote {output / name}")
        else:
            click.echo(text)


README_BEGIN = "<!-- field catalogue: generated by commune-agent fields --readme README.md -->"
README_END = "<!-- end of the field catalogue -->"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The catalogue as JSON (fields.json).")
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Rewrite the catalogue's tables between their markers in this Markdown file.",
)
def fields(as_json: bool, readme: Path | None) -> None:
    """What each check sends: every field and tag, its type, unit and meaning, and
    which fields feed an up/down history. Alert rules may name exactly these.

    \b
    Example:
        commune-agent fields
        commune-agent fields --json
        commune-agent fields --readme README.md
    """
    from agent import catalogue

    if as_json:
        click.echo(json.dumps(catalogue.document(), indent=2, ensure_ascii=False))
        return
    tables = catalogue.markdown()
    if readme is None:
        click.echo(tables)
        return
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise click.ClickException(f"{readme} has no {README_BEGIN!r} … {README_END!r} markers")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_BEGIN}\n\n{tables}\n{README_END}{tail}", encoding="utf-8")
    click.echo(f"wrote the field catalogue into {readme}")


@main.command("self-check")
@config_option
def self_check(config_path: Path) -> None:
    """Check that this installation can run here: its modules load, the config and the
    collector's last config build every check, and (in a version folder) every file
    matches its manifest. The update process runs it with a newly staged version
    before the launcher may start it; exit 1 with the problem.

    \b
    Example:
        commune-agent self-check -c /etc/commune-agent/agent.toml
    """
    config = _load(config_path)
    central = _central(config)
    import agent
    from agent import outbox, publisher, scheduler  # noqa: F401  (they must import)
    from agent.runner import checks_of
    from agent.update import bundle

    try:
        checks = checks_of(central.current.checks)
    except Exception as exc:  # a check refusing its options is this version's verdict
        raise click.ClickException(f"checks do not build: {type(exc).__name__}: {exc}") from None
    folder = Path(agent.__file__).resolve().parent.parent
    if (folder / bundle.MANIFEST).is_file():
        problems = bundle.verify_tree(folder)
        if problems:
            raise click.ClickException(f"{folder}: {len(problems)} file(s) wrong: {problems[0]}")
    click.echo(f"self-check passed: agent {__version__}, {len(checks)} check(s)")


@main.command("install-service")
@config_option
@click.option(
    "--unit-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/etc/systemd/system",
    show_default=True,
    help="Linux: where to write the unit.",
)
@click.option("--no-start", is_flag=True, help="Install only; do not enable or start.")
@click.option(
    "--print", "print_only", is_flag=True, help="Linux: print the unit and change nothing."
)
def install_service(config_path: Path, unit_dir: Path, no_start: bool, print_only: bool) -> None:
    """Install the agent as a service: a hardened systemd unit, or a Windows service.

    The config is validated first. On Linux the unit runs this very installation
    (the interpreter or console script you invoked, in its venv) as the system
    user commune-agent, with CAP_NET_RAW (for ICMP) and its outbox in
    /var/lib/commune-agent. Before writing anything it checks that this user can
    read the program, the config and every file the config names, and write
    where the outbox goes, and says what is wrong. On Windows see
    deploy/windows/README.md.

    \b
    Example:
        sudo /opt/commune-agent/venv/bin/commune-agent install-service \\
            -c /etc/commune-agent/agent.toml
        commune-agent install-service -c agent.toml --print
    """
    config = _load(config_path)
    if sys.platform == "win32":
        from agent import winservice

        winservice.install(config_path.resolve(), start=not no_start)
        click.echo(f"installed Windows service {winservice.SERVICE_NAME}")
        return
    from agent import service, systemd

    if print_only:
        click.echo(service.unit(config), nl=False)
        found = systemd.preview(
            service.SERVICE, config_path, lambda w: service.check(config, w),
            service.secrets_beside(config),
        )  # fmt: skip
        for problem in found:
            click.echo(f"warning: {problem}", err=True)
        return
    try:
        for line in service.install(config, unit_dir, start=not no_start):
            click.echo(line)
    except systemd.InstallError as exc:
        raise click.ClickException(
            "not installed: the service user would fail:\n  " + "\n  ".join(exc.problems)
        ) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise click.ClickException(f"install failed: {exc}") from None


home_option = click.option(
    "--home",
    required=True,
    envvar="COMMUNE_AGENT_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="The agent's home (runtime, versions, tuf/). Env: COMMUNE_AGENT_HOME.",
)


@main.group("update-root")
def update_root_group() -> None:
    """The TUF root this PC trusts for releases (<home>/tuf/root.json): only versions
    the collector's signed targets list are installed, signed under this root's chain.

    \b
    Example:
        commune-agent update-root show --home /opt/commune-agent
        sudo commune-agent update-root fetch --home /opt/commune-agent \\
            --collector https://collector.example:8443
    """


@update_root_group.command("fetch")
@home_option
@click.option("--collector", required=True, metavar="URL",
              help="The collector's address, e.g. https://collector.example:8443.")  # fmt: skip
@collector_ca_option
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the collector.")  # fmt: skip
def update_root_fetch(home: Path, collector: str, ca_file: str | None, timeout: float) -> None:
    """Get the collector's newest release root over HTTPS, verified as for enrollment,
    check it is signed by its own keys, and trust it from now on: for a PC installed
    without one, or after the root was made anew. Exit 1 if refused, 3 if the
    collector could not be reached.

    \b
    Example:
        sudo commune-agent update-root fetch --home /opt/commune-agent \\
            --collector https://collector.example:8443 --ca /etc/commune-agent/collector-ca.pem
    """
    from agent.update import trust

    try:
        data = trust.download_root(collector, ca_file or "", timeout)
        summary = trust.install_root(home, data)
    except trust.RootUnreachable as exc:
        click.echo(f"Error: {exc}; nothing was changed", err=True)
        sys.exit(3)
    except trust.RootRefused as exc:
        raise click.ClickException(f"the collector's root is refused: {exc}") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {trust.root_path(home)}: {exc.strerror}"
        ) from None
    click.echo(
        f"wrote {trust.root_path(home)}: root v{summary.version}, expires "
        f"{summary.expires:%Y-%m-%d}, {_roles(summary.roles)}"
    )


@update_root_group.command("show")
@home_option
def update_root_show(home: Path) -> None:
    """The root in <home>/tuf/root.json, and the newest one the TUF client has reached
    from it by following the chain.

    \b
    Example:
        commune-agent update-root show --home /opt/commune-agent
    """
    from agent.update import trust

    path = trust.root_path(home)
    try:
        summary = trust.check_root(path.read_bytes())
    except OSError as exc:
        raise click.ClickException(
            f"{path}: {exc.strerror}: no release root here (commune-agent update-root fetch)"
        ) from None
    except trust.RootRefused as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(f"{path}: root v{summary.version}, expires {summary.expires:%Y-%m-%d}, "
               f"{_roles(summary.roles)}")  # fmt: skip
    reached = trust.trusted_now(home)
    if reached is not None:
        click.echo(f"trusted now: root v{reached.version}, expires {reached.expires:%Y-%m-%d}, "
                   f"{_roles(reached.roles)}")  # fmt: skip


def _roles(roles: dict[str, tuple[int, list[str]]]) -> str:
    return "; ".join(
        f"{name} {threshold} of {', '.join(k[:12] for k in keys)}"
        for name, (threshold, keys) in roles.items()
    )


def _first_root(home: Path, releases_url: str, ca_file: str) -> str:
    """Trust the collector's release root when the home has none yet (a PC enrolled, not
    installed from a kit that carries one); what was done, or what to run later."""
    from agent.update import trust

    path = trust.root_path(home)
    if path.exists():
        return f"kept the release root {path}"
    if not releases_url:
        return "no release root: set [update] url, then commune-agent update-root fetch"
    collector = releases_url.rstrip("/").removesuffix("/releases")
    try:
        summary = trust.install_root(home, trust.download_root(collector, ca_file))
    except (trust.RootUnreachable, trust.RootRefused, OSError) as exc:
        later = f"commune-agent update-root fetch --home {home} --collector {collector}"
        return f"warning: no release root yet ({exc}); updates wait for {later}"
    return f"trusted the collector's release root v{summary.version} ({path})"


@main.command("install-launcher")
@config_option
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default="/opt/commune-agent",
    show_default=True,
    help="The agent's home: launcher/, versions/, state/, tuf/.",
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
def install_launcher(
    config_path: Path, home: Path, unit_dir: Path, no_start: bool, print_only: bool
) -> None:
    """Linux: run the agent under the launcher, which updates it side by side and rolls
    back a version that fails (deploy/OPERATIONS.md, "Releases"). Lays out the home
    (the launcher, this agent as the first version) and replaces the commune-agent
    unit with one that runs the launcher as the user commune-agent.

    \b
    Example:
        sudo /opt/commune-agent/venv/bin/commune-agent install-launcher \\
            -c /etc/commune-agent/agent.toml --home /opt/commune-agent
        commune-agent install-launcher -c agent.toml --print
    """
    config = _load(config_path)
    from agent import service, systemd
    from agent.update import install

    home = home.absolute()
    python = str(Path(sys.executable).absolute())
    text = install.unit(home, Path(config.source).absolute(), python)
    if print_only:
        click.echo(text, nl=False)
        return
    try:
        for line in install.lay_out(home):
            click.echo(line)
        click.echo(_first_root(home, config.update.url, config.update.ca_file))
        systemd.create_user(service.SERVICE.name)
        install.hand_over(home, service.SERVICE.name, service.SERVICE.name)
        for line in systemd.install(
            service.SERVICE, config_path, text, lambda who: service.check(config, who),
            unit_dir, start=not no_start, secrets=service.secrets_beside(config),
        ):  # fmt: skip
            click.echo(line)
    except systemd.InstallError as exc:
        raise click.ClickException(
            "not installed: the service user would fail:\n  " + "\n  ".join(exc.problems)
        ) from None
    except (OSError, subprocess.CalledProcessError) as exc:
        raise click.ClickException(f"install failed: {exc}") from None


if __name__ == "__main__":
    main()
