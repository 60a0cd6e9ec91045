from __future__ import annotations

import bz2
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import snmpsim_data

from agent import catalogue
from agent.checks.base import Check
from agent.outbox import Outbox
from agent.wire import Sample
from collector.state.store import StateStore
from tests.servers import Mosquitto, Snmpd, SnmpSim

DATA = Path(__file__).parent / "data"
RECORDINGS = Path(snmpsim_data.__file__).parent / "data"


def recording(relative: str) -> str:
    """A real device recording shipped by the snmpsim-data package."""
    return bz2.decompress((RECORDINGS / relative).read_bytes()).decode("latin-1")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def snmpsim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpSim]:
    """Real Huawei and Cisco recordings, and Polycom endpoints written from the MIB."""
    records = {
        "huawei-s5720": recording("network/router/huawei-s5720.snmprec.bz2"),
        "cisco-c3560": recording("network/switch/cisco-c3560.snmprec.bz2"),
        "cisco-unmarked": recording("network/router/cisco-unmarked-0.snmprec.bz2"),
    }
    for path in sorted((DATA / "polycom").glob("*.snmprec")):
        records[path.stem] = path.read_text()
    # snmpsim runs as nobody: its files must not sit under pytest's private temp dir.
    workdir = Path(tempfile.mkdtemp(prefix="commune-snmpsim-"))
    workdir.chmod(0o755)
    server = SnmpSim(workdir, records).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    server = Snmpd(tmp_path_factory.mktemp("snmpd")).start()
    yield server
    server.stop()


# Every store and outbox a test opens is closed when the test ends: Python 3.13 warns of
# a connection collected unclosed (an error here: filterwarnings), and on Windows an
# open handle keeps its file locked. Those a module- or session-wide fixture opens are
# that fixture's to close, when its scope ends.
class _Opened:
    """What the running test opened, and whether a wider fixture is being set up."""

    stores: ClassVar[list[StateStore | Outbox]] = []
    wide_fixtures: ClassVar[int] = 0
    in_test: ClassVar[bool] = False


def _tracked(cls: type[StateStore] | type[Outbox]) -> None:
    original = cls.__init__

    def init(self: StateStore | Outbox, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        if _Opened.in_test and not _Opened.wide_fixtures:
            _Opened.stores.append(self)

    cls.__init__ = init  # type: ignore[method-assign,assignment]


_tracked(StateStore)
_tracked(Outbox)


class _Made:
    """Every sample an agent's check makes while a test runs (None: not watching)."""

    samples: ClassVar[list[Sample] | None] = None


def _watch_samples() -> None:
    original = Check.sample

    def sample(self: Check[object], *args: object, **kwargs: object) -> Sample:  # type: ignore[type-var]
        made = original(self, *args, **kwargs)  # type: ignore[arg-type]
        if _Made.samples is not None:
            _Made.samples.append(made)
        return made

    Check.sample = sample  # type: ignore[assignment,method-assign]


_watch_samples()


@pytest.fixture(autouse=True)
def _every_sample_a_check_makes_matches_the_catalogue(
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """Whatever a test makes the agent's checks observe (recorded antivirus reports,
    snmpsim devices, live snmpd, Polycom replays, this machine), each sample must be
    what the field catalogue says; ``off_catalogue`` marks a test that means otherwise."""
    made: list[Sample] = []
    _Made.samples = made
    try:
        yield
    finally:
        _Made.samples = None
    if request.node.get_closest_marker("off_catalogue") is None:
        found = [problem for s in made for problem in catalogue.problems(s)]
        assert not found, f"samples outside the field catalogue: {found[:10]}"


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object]) -> Iterator[object]:
    wide = fixturedef.scope != "function"
    _Opened.wide_fixtures += wide
    try:
        return (yield)
    finally:
        _Opened.wide_fixtures -= wide


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup() -> Iterator[None]:
    _Opened.in_test = True
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown() -> Iterator[None]:
    try:
        return (yield)
    finally:
        _Opened.in_test = False
        while _Opened.stores:
            _Opened.stores.pop().close()


#: Fixtures that start a real server or process; a test using one is a ``servers`` test.
SERVER_FIXTURES = frozenset(
    {"mosquitto", "snmpsim", "snmpd", "broker", "tls_broker", "province", "whole", "lone",
     "collector", "browser", "videoos", "videoos_tls", "receivers", "telegram", "root"}
)  # fmt: skip
#: Modules whose tests start servers or processes themselves.
SERVER_MODULES = ("test_e2e_", "test_sink", "test_sharding", "test_fleet", "test_make_run")
SERVER_MODULES += ("test_install_linux", "test_broker_security", "test_console", "hostile")
SERVER_MODULES += ("test_redelivery", "test_soakcheck", "test_soak")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES or any(m in item.nodeid for m in SERVER_MODULES):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium through Playwright, as the console's users see it (Debian's chromium)."""
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("COMMUNE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.fail(f"{chromium} missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()
