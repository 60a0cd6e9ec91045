"""commune-collector inventory: a province's inventory from the official register."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.state import register
from collector.state.inventory import from_register, load_inventory, parse_inventory


@click.command("inventory")
@click.option("--province", required=True, help="Province slug, e.g. dong-nai (--list: all).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (default: print). An existing file is kept where it agrees: its "
    "communes keep their slugs and counts.",
)  # fmt: skip
@click.option(
    "--pcs", type=click.IntRange(0, 100_000),
    help="PCs expected per commune, where unknown: what \"% protected\" is of.",
)  # fmt: skip
@click.option("--routers", type=click.IntRange(0, 100), help="Routers per commune, where unknown.")
@click.option(
    "--polycoms", type=click.IntRange(0, 100), help="Polycoms per commune, where unknown."
)
@click.option(
    "--official-slugs", is_flag=True,
    help="Communes of the existing file take the register's slug; the one they had goes to "
    "'formerly', so their agents go on reporting and their history moves with them.",
)  # fmt: skip
def inventory_command(
    province: str,
    output: Path | None,
    pcs: int | None,
    routers: int | None,
    polycoms: int | None,
    official_slugs: bool,
) -> None:
    """Write a province's inventory: every commune of the official register (the units
    after 1 July 2025) with its official name, code and slug; pcs, routers and polycoms
    to fill in.

    \b
    Example:
        commune-collector inventory --province dong-nai --pcs 8 --routers 1 --polycoms 1 \\
            -o /etc/commune-collector/inventory/dong-nai.toml
        commune-collector inventory --province dong-nai --official-slugs \\
            -o /etc/commune-collector/inventory/dong-nai.toml
    """
    try:
        official = register.province(province)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    existing = None
    if output is not None and output.exists():
        try:
            existing = load_inventory(output)
        except ConfigError as exc:
            raise click.ClickException(f"the existing file is wrong: {exc}") from None
    counts = (("pcs", pcs), ("routers", routers), ("polycoms", polycoms))
    defaults = {k: v for k, v in counts if v is not None}
    text = from_register(province, existing, defaults, official_slugs)
    try:  # what is written must load: e.g. an old slug that is another unit's slug now
        parse_inventory(tomllib.loads(text), str(output or "the inventory"))
    except ConfigError as exc:
        raise click.ClickException(f"not written: {exc}") from None
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}: {len(official.units)} communes of {official.name}", err=True)
