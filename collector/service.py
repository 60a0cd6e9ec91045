"""The collector as a systemd service: its hardened unit, and installing it (agent/systemd.py)."""

from __future__ import annotations

from pathlib import Path

import collector
from agent import systemd
from collector.config import CollectorConfig

UNIT_BODY = """\
# commune-collector: the province's collector (ingest, state, alerts, API, console).
# Installed by `commune-collector install-service`.
[Unit]
Description=commune-monitor collector
After=network-online.target mosquitto.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
# Also after a worker died: the collector then exits with status 1.
Restart=always
RestartSec=5
# SIGTERM: it stops taking messages, commits what it has, closes the store.
TimeoutStopSec=60
User={user}
Group={user}
# The state store (SQLite, WAL) lives here: /var/lib/commune-collector.
StateDirectory=commune-collector
StateDirectoryMode=0750
{read_write}# Configs, tokens' hashes, secrets: read-only.
ReadOnlyPaths=/etc/commune-collector
Environment=PYTHONUNBUFFERED=1
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
UMask=0027
LimitNOFILE=65536
MemoryMax=2G

[Install]
WantedBy=multi-user.target
"""

SERVICE = systemd.Service(
    name="commune-collector",
    module="collector.cli.main",
    description="commune-monitor collector",
    unit_body=UNIT_BODY,
    state_dir=Path("/var/lib/commune-collector"),
)


def files_read(config: CollectorConfig, source: Path) -> list[Path]:
    """The config and every file it names, which the service user must read."""
    mqtt = config.mqtt
    named = [mqtt.password_file, mqtt.ca_file, mqtt.cert_file, mqtt.key_file]
    named += [config.console.secret_file, *config.collector.inventory, *config.alerts.rules]
    named += config.collector.systems
    named += [route.urls_file for route in config.alerts.routes]
    if config.sink is not None:
        named.append(config.sink.token_file)
    return [source, *(Path(p) for p in named if p)]


def folders_written(config: CollectorConfig) -> list[Path]:
    """Where the collector writes outside its StateDirectory (then in ReadWritePaths=):
    the store's folder if elsewhere, the client certificates' revocation list's."""
    folders: list[Path] = []
    store = Path(config.store.path).parent
    if store != SERVICE.state_dir:
        folders.append(store)
    crl = config.enrollment.client_crl_file if config.enrollment else ""
    if crl and Path(crl).parent not in (SERVICE.state_dir, *folders):
        folders.append(Path(crl).parent)
    return folders


def unit(config: CollectorConfig, source: Path) -> str:
    command = systemd.invoked_command(SERVICE)
    return systemd.render(SERVICE, command, source.absolute(), folders_written(config))


def check(config: CollectorConfig, source: Path, who: systemd.Account) -> list[str]:
    return systemd.problems(
        who,
        systemd.invoked_command(SERVICE),
        Path(collector.__file__).parent,
        files_read(config, source),
        folders_written(config),
    )


def install(config: CollectorConfig, source: Path, unit_dir: Path, start: bool) -> list[str]:
    """Install and start the unit (``systemd.install``); InstallError names every problem."""
    return systemd.install(
        SERVICE,
        source,
        unit(config, source),
        lambda who: check(config, source, who),
        unit_dir,
        start,
    )
