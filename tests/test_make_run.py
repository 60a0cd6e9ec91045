"""`make run`'s script: within a minute a newcomer sees real data for the province."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.servers import REPO, free_port


def test_make_run_shows_the_simulated_province_within_a_minute(tmp_path: Path) -> None:
    api = free_port()
    env = {
        **os.environ,
        "COMMUNE_MQTT_PORT": str(free_port()),
        "COMMUNE_API_PORT": str(api),
        "COMMUNE_SNMP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "COMMUNE_RUN_DIR": str(tmp_path / "run"),
        "VENV": str(Path(os.sys.executable).parent.parent),  # type: ignore[attr-defined]
    }
    script = subprocess.Popen(
        ["bash", str(REPO / "deploy" / "dev" / "run-local.sh")],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    province: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/province") as r:
                    province = json.loads(r.read())
            except OSError:
                continue
            if province["polycoms_reporting"] == 6 and province["pcs_reporting"] >= 40:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/communes/la-nga") as r:
            la_nga = json.loads(r.read())
    finally:
        os.killpg(script.pid, signal.SIGINT)  # Ctrl-C
        output = script.communicate(timeout=30)[0].decode(errors="replace")
    assert province["communes"] == 9, output
    assert province["communes_by_status"]["no_data"] == 3  # type: ignore[index]
    # 5 fleet communes x 8 PCs + this machine's agent.
    assert province["pcs_reporting"] >= 40 and province["polycoms_reporting"] == 6
    # La Ngà's Polycom and router are snmpsim recordings polled by a real agent.
    [polycom] = la_nga["polycom"]["devices"]
    assert polycom["agent"] == "poller" and polycom["ready"] is True, polycom
    assert la_nga["interfaces"]["devices"] == 1 and la_nga["interfaces"]["all"]
    assert f"http://127.0.0.1:{api}/docs" in output and "stopped." in output
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    ).stdout
    assert leftovers == "", "Ctrl-C must stop everything make run started"
