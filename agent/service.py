"""Installing the agent as a service: a hardened systemd unit on Linux, a Windows service."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

SERVICE_NAME = "commune-agent"
SERVICE_USER = "commune-agent"

UNIT_TEMPLATE = """\
# commune-agent: reports this machine's health, anti-malware, dedicated line and
# commune devices to the province. Installed by `commune-agent install-service`.
[Unit]
Description=commune-monitor agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=always
RestartSec=5
User={user}
Group={user}
# The outbox lives here: /var/lib/commune-agent, kept across restarts and upgrades.
StateDirectory=commune-agent
StateDirectoryMode=0700
Environment=PYTHONUNBUFFERED=1
# ICMP probes of the dedicated line without root.
AmbientCapabilities=CAP_NET_RAW
CapabilityBoundingSet=CAP_NET_RAW
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
UMask=0077
MemoryMax=256M
TasksMax=64

[Install]
WantedBy=multi-user.target
"""


def render_unit(executable: str, config_path: str, user: str = SERVICE_USER) -> str:
    exec_start = " ".join(
        shlex.quote(part) for part in (executable, "run", "--config", config_path)
    )
    return UNIT_TEMPLATE.format(exec_start=exec_start, user=user)


def agent_executable() -> str:
    found = shutil.which("commune-agent")
    if found:
        return str(Path(found).resolve())
    return str(Path(sys.executable).resolve().parent / "commune-agent")


def install_systemd(config_path: Path, unit_dir: Path, start: bool) -> list[str]:
    """Write the unit, create the service user, enable and start; returns what was done."""
    done: list[str] = []
    unit = unit_dir / f"{SERVICE_NAME}.service"
    unit.write_text(render_unit(agent_executable(), str(config_path.resolve())), encoding="utf-8")
    unit.chmod(0o644)
    done.append(f"wrote {unit}")
    if (
        shutil.which("useradd")
        and subprocess.run(["id", SERVICE_USER], capture_output=True, check=False).returncode != 0
    ):
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
        done.append(f"created system user {SERVICE_USER}")
    if shutil.which("chgrp"):
        subprocess.run(["chgrp", SERVICE_USER, str(config_path)], check=False)
        config_path.chmod(0o640)
        done.append(f"{config_path}: group {SERVICE_USER}, mode 0640 (it may hold secrets)")
    if start and shutil.which("systemctl"):
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "enable", "--now", SERVICE_NAME], check=True)
        done.append(f"enabled and started {SERVICE_NAME}")
    return done
