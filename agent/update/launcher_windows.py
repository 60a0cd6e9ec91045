"""Windows: the service host of the launcher (pywin32 in the runtime, not a venv).

The SCM runs ``<home>\\runtime\\python.exe <home>\\launcher\\launcher_windows.py``; the
home and the config path are the service's registry parameters (``home``, ``config``,
written by the MSI: ``collector.kit.wxs``). It reports running at once, sets the
service's recovery actions and the home's ACL (every start: an MSI built with wixl can
do neither), and
runs the launcher until the SCM asks it to stop, which stops the agent (then killed
after its grace).

Not tested on Windows here: the launcher it hosts is, on Linux, and the recovery
commands are tested as data (``launcher.recovery_commands``, ``home_acl_commands``).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # The embeddable runtime the MSI installs (a ._pth file) runs a script without its
    # folder on sys.path: the launcher's own copy of agent.update is found from here.
    from pathlib import Path as _Path

    sys.path.insert(0, str(_Path(__file__).resolve().parent))

if sys.platform == "win32":
    import logging
    import logging.handlers
    import os
    import threading
    from pathlib import Path

    import servicemanager
    import win32service
    import win32serviceutil

    from agent.update import launcher

    class LauncherService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = launcher.SERVICE_NAME
        _svc_display_name_ = "commune-monitor agent"

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            home = Path(win32serviceutil.GetServiceCustomOption(launcher.SERVICE_NAME, "home"))
            config = Path(win32serviceutil.GetServiceCustomOption(launcher.SERVICE_NAME, "config"))
            python = str(home / "runtime" / "python.exe")
            self.launcher = launcher.Launcher(launcher.Options(home, config, python=python))

        def SvcStop(self) -> None:  # noqa: N802 (pywin32's name)
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=30_000)
            self.launcher.stop_requested.set()

        def SvcShutdown(self) -> None:  # noqa: N802 (pywin32's name)
            self.launcher.stop_requested.set()

        def SvcRun(self) -> None:  # noqa: N802 (pywin32's name)
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            log_file = self.launcher.home.state / "launcher.log"
            log_file.parent.mkdir(parents=True, exist_ok=True)
            logging.basicConfig(
                level=logging.INFO,
                handlers=[
                    logging.handlers.RotatingFileHandler(
                        log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
                    )
                ],
                format="%(asctime)s %(levelname)s launcher: %(message)s",
            )
            system_root = os.environ.get("SYSTEMROOT", r"C:\\Windows")
            for problem in launcher.set_recovery(launcher._run_quietly, system_root):
                logging.warning("could not set the service's recovery actions: %s", problem)
            home = self.launcher.home.root
            for problem in launcher.protect_home(launcher._run_quietly, system_root, home):
                logging.warning("could not keep the home to SYSTEM and Administrators: %s", problem)
            runner = threading.Thread(target=self.launcher.run, name="launcher")
            runner.start()
            runner.join()

    if __name__ == "__main__":
        servicemanager.Initialize()
        servicemanager.PrepareToHostSingle(LauncherService)
        servicemanager.StartServiceCtrlDispatcher()
