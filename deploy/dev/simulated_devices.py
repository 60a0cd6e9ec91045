"""`make run`'s simulated commune devices: a router and a Polycom answering SNMP.

snmpsim serves a real Huawei S5720 recording (from the snmpsim-data package)
as community ``router`` and a Polycom Group endpoint recorded from its MIB
(tests/data/polycom) as community ``polycom``, on 127.0.0.1:<port> (UDP),
until stopped. A real agent polls them like the devices of a commune office.

    .venv/bin/python deploy/dev/simulated_devices.py --port 18161
"""

from __future__ import annotations

import argparse
import bz2
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

import snmpsim_data

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import SnmpSim  # noqa: E402  (the same launcher the tests use)

ROUTER = Path(snmpsim_data.__file__).parent / "data/network/router/huawei-s5720.snmprec.bz2"
POLYCOM = REPO / "tests" / "data" / "polycom" / "polycom-idle.snmprec"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18161)
    args = parser.parse_args()
    records = {
        "router": bz2.decompress(ROUTER.read_bytes()).decode("latin-1"),
        "polycom": POLYCOM.read_text(),
    }
    # snmpsim drops root to nobody: its files must be readable by everyone, which
    # a directory under a private one (a home, pytest's temp) would not be.
    workdir = Path(tempfile.mkdtemp(prefix="commune-devices-"))
    workdir.chmod(0o755)
    server = SnmpSim(workdir, records)
    server.port = args.port
    server.start()
    print(f"simulated router and Polycom on udp 127.0.0.1:{args.port}", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
