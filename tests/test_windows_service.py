"""The Windows service without Windows: its registration as data, and the stop/shutdown
state machine driven by hand, the agent inside it real (Mosquitto) where it matters."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

from agent.config import load_config
from agent.runner import run_agent
from agent.servicehost import STOP_WAIT_HINT_MS, Lifecycle, registration
from agent.wakeup import Wakeup
from tests.servers import REPO, Mosquitto, Subscriber
from tests.test_e2e_agent import agent_config, statuses

VENV_PYTHON = r"C:\Program Files\commune-agent\venv\Scripts\python.exe"
BASE_PYTHON = r"C:\Program Files\Python312\python.exe"


def test_the_service_is_hosted_by_the_base_interpreter_with_the_venv_selected() -> None:
    plan = registration(VENV_PYTHON, BASE_PYTHON, r"C:\Windows")
    # python.exe beside python312.dll and the runtime DLLs: found without PATH.
    assert plan.exe_name == BASE_PYTHON
    assert plan.exe_args == "-m agent.winservice"
    assert plan.environment == {"__PYVENV_LAUNCHER__": VENV_PYTHON}
    assert "pythonservice" not in plan.exe_name.lower()
    failure, flag = plan.sc_commands
    assert failure[:3] == (r"C:\Windows\System32\sc.exe", "failure", "CommuneAgent")
    assert "restart/5000" in failure[-1]
    # The flag that makes a stop with an error (a Python exception) a failure too.
    assert flag == (r"C:\Windows\System32\sc.exe", "failureflag", "CommuneAgent", "1")


def test_without_a_venv_nothing_is_added_to_the_environment() -> None:
    plan = registration(BASE_PYTHON, BASE_PYTHON, r"D:\WINDOWS")
    assert plan.exe_name == BASE_PYTHON and plan.environment == {}
    assert plan.sc_commands[0][0] == r"D:\WINDOWS\System32\sc.exe"


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, int]] = []

    def __call__(self, status: str, hint: int) -> None:
        self.calls.append((time.monotonic(), status, hint))


def test_a_stop_before_the_loop_exists_is_not_lost() -> None:
    reports = Reports()
    lifecycle = Lifecycle(reports, every_s=0.05)
    lifecycle.request_stop("stop")  # the SCM asked while the service was still starting
    seen: list[bool] = []

    def main(stop: Wakeup) -> None:
        seen.append(stop.wait_stopped(5))

    assert lifecycle.run(main) == 0
    assert seen == [True] and lifecycle.reason == "stop"
    assert reports.calls[0][1:] == ("stop_pending", STOP_WAIT_HINT_MS)


def test_a_slow_stop_keeps_telling_the_scm_it_is_in_progress() -> None:
    """Stopping took ~10 s against a 5 s wait hint, without checkpoints: `net stop`
    reported error 1053. Now STOP_PENDING goes out again and again (each report is a
    new checkpoint in pywin32's ReportServiceStatus) until the agent is done."""
    reports = Reports()
    lifecycle = Lifecycle(reports, every_s=0.05)

    def main(stop: Wakeup) -> None:
        stop.wait_stopped()
        time.sleep(0.5)  # publishing "offline", closing the outbox

    threading.Timer(0.1, lifecycle.request_stop, ("stop",)).start()
    assert lifecycle.run(main) == 0
    pending = [c for c in reports.calls if c[1] == "stop_pending"]
    assert len(pending) >= 5 and all(hint >= 10_000 for _, _, hint in pending)
    count = len(reports.calls)
    time.sleep(0.2)
    assert len(reports.calls) == count  # and not after it stopped


def test_a_failing_agent_ends_the_service_with_an_error() -> None:
    def main(_: Wakeup) -> None:
        raise RuntimeError("outbox disk full")

    assert Lifecycle(Reports()).run(main) == 1


def test_on_shutdown_the_agent_says_offline_stopped(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The PC shuts down: the service must publish its goodbye, not leave a Last Will."""
    watcher = Subscriber(mosquitto.port, "commune/#").start()
    config = load_config(agent_config(tmp_path, mosquitto.port, interval="1s"))
    lifecycle = Lifecycle(Reports(), every_s=0.1)
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            lifecycle.run(lambda stop: run_agent(config, stop, jitter=False))
        )
    )
    thread.start()
    try:
        watcher.wait_for(lambda m: any(s.state == "online" for s in statuses(m)), 20)
        lifecycle.request_stop("shutdown")  # what SvcShutdown does
        thread.join(20)
        assert codes == [0]
        last = statuses(watcher.snapshot())[-1]
        assert (last.state, last.reason) == ("offline", "stopped")
    finally:
        lifecycle.request_stop("stop")
        thread.join(20)
        watcher.stop()


def test_the_service_class_handles_what_the_scm_sends() -> None:
    """No pywin32 here: the Windows half checked on its source."""
    tree = ast.parse((REPO / "agent" / "winservice.py").read_text())
    service = next(
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "AgentService"
    )
    methods = {n.name for n in service.body if isinstance(n, ast.FunctionDef)}
    # SvcShutdown defined: pywin32 then accepts SERVICE_CONTROL_SHUTDOWN.
    assert {"SvcStop", "SvcShutdown", "SvcRun"} <= methods
    source = (REPO / "agent" / "winservice.py").read_text()
    assert "ERROR_SERVICE_SPECIFIC_ERROR" in source  # a failure, for the failure actions
    assert "PrepareToHostSingle(AgentService)" in source and "StartServiceCtrlDispatcher" in source
    assert "ChangeServiceConfig(" in source  # a re-run updates the service in place
    assert "pywin32_postinstall" not in source


@pytest.mark.parametrize("script", ["install-agent.ps1", "uninstall-agent.ps1"])
def test_no_script_runs_pywin32_postinstall(script: str) -> None:
    assert "pywin32_postinstall" not in (REPO / "deploy" / "windows" / script).read_text()
