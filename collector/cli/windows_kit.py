"""commune-collector windows-kit: the province's offline MSI for commune PCs."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import _load, config_option
from collector.kit.errors import KitError

_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("windows-kit")
@click.option("--python-embed", "embed_zip", required=True, type=_file,
              help="python.org's embeddable CPython 3.11–3.14 for Windows "
              "(python-3.X.Y-embed-amd64.zip), brought once by the operator.")  # fmt: skip
@click.option("--sha256", "embed_sha256", required=True, metavar="HEX",
              help="The SHA-256 python.org publishes for that file (checked).")  # fmt: skip
@click.option("--server", required=True, metavar="URL",
              help="The collector's https address as the commune PCs reach it.")  # fmt: skip
@click.option("--province", required=True, metavar="SLUG",
              help="The province this kit is for (a slug: dong-nai).")  # fmt: skip
@click.option("-o", "--output", "out", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write the kit into.")  # fmt: skip
@click.option("--collector-ca", type=_file,
              help="The CA of the collector's HTTPS certificate, when Windows does not "
              "trust it already (the PCs check the collector with it).")  # fmt: skip
@click.option("--lock", type=_file, default=None,
              help="The pinned, hashed Windows lock; default "
              "deploy/windows/requirements-win.lock.")  # fmt: skip
@click.option("--wheelhouse", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Take the Windows wheels from this folder (offline) instead of PyPI; "
              "only files whose hash the lock names are used.")  # fmt: skip
@config_option
def windows_kit_command(
    embed_zip: Path, embed_sha256: str, server: str, province: str, out: Path,
    collector_ca: Path | None, lock: Path | None, wheelhouse: Path | None,
    config_path: Path | None,
) -> None:  # fmt: skip
    """Build, on Linux, one province's offline Windows kit: commune-agent.msi (runtime,
    launcher, agent, release root, CA, collector address), the Windows wheels for
    CPython 3.11–3.14, the PowerShell scripts, README.txt (vi/en) and SHA256SUMS.
    Needs Debian's wixl and msitools. The release root comes from the collector's
    release repository (commune-collector release init first).

    \b
    Example:
        commune-collector windows-kit -c /etc/commune-collector/collector.toml \\
            --python-embed python-3.12.10-embed-amd64.zip \\
            --sha256 <the hash on python.org's release page> \\
            --server https://collector.dong-nai.example:8443 --province dong-nai \\
            -o /srv/kits/0.3.0
        # then on a PC: msiexec /i commune-agent.msi /qn ENROLL_TOKEN=<token>
    """
    from collector.kit import build, msi

    missing = msi.missing_tools()
    if missing:
        raise click.ClickException(f"{', '.join(missing)} not found: apt install wixl msitools")
    config = _load(config_path)
    root = config.releases.repository_path(config.store.path) / "metadata" / "root.json"
    if not root.is_file():
        raise click.ClickException(
            f"no release root at {root}: run `commune-collector release init` first "
            "(deploy/OPERATIONS.md, Releases): a kit's PCs trust only that root's releases"
        )
    request = build.KitRequest(
        embed_zip=embed_zip, embed_sha256=embed_sha256, server=server, province=province,
        out=out, root_json=root.read_bytes(),
        collector_ca=collector_ca.read_bytes() if collector_ca else None,
        lock=lock or build.DEFAULT_LOCK, wheelhouse=wheelhouse,
    )  # fmt: skip
    try:
        kit = build.build(request, progress=click.echo)
    except KitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"kit for {province}: agent {kit.version}, CPython {kit.python}; {len(kit.files)} "
        f"files in {out} (SHA256SUMS). Install: msiexec /i {kit.msi.name} /qn "
        "ENROLL_TOKEN=<token>"
    )
