"""The agent as a Windows service (pywin32): install, remove, and the service itself.

The service runs the same ``run_agent`` as ``commune-agent run``; the config path
is kept in the service's registry parameters. Steps: deploy/windows/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE_NAME = "CommuneAgent"
DISPLAY_NAME = "commune-monitor agent"
DESCRIPTION = "Reports this PC's anti-malware, health and dedicated line to the province."
#: sc.exe failure actions: restart after 5 s, 5 s, then 60 s; reset the count daily.
RECOVERY = ["reset=", "86400", "actions=", "restart/5000/restart/5000/restart/60000"]

if sys.platform == "win32":
    import asyncio
    import contextlib
    import logging
    import logging.handlers
    import subprocess

    import servicemanager
    import win32service
    import win32serviceutil

    from agent.config import load_config
    from agent.runner import run_agent

    class AgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self._loop: asyncio.AbstractEventLoop | None = None
            self._stop: asyncio.Event | None = None

        def SvcStop(self) -> None:  # noqa: N802 (pywin32's name)
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)

        def SvcDoRun(self) -> None:  # noqa: N802 (pywin32's name)
            config = load_config(win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config"))
            log_file = config.state_dir / "agent.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                log_file, maxBytes=5_000_000, backupCount=3
            )
            logging.basicConfig(
                level=config.agent.log_level.upper(),
                handlers=[handler],
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            )
            servicemanager.LogInfoMsg(f"{SERVICE_NAME} starting; log {log_file}")

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                await run_agent(config, self._stop)

            asyncio.run(main())

    def install(config_path: Path, start: bool = True) -> None:
        win32serviceutil.InstallService(
            f"{__name__}.AgentService",
            SERVICE_NAME,
            DISPLAY_NAME,
            startType=win32service.SERVICE_AUTO_START,
            description=DESCRIPTION,
        )
        win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", str(config_path))
        subprocess.run(["sc.exe", "failure", SERVICE_NAME, *RECOVERY], check=True)
        if start:
            win32serviceutil.StartService(SERVICE_NAME)

    def remove() -> None:
        with contextlib.suppress(Exception):  # already stopped
            win32serviceutil.StopService(SERVICE_NAME)
        win32serviceutil.RemoveService(SERVICE_NAME)

    if __name__ == "__main__":
        win32serviceutil.HandleCommandLine(AgentService)
