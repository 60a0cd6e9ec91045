"""The agent as a systemd service: its hardened unit, and installing it (agent/systemd.py)."""

from __future__ import annotations

from pathlib import Path

import agent
from agent import systemd
from agent.config import Config

UNIT_BODY = """\
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
{read_write}Environment=PYTHONUNBUFFERED=1
# One malloc arena for all of the agent's threads, not one each: 0.2-0.5 MB of a PC
# agent's memory. They take turns anyway (Python's lock), but for short C calls.
Environment=MALLOC_ARENA_MAX=1
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

SERVICE = systemd.Service(
    name="commune-agent",
    module="agent.cli",
    description="commune-monitor agent",
    unit_body=UNIT_BODY,
    state_dir=Path("/var/lib/commune-agent"),
)


def files_read(config: Config) -> list[Path]:
    """The config and every file it names, which the service user must read."""
    paths = [Path(config.source)]
    mqtt = config.mqtt
    paths += [
        Path(p) for p in (mqtt.password_file, mqtt.ca_file, mqtt.cert_file, mqtt.key_file) if p
    ]
    for _, _, options in config.check_options():
        for key in ("password_file", "ca_file"):
            value = getattr(options, key, "")
            if value:
                paths.append(Path(value))
    return paths


def secrets_beside(config: Config) -> list[Path]:
    """The broker secrets in the config's own folder (``commune-agent enroll`` writes
    them there, root's and 0600): the install gives them to the service's group."""
    folder = Path(config.source).absolute().parent
    found = [Path(p) for p in (config.mqtt.password_file, config.mqtt.key_file) if p]
    return [p for p in found if p.absolute().parent == folder]


def folders_written(config: Config) -> list[Path]:
    """Where the agent writes outside its StateDirectory (then named in ReadWritePaths=)."""
    own = SERVICE.state_dir
    folders = []
    if config.agent.state_dir and Path(config.agent.state_dir) != own:
        folders.append(Path(config.agent.state_dir))
    if config.outbox.path and Path(config.outbox.path).parent != own:
        folders.append(Path(config.outbox.path).parent)
    return folders


def unit(config: Config) -> str:
    command = systemd.invoked_command(SERVICE)
    return systemd.render(SERVICE, command, Path(config.source).absolute(), folders_written(config))


def check(config: Config, who: systemd.Account) -> list[str]:
    """What the service user could not read or write that the agent will need."""
    return systemd.problems(
        who,
        systemd.invoked_command(SERVICE),
        Path(agent.__file__).parent,
        files_read(config),
        folders_written(config),
    )


def install(config: Config, unit_dir: Path, start: bool) -> list[str]:
    """Install and start the unit (``systemd.install``); InstallError names every problem."""
    source = Path(config.source)
    return systemd.install(
        SERVICE, source, unit(config), lambda who: check(config, who), unit_dir, start,
        secrets=secrets_beside(config),
    )  # fmt: skip
