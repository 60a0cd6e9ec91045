"""What a Windows service must get right, apart from Windows: registration and stopping.

``registration`` is the service's entry in the Service Control Manager as data: the
host program, its arguments and environment, and its failure actions. The host is
the *base* interpreter (``python.exe`` beside its ``python3XX.dll`` and runtime DLLs,
so they are found without anyone's PATH) running ``-m agent.winservice``; a venv is
selected by ``__PYVENV_LAUNCHER__``, as the venv's own launcher does (CPython's
getpath: that variable names the venv's python.exe, whose ``pyvenv.cfg`` sets the
prefix). The venv's ``Scripts\\python.exe`` itself cannot be the host: it is a
launcher that starts the base interpreter as a child, which the SCM does not know.
No ``pythonservice.exe``, no ``pywin32_postinstall`` copying DLLs into System32.

``Lifecycle`` is the stop/shutdown state machine the service runs: a stop or a
shutdown may arrive before the agent's loop exists (it is kept, and the loop ends
as soon as it starts), stopping reports STOP_PENDING with a growing checkpoint
every two seconds so that ``net stop`` waits instead of reporting error 1053, and
the agent's own failure ends the service with a non-zero exit code, which the SCM
treats as a failure to restart from (with the failure-actions flag set).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PureWindowsPath

from agent.wakeup import Wakeup

log = logging.getLogger(__name__)

SERVICE_NAME = "CommuneAgent"
#: Restart after 5 s, 5 s, then 60 s; the failure count resets after a day.
FAILURE_ACTIONS = ("reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000")
#: How long a stop may take between two reports, in milliseconds.
STOP_WAIT_HINT_MS = 10_000
REPORT_EVERY_S = 2.0


@dataclass(frozen=True)
class Registration:
    """How the Windows service is registered with the service control manager."""

    exe_name: str
    """The program the SCM starts."""
    exe_args: str
    environment: dict[str, str] = field(default_factory=dict)
    """The service's own environment (its registry ``Environment`` value)."""
    start_type: str = "auto"
    sc_commands: tuple[tuple[str, ...], ...] = ()
    """``sc.exe`` invocations after creating or updating the service."""


def registration(executable: str, base_executable: str, system_root: str) -> Registration:
    """How to register the service for the interpreter ``executable`` (``sys.executable``;
    ``base_executable`` is ``sys._base_executable``)."""
    host = base_executable or executable
    environment: dict[str, str] = {}
    if PureWindowsPath(host) != PureWindowsPath(executable):
        environment["__PYVENV_LAUNCHER__"] = executable  # a venv: its interpreter's prefix
    sc = str(PureWindowsPath(system_root) / "System32" / "sc.exe")
    return Registration(
        exe_name=host,
        exe_args="-m agent.winservice",
        environment=environment,
        sc_commands=(
            (sc, "failure", SERVICE_NAME, *FAILURE_ACTIONS),
            # Without this flag the actions apply only to crashes, not to a service that
            # stops with an error (a Python exception): it would stay stopped for good.
            (sc, "failureflag", SERVICE_NAME, "1"),
        ),
    )


Reporter = Callable[[str, int], None]
"""Tells the SCM: ("stop_pending", wait hint in ms)."""


class Lifecycle:
    def __init__(self, report: Reporter, every_s: float = REPORT_EVERY_S) -> None:
        self._report = report
        self._every_s = every_s
        self._requested = threading.Event()
        self._done = threading.Event()
        self.reason = ""
        """Why the service was asked to stop: "stop" or "shutdown"."""

    def request_stop(self, reason: str) -> None:
        """From the SCM's thread, at any time: before, during or after ``run``."""
        if not self._requested.is_set():
            self.reason = reason
            self._requested.set()
            self._report("stop_pending", STOP_WAIT_HINT_MS)
            threading.Thread(target=self._keep_reporting, name="stop-pending", daemon=True).start()

    def _keep_reporting(self) -> None:
        # Each report carries a new checkpoint: the SCM sees a stop in progress.
        while not self._done.wait(self._every_s):
            self._report("stop_pending", STOP_WAIT_HINT_MS)

    def run(self, main: Callable[[Wakeup], object]) -> int:
        """Run ``main`` until stopped; the service's exit code (0: stopped as asked)."""
        stop = Wakeup()

        def bridge() -> None:
            self._requested.wait()
            if not self._done.is_set():
                stop.stop()

        threading.Thread(target=bridge, name="stop-bridge", daemon=True).start()
        try:
            main(stop)
        except Exception:
            log.exception("the agent failed; the service stops with an error to be restarted")
            return 1
        finally:
            self._done.set()
            self._requested.set()  # releases the bridge thread
            stop.close()
        return 0
