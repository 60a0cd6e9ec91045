from __future__ import annotations

import bz2
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import snmpsim_data

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
