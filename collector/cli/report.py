"""commune-collector report: the monthly figures, as the province reports them."""

from __future__ import annotations

import functools
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click

from agent.configtypes import ConfigError
from collector.cli.common import _load, _store, config_option
from collector.config import CollectorConfig, load_collector_config
from collector.outputs.report.build import MonthlyReport, build, each_province, month_bounds
from collector.outputs.report.render import render
from collector.state.inventory import Inventory, load_inventory
from collector.state.store import StateStore
from collector.state.systems import Catalogue, load_catalogues

#: ``--province all``: every province of the config's inventories.
ALL = "all"


@click.command("report")
@config_option
@click.option("--month", required=True, help="The month, e.g. 2025-10 (local time).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docx", "xlsx", "csv", "html", "md"]),
    default="md",
    show_default=True,
)
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True)
@click.option(
    "--province",
    default=None,
    help=f"Province slug (default: the inventory's); {ALL!r}: every inventory's province, "
    "one file each in the --output folder.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write here (docx and xlsx need it; text formats default to the terminal); "
    f"a folder with --province {ALL}.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 32),
    default=2,
    show_default=True,
    help=f"With --province {ALL}: provinces made at once, each in a process of its own.",
)
@click.option(
    "--number",
    default="",
    help='The docx\'s registered number ("Số: 12/BC-…"); without it, left blank to fill in.',
)
def report_command(
    config_path: Path | None,
    month: str,
    fmt: str,
    lang: str,
    province: str | None,
    output: Path | None,
    number: str,
    jobs: int,
) -> None:
    """The monthly report: anti-malware coverage, the dedicated line, conferencing, alerts,
    and the shared systems when [collector] systems lists the province's catalogue.

    Per commune of the inventory and for the province, exactly from the
    recorded intervals.

    \b
    Example:
        commune-collector report -c collector.toml --month 2025-10 --format docx -o 2025-10.docx
        commune-collector report -c collector.toml --month 2025-10 --format xlsx -o 2025-10.xlsx
        commune-collector report -c collector.toml --month 2025-10 --lang en
        commune-collector report -c collector.toml --month 2025-10 --province all -o reports/

    The docx is the report the office signs, in the state's format (Nghị định
    30/2020): Kính gửi, Căn cứ, the figures written in, sections for the office to
    complete, the signer, the tables as its annex. The issuing body, addressee,
    basis and signer come from [report] in the config ([report.en] with --lang en).

    A national collector's reports, every province's (--province all), are made in
    one run: one file each, named like dong-nai-2025-10.docx, --jobs provinces at
    once (a process each), each holding one province's report at a time.
    """
    config = _load(config_path)
    try:
        inventories = [load_inventory(p) for p in config.collector.inventory]
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if province == ALL:
        if output is None:
            raise click.UsageError(f"--province {ALL} needs --output FOLDER (a file per province)")
        job = _Job(config_path, month, fmt, lang, number, output, time.time())
        _every_province(job, config, inventories, jobs)
        return
    if output is not None and output.is_dir():
        raise click.BadParameter(
            f"{output} is a folder: name a file (or --province {ALL})", param_hint="--output"
        )
    if province is None:
        if not inventories:
            raise click.ClickException("no inventory in the config: say which --province")
        province = inventories[0].province
    inventory = next((i for i in inventories if i.province == province), None)
    catalogues = _catalogues(config, inventories)
    try:
        report = build(
            _store(config),
            province,
            month,
            inventory,
            now=time.time(),
            catalogue=catalogues.get(province),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    data = render(report, fmt, lang, config.report.issuing(number))  # type: ignore[arg-type]
    if output is not None:
        output.write_bytes(data)
        click.echo(f"{output}: {len(report.communes)} communes, {report.month}", err=True)
    elif fmt in ("xlsx", "docx"):
        raise click.UsageError(f"a {fmt} report needs --output FILE")
    else:
        sys.stdout.write(data.decode())


def _catalogues(config: CollectorConfig, inventories: list[Inventory]) -> dict[str, Catalogue]:
    try:
        return load_catalogues(config.collector.systems, inventories)
    except (ConfigError, OSError) as exc:
        raise click.ClickException(f"collector.systems: {exc}") from None


@dataclass(frozen=True)
class _Job:
    """A national run's reports: what each province's is made with."""

    config_path: Path | None
    month: str
    fmt: str
    lang: str
    number: str
    folder: Path
    now: float
    """One moment for every province's report."""


def _every_province(
    job: _Job, config: CollectorConfig, inventories: list[Inventory], jobs: int
) -> None:
    """Each inventory's province's report into the job's folder: in turn, or in ``jobs``
    processes at once (each building one province's report at a time)."""
    folder = job.folder
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{folder} is no folder", param_hint="--output")
    if not inventories:
        raise click.ClickException(f"no inventory in the config: no province for --province {ALL}")
    try:
        month_bounds(job.month)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    catalogues = _catalogues(config, inventories)
    folder.mkdir(parents=True, exist_ok=True)
    if jobs == 1 or len(inventories) == 1:
        store = _store(config)
        for report in each_province(store, job.month, inventories, catalogues, job.now):
            path = _write(job, report, config)
            click.echo(f"{path}: {len(report.communes)} communes, {job.month}", err=True)
        return
    # The store brought to this version once, here, before the workers open it each: two
    # of them migrating a large store of the release before at once would wait on each
    # other's lock.
    _store(config).close()
    # Spawned, not forked: a fork would copy this process's threads and store handle.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(inventories)), mp_context=context) as pool:
        made = pool.map(functools.partial(_province_file, job), [i.province for i in inventories])
        for path, communes in made:
            click.echo(f"{path}: {communes} communes, {job.month}", err=True)


def _write(job: _Job, report: MonthlyReport, config: CollectorConfig) -> Path:
    path = job.folder / f"{report.province}-{job.month}.{job.fmt}"
    issuer = config.report.issuing(job.number)
    path.write_bytes(render(report, job.fmt, job.lang, issuer))  # type: ignore[arg-type]
    return path


@functools.cache
def _worker(config_path: Path | None) -> _Worker:
    """A worker process's config, inventories, catalogues and store, read once (the
    parent checked them)."""
    config = load_collector_config(config_path, check=False)
    inventories = [load_inventory(path) for path in config.collector.inventory]
    return _Worker(
        config,
        {i.province: i for i in inventories},
        load_catalogues(config.collector.systems, inventories),
        StateStore(Path(config.store.path)),
    )


@dataclass(frozen=True)
class _Worker:
    config: CollectorConfig
    inventories: dict[str, Inventory]
    catalogues: dict[str, Catalogue]
    store: StateStore


def _province_file(job: _Job, province: str) -> tuple[Path, int]:
    """In a worker process: one province's report, written; its file and its communes."""
    worker = _worker(job.config_path)
    report = build(
        worker.store, province, job.month, worker.inventories[province], now=job.now,
        catalogue=worker.catalogues.get(province),
    )  # fmt: skip
    return _write(job, report, worker.config), len(report.communes)
