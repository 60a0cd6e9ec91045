"""commune-collector release ...: the agents' signed releases (a TUF repository).

Root and targets keys are offline: files the release manager keeps and names with
``--key``; the online snapshot and timestamp keys are in the collector's folder
([releases] online_keys_dir). deploy/OPERATIONS.md, "Releases", is the key ceremony.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import get_args

import click

from collector.cli.common import _load, config_option
from collector.config import CollectorConfig
from collector.release import keys as keyfiles
from collector.release.keys import ReleaseKey, Role
from collector.release.repository import ReleaseError, Repository, load_online

key_option = click.option(
    "--key",
    "key_paths",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="An offline key file to sign with (repeat for several: root keys, targets keys).",
)


def _repository(config: CollectorConfig) -> Repository:
    return Repository(
        config.releases.repository_path(config.store.path), config.releases.expiries()
    )


def _online_dir(config: CollectorConfig) -> Path:
    return config.releases.keys_dir(config.store.path)


def _keys(paths: tuple[Path, ...], role: Role | None = None) -> list[ReleaseKey]:
    try:
        return [keyfiles.read(path, role) for path in paths]
    except keyfiles.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


def _staged_changes(repo: Repository) -> list[str]:
    """What the staged targets change, release by release with its hash: a key holder
    signs what is staged, whoever staged it, and must see what that is."""
    staged = repo.staged().get("targets")
    if staged is None:
        return []
    try:
        published = dict(repo.targets().signed.targets)
    except ReleaseError:
        published = {}
    lines = []
    for name, target in sorted(staged.signed.targets.items()):
        if name not in published or published[name].hashes != target.hashes:
            digest = target.hashes.get("sha256", "?")
            lines.append(f"to sign: {name} sha256 {digest} ({target.length} B)")
    lines += [
        f"to sign: {name} removed" for name in sorted(set(published) - set(staged.signed.targets))
    ]
    return lines


def _sign_and_publish(config: CollectorConfig, repo: Repository, signers: list[ReleaseKey]) -> None:
    """Sign what is staged with ``signers`` (if any), publish when complete, say where
    things stand."""
    if signers:
        for line in _staged_changes(repo):
            click.echo(line)
        for line in repo.sign(signers):
            click.echo(f"signed {line}")
    written = repo.publish(_online_dir(config))
    if written:
        click.echo("published: " + ", ".join(written))
        if not any(name == "timestamp.json" for name in written):
            click.echo(
                f"snapshot and timestamp not signed here (no online keys of this root in "
                f"{_online_dir(config)}): the running collector signs them within a minute"
            )
        return
    for staged in repo.signatures():
        for who, missing, unsigned in staged.needed:
            if missing:
                click.echo(
                    f"staged {staged.role} v{staged.version}: {missing} more signature(s) of "
                    f"{who}'s keys ({', '.join(unsigned)}): "
                    "commune-collector release sign --key FILE"
                )


def _failure(exc: ReleaseError | OSError) -> click.ClickException:
    """A refusal as it is; a file the command could not write named with why (run it as
    the collector's user, or as root: the repository is given to the collector's user)."""
    if isinstance(exc, OSError):
        return click.ClickException(f"{exc.filename or 'a file'}: {exc.strerror or exc}")
    return click.ClickException(str(exc))


@click.group("release")
def release_group() -> None:
    """The agents' signed releases: keys, versions, signatures (TUF), served by the
    collector at /releases/ for the PCs to update themselves.

    \b
    Example:
        commune-collector release keygen targets /media/usb/targets.key
        commune-collector release add commune-agent-0.4.0.zip --key /media/usb/targets.key
        commune-collector release list
    """


@release_group.command("keygen")
@click.argument("role", type=click.Choice(get_args(Role)))
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def keygen(role: Role, path: Path) -> None:
    """Make a key for ROLE in PATH (0600) and its public half in PATH.pub.

    Root and targets keys belong offline (removable media kept apart); the online
    keys are made by `init` and `rotate` in the collector's folder.

    \b
    Example:
        commune-collector release keygen root /media/usb-a/root-a.key
        commune-collector release keygen targets /media/usb-t/targets.key
    """
    try:
        key = keyfiles.generate(path, role)
    except FileExistsError:
        raise click.ClickException(f"{path}: a file is there already; never overwritten") from None
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror}") from None
    click.echo(f"{role} key {key.keyid} in {path} (private), {keyfiles.public_path(path)} (public)")


@release_group.command("init")
@config_option
@click.option("--root-key", "root_paths", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A root key file, private or .pub (repeat: 3 keys for 2 of 3).")  # fmt: skip
@click.option("--root-threshold", type=int, default=1, show_default=True,
              help="Root signatures needed (2 of 3 keys in the ceremony).")  # fmt: skip
@click.option("--targets-key", "targets_paths", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A targets key file, private or .pub (repeat for several).")  # fmt: skip
@click.option("--targets-threshold", type=int, default=1, show_default=True)
def init(
    config_path: Path | None,
    root_paths: tuple[Path, ...],
    root_threshold: int,
    targets_paths: tuple[Path, ...],
    targets_threshold: int,
) -> None:
    """Make the release repository: root v1 and an empty targets list, signed by the
    private keys given (public ones sign later with `sign`), and the online snapshot
    and timestamp keys in the collector's folder. PCs get metadata/1.root.json (the
    kit or `commune-agent update-root fetch`).

    \b
    Example:
        commune-collector release init -c /etc/commune-collector/collector.toml \\
            --root-key /media/a/root-a.key --root-key /media/b/root-b.key \\
            --root-key /media/c/root-c.key.pub --root-threshold 2 \\
            --targets-key /media/t/targets.key
    """
    from collector.release.repository import make_online

    config = _load(config_path)
    repo = _repository(config)
    roots, targets = _keys(root_paths, "root"), _keys(targets_paths, "targets")
    folder = _online_dir(config)
    try:
        try:
            online = load_online(folder)
        except ReleaseError:
            online = make_online(folder)
        repo.init(roots, root_threshold, targets, targets_threshold, online)
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None
    click.echo(f"release repository in {repo.path}; online keys in {folder}")
    _sign_and_publish(config, repo, [])


@release_group.command("build")
@click.option("--version", "version", required=True, help="The release's version: 0.4.0.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The bundle file; default commune-agent-<version>.zip here.")  # fmt: skip
def build(version: str, output: Path | None) -> None:
    """Bundle the agent installed beside this collector as release VERSION (a
    reproducible zip with a manifest of hashes), to `add` next.

    \b
    Example:
        commune-collector release build --version 0.4.0 -o /tmp/commune-agent-0.4.0.zip
    """
    import agent
    from agent.update import bundle, versions

    if not versions.is_version(version):
        raise click.BadParameter(f"{version!r}: 1 to 4 dot-separated numbers (0.4.0)")
    out = output or Path(f"commune-agent-{version}.zip")
    source = Path(agent.__file__).resolve().parent.parent
    try:
        manifest = bundle.build(source, version, out)
    except (bundle.BundleError, OSError) as exc:
        raise click.ClickException(f"{out}: {exc}") from None
    click.echo(f"{out}: agent {manifest.version}, {len(manifest.files)} files from {source}")


@release_group.command("add")
@config_option
@click.argument("bundle_path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@key_option
def add(config_path: Path | None, bundle_path: Path, key_paths: tuple[Path, ...]) -> None:
    """Add the release in FILE (its manifest names the version) to the targets; signed
    and published at once with --key (the targets key), else staged for `sign`.

    \b
    Example:
        commune-collector release add commune-agent-0.4.0.zip --key /media/t/targets.key
    """
    config = _load(config_path)
    repo = _repository(config)
    signers = _keys(key_paths)
    try:
        made = repo.add(bundle_path)
        click.echo(f"staged {made.path}: {made.length} bytes, sha256 {made.sha256}")
        _sign_and_publish(config, repo, signers)
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None


@release_group.command("sign")
@config_option
@key_option
def sign(config_path: Path | None, key_paths: tuple[Path, ...]) -> None:
    """Sign what is staged (targets, root) with offline keys; published once every
    staged role holds its threshold (a new root: the old root's and its own).

    \b
    Example:
        commune-collector release sign --key /media/a/root-a.key --key /media/t/targets.key
    """
    config = _load(config_path)
    if not key_paths:
        raise click.BadParameter("give at least one key file", param_hint="--key")
    repo = _repository(config)
    try:
        _sign_and_publish(config, repo, _keys(key_paths))
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None


@release_group.command("revoke")
@config_option
@click.argument("version")
@click.option("--why", default="", help="Recorded with the revocation (signed, public).")
@key_option
def revoke(config_path: Path | None, version: str, why: str, key_paths: tuple[Path, ...]) -> None:
    """Remove VERSION from the targets: agents refuse it from then on (those running it
    stay until the rollout moves them). Signed and published with --key.

    \b
    Example:
        commune-collector release revoke 0.4.0 --why "crash at start on Windows 7" \\
            --key /media/t/targets.key
    """
    config = _load(config_path)
    repo = _repository(config)
    signers = _keys(key_paths)
    try:
        repo.revoke(version, why)
        click.echo(f"staged targets without {version}")
        _sign_and_publish(config, repo, signers)
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None


@release_group.command("rotate")
@config_option
@click.option("--role", type=click.Choice(get_args(Role)), required=True)
@click.option("--new-key", "new_paths", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The role's new key files, private or .pub (online roles: made when "
                   "none is given).")  # fmt: skip
@click.option("--threshold", type=int, default=1, show_default=True)
@key_option
def rotate(
    config_path: Path | None,
    role: Role,
    new_paths: tuple[Path, ...],
    threshold: int,
    key_paths: tuple[Path, ...],
) -> None:
    """Give ROLE new keys: a new root version naming them, to be signed by the current
    root's threshold and (a root rotation) the new one's. A targets rotation re-signs the
    targets with the new key; an online rotation makes the new key beside the old one,
    used once the root is published. Agents follow the root chain by themselves.

    \b
    Example:
        commune-collector release rotate --role targets --new-key /media/t2/targets.key \\
            --key /media/a/root-a.key --key /media/b/root-b.key --key /media/t2/targets.key
        commune-collector release rotate --role timestamp \\
            --key /media/a/root-a.key --key /media/b/root-b.key
    """
    config = _load(config_path)
    repo = _repository(config)
    new = _keys(new_paths, role)
    if role in keyfiles.ONLINE and not new:
        path = keyfiles.next_path(keyfiles.online_key_path(_online_dir(config), role))
        new = _keys((path,), role) if path.exists() else [keyfiles.generate(path, role)]
        click.echo(f"new {role} key {new[0].keyid} in {path} (in use once published)")
    if not new:
        raise click.BadParameter(f"the {role} role's new key files", param_hint="--new-key")
    try:
        repo.rotate(role, new, threshold)
        click.echo(f"staged a root giving {role} {len(new)} key(s), threshold {threshold}")
        signing_new = [] if role in keyfiles.ONLINE else new
        _sign_and_publish(config, repo, [*_keys(key_paths), *signing_new])
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None


@release_group.command("list")
@config_option
def list_command(config_path: Path | None) -> None:
    """The released versions (hash, size), the revoked ones, each role's version,
    expiry and keys, and what is staged waiting for signatures.

    \b
    Example:
        commune-collector release list -c /etc/commune-collector/collector.toml
    """
    config = _load(config_path)
    try:
        listing = _repository(config).listing()
    except (ReleaseError, OSError) as exc:
        raise _failure(exc) from None
    now = time.time()
    for release in listing.releases:
        click.echo(f"{release.version:12} {release.length:>10} B  sha256 {release.sha256}")
    if not listing.releases:
        click.echo("no release signed yet")
    for version, why in listing.revoked.items():
        click.echo(f"{version:12} revoked {why}")
    for role in listing.roles:
        left = (role.expires.timestamp() - now) / 86400
        keys = ", ".join(k[:12] for k in role.keyids)
        click.echo(
            f"{role.role:9} v{role.version:<5} expires {role.expires:%Y-%m-%d %H:%M}Z "
            f"({left:.1f} days)  {role.threshold} of [{keys}]"
        )
    for staged in listing.staged:
        state = "complete" if staged.complete else "waiting for signatures"
        click.echo(f"staged {staged.role} v{staged.version}: {state}")
        for who, missing, unsigned in staged.needed:
            if missing:
                click.echo(f"    {missing} more of {who}'s keys: {', '.join(unsigned)}")
