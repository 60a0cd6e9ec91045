"""`make run`'s script: within a minute a newcomer sees real data for the province."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.servers import REPO, free_port


def rollout_ready(api: int) -> dict[str, dict[str, int]]:
    """Per commune, once every enrolled agent says it runs the config it was sent (or
    after 20 s)."""
    deadline = time.monotonic() + 20
    url = f"http://127.0.0.1:{api}/api/v1/enrollment/communes?province=dong-nai"
    while True:
        with urllib.request.urlopen(url) as r:
            communes = json.loads(r.read())["communes"]
        if time.monotonic() > deadline or all(
            c["configs_current"] == c["enrolled"] for c in communes
        ):
            return {c["commune"]: c for c in communes}
        time.sleep(1)


def systems_reached(api: int) -> dict[str, str]:
    """La Ngà's reach of each shared system, once its poller has probed them all."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{api}/api/v1/communes/la-nga/systems?province=dong-nai"
        with urllib.request.urlopen(url) as r:
            answer = json.loads(r.read())
        found = {s["id"]: s["reach"]["state"] for s in answer["systems"]}
        if found and "not_probed" not in found.values():
            break
        time.sleep(1)
    return found


#: Runs its arguments with SIGINT's default action (exec keeps it; an ignored one stays).
AS_FROM_A_TERMINAL = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def interrupt(script: subprocess.Popen[bytes]) -> str:
    """Ctrl-C, as a person at the terminal: what the script said. One that has not
    stopped a minute later fails the test with what was still running (its pipe drained
    and closed: left open, its warning would fail a later test)."""
    os.killpg(script.pid, signal.SIGINT)
    try:
        return script.communicate(timeout=60)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        left = subprocess.run(
            ["ps", "-o", "pid,stat,etimes,wchan:24,args", "-s", str(script.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        os.killpg(script.pid, signal.SIGKILL)
        output = script.communicate()[0].decode(errors="replace")
        pytest.fail(f"make run still running 60 s after Ctrl-C:\n{left}\n{output[-4000:]}")


def test_make_run_shows_the_simulated_province_within_a_minute(tmp_path: Path) -> None:
    api = free_port()
    env = {
        **os.environ,
        "COMMUNE_MQTT_PORT": str(free_port()),
        "COMMUNE_API_PORT": str(api),
        "COMMUNE_SNMP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "COMMUNE_SYSTEMS_PORT": str(free_port()),
        "COMMUNE_RUN_DIR": str(tmp_path / "run"),
        "VENV": str(Path(os.sys.executable).parent.parent),  # type: ignore[attr-defined]
    }
    script = subprocess.Popen(
        # As from a terminal, Ctrl-C's SIGINT not ignored: a test run started in the
        # background of a shell without job control (`nohup ... &`) ignores it, and so
        # would the script's shell, its trap never set (signals ignored on entry stay so).
        [
            sys.executable,
            "-c",
            AS_FROM_A_TERMINAL,
            "bash",
            str(REPO / "deploy" / "dev" / "run-local.sh"),
        ],
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
        rollout = rollout_ready(api)
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/systems") as r:
            catalogue = json.loads(r.read())
        reach = systems_reached(api)
    finally:
        output = interrupt(script)
    assert province["communes"] == 95, output  # the official register's units
    assert province["communes_by_status"]["no_data"] == 95 - 6  # type: ignore[index]
    # 5 fleet communes x 8 PCs + this machine's agent.
    assert province["pcs_reporting"] >= 40 and province["polycoms_reporting"] == 6
    # The inventory make run writes expects them: "% protected" is of the expected PCs.
    assert province["pcs_expected"] == 41 and province["pcs_denominator"] == 41, province
    assert province["percent_protected_of"] == "expected"  # the 89 silent add nothing
    # La Ngà's Polycom and router are snmpsim recordings polled by a real agent.
    [polycom] = la_nga["polycom"]["devices"]
    assert polycom["agent"] == "poller" and polycom["ready"] is True, polycom
    assert la_nga["interfaces"]["devices"] == 1 and la_nga["interfaces"]["all"]
    # Its switch's unused sockets (never seen up) are not a problem, nor an alert.
    ports = la_nga["interfaces"]
    never_up = [i for i in ports["all"] if i["up"] is False and not i["seen_up"]]
    assert ports["unused"] == sum(1 for i in never_up if i["admin_up"]), ports
    assert ports["down"] == 0 and "interface_down" not in {r["code"] for r in la_nga["reasons"]}
    assert f"http://127.0.0.1:{api}/docs" in output and "stopped." in output
    # Every agent came in by enrollment with a token, and runs the profile's checks.
    assert rollout["la-nga"]["enrolled"] == 2 and rollout["la-nga"]["configs_current"] == 2
    fleet = [c for slug, c in rollout.items() if slug != "la-nga" and c["enrolled"]]
    assert len(fleet) == 5 and all(c["enrolled"] == 9 for c in fleet), rollout
    assert sum(c["configs_current"] for c in fleet) == 45, rollout
    # The shared systems make run serves and lists: La Ngà's poller probes them.
    assert [s["id"] for s in catalogue["systems"]] == ["mot-cua", "qlvb", "dongnai-lis"]
    assert [s["communes"] for s in catalogue["websites"]] == [["la-nga"]]
    assert reach == {"mot-cua": "ok", "qlvb": "ok", "dongnai-lis": "bad_response",
                     "website": "ok"}, reach  # fmt: skip
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False
    ).stdout
    assert leftovers == "", "Ctrl-C must stop everything make run started"


def test_the_availability_line_asks_for_vietnams_day_in_any_zone() -> None:
    """The printed ``availability --from … --to …`` is Vietnam's today, on a host whose
    own date is another (a zone 14 h ahead or 11 h behind: one differs at any hour)."""
    script = (REPO / "deploy" / "dev" / "run-local.sh").read_text()
    assert "--from $VN_TODAY --to $VN_TOMORROW" in script
    lines = [line for line in script.splitlines() if line.startswith(("VN_TODAY=", "VN_TOMORROW="))]
    assert len(lines) == 2
    vietnam = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date()
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        shown = subprocess.run(
            ["bash", "-c", "\n".join([*lines, 'echo "$VN_TODAY $VN_TOMORROW"'])],
            env={**os.environ, "TZ": zone},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if dt.datetime.now(dt.UTC).astimezone(ZoneInfo(zone)).date() != vietnam:
            assert shown == [str(vietnam), str(vietnam + dt.timedelta(days=1))], zone
            return
    raise AssertionError("no zone of the two had another date than Vietnam's")
