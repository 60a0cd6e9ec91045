"""The agent as a Windows service (pywin32): install or update, remove, and the service.

The registration and the stop/shutdown state machine are ``agent/servicehost.py``
(plain Python, tested on any system); this module only talks to Windows. The
config path is kept in the service's registry parameters. Steps:
deploy/windows/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.servicehost import SERVICE_NAME

DISPLAY_NAME = "commune-monitor agent"
DESCRIPTION = "Reports this PC's anti-malware, health and dedicated line to the province."

__all__ = ["DESCRIPTION", "DISPLAY_NAME", "SERVICE_NAME"]

if sys.platform == "win32":
    import contextlib
    import logging
    import logging.handlers
    import os
    import subprocess
    import winreg

    import servicemanager
    import win32service
    import win32serviceutil
    import winerror

    from agent.deferred import defer_unused

    defer_unused()  # before the runner imports paho-mqtt
    from agent.config import load_config
    from agent.runner import run_agent
    from agent.servicehost import Lifecycle, registration

    STATUS = {"stop_pending": win32service.SERVICE_STOP_PENDING}

    class AgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self.lifecycle = Lifecycle(
                lambda status, hint: self.ReportServiceStatus(STATUS[status], waitHint=hint)
            )

        def SvcStop(self) -> None:  # noqa: N802 (pywin32's name)
            self.lifecycle.request_stop("stop")

        def SvcShutdown(self) -> None:  # noqa: N802 (pywin32's name; accepted because defined)
            # The PC shuts down: say "offline" (stopped) before Windows ends the process.
            self.lifecycle.request_stop("shutdown")

        def SvcRun(self) -> None:  # noqa: N802 (pywin32's name)
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            try:
                code = self._run()
            except Exception:  # the config or the log could not even be opened
                servicemanager.LogErrorMsg(f"{SERVICE_NAME} failed to start")
                code = 1
            if code:
                # A stop with an error: the failure actions (failureflag 1) restart it.
                self.ReportServiceStatus(
                    win32service.SERVICE_STOPPED,
                    win32ExitCode=winerror.ERROR_SERVICE_SPECIFIC_ERROR,
                    svcExitCode=code,
                )
                return
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)

        def _run(self) -> int:
            config = load_config(win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config"))
            log_file = config.state_dir / "agent.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
            )
            logging.basicConfig(
                level=config.agent.log_level.upper(),
                handlers=[handler],
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            )
            servicemanager.LogInfoMsg(f"{SERVICE_NAME} starting; log {log_file}")
            return self.lifecycle.run(lambda stop: run_agent(config, stop))

    def _set_environment(environment: dict[str, str]) -> None:
        key = winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE,
            rf"SYSTEM\CurrentControlSet\Services\{SERVICE_NAME}",
            0,
            winreg.KEY_SET_VALUE,
        )
        with key:
            if environment:
                values = [f"{name}={value}" for name, value in environment.items()]
                winreg.SetValueEx(key, "Environment", 0, winreg.REG_MULTI_SZ, values)
            else:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, "Environment")

    def _exists() -> bool:
        try:
            win32serviceutil.QueryServiceStatus(SERVICE_NAME)
        except win32service.error:
            return False
        return True

    def install(config_path: Path, start: bool = True) -> None:
        """Install, or update in place when it exists (a re-run of the install script)."""
        plan = registration(
            sys.executable,
            getattr(sys, "_base_executable", sys.executable),
            os.environ.get("SYSTEMROOT", r"C:\Windows"),
        )
        arguments = {
            "exeName": plan.exe_name,
            "exeArgs": plan.exe_args,
            "startType": win32service.SERVICE_AUTO_START,
            "description": DESCRIPTION,
        }
        if _exists():
            with contextlib.suppress(Exception):  # already stopped
                win32serviceutil.StopServiceWithDeps(SERVICE_NAME, waitSecs=30)
            win32serviceutil.ChangeServiceConfig(
                None, SERVICE_NAME, displayName=DISPLAY_NAME, **arguments
            )
        else:
            win32serviceutil.InstallService(None, SERVICE_NAME, DISPLAY_NAME, **arguments)
        _set_environment(plan.environment)
        win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(config_path))
        for command in plan.sc_commands:
            subprocess.run(list(command), check=True, capture_output=True)
        if start:
            win32serviceutil.StartService(SERVICE_NAME)
            win32serviceutil.WaitForServiceStatus(SERVICE_NAME, win32service.SERVICE_RUNNING, 30)

    def remove() -> None:
        """Stop (waiting for it) and remove the service."""
        with contextlib.suppress(Exception):  # already stopped
            win32serviceutil.StopServiceWithDeps(SERVICE_NAME, waitSecs=30)
        win32serviceutil.RemoveService(SERVICE_NAME)

    if __name__ == "__main__":
        # Started by the SCM as `python.exe -m agent.winservice`: host the service here.
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(AgentService)
        servicemanager.StartServiceCtrlDispatcher()
