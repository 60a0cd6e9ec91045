"""host: this PC's OS, uptime, CPU, memory and per fixed-disk usage (psutil)."""

from __future__ import annotations

import asyncio
import platform
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar

import psutil

from agent.checks.base import Check
from agent.checks.options import HostOptions
from agent.wire import Sample

#: File systems that are not fixed disks: pseudo, network, optical, snap images.
NOT_FIXED_FSTYPES = frozenset(
    {
        "",
        "autofs",
        "cdfs",
        "cifs",
        "devtmpfs",
        "fuse.gvfsd-fuse",
        "iso9660",
        "nfs",
        "nfs4",
        "overlay",
        "ramfs",
        "smb3",
        "smbfs",
        "squashfs",
        "tmpfs",
        "udf",
    }
)


def is_fixed_disk(partition: Any, windows: bool = psutil.WINDOWS) -> bool:
    """``partition`` is a psutil disk partition (device, mountpoint, fstype, opts).

    A volume without a file system type is skipped like a CD-ROM: on Windows that is
    a BitLocker-locked or unformatted volume, whose usage cannot be read; reporting it
    as an error every minute would say nothing a technician can act on.
    """
    if not partition.fstype:
        return False
    # On Windows psutil puts "fixed"/"removable"/"cdrom" in opts; elsewhere
    # only the file-system type tells a real disk from tmpfs or a snap image.
    if windows:
        return "fixed" in partition.opts.split(",")
    return str(partition.fstype).lower() not in NOT_FIXED_FSTYPES


class HostCheck(Check[HostOptions]):
    kind: ClassVar[str] = "host"
    default_timeout = 20.0

    def __init__(self, options: HostOptions, clock: Callable[[], float] = time.time) -> None:
        super().__init__(options, clock)
        # cpu_percent(None) compares with the previous call: prime it so the
        # first report covers the time since start-up, not 0.0.
        psutil.cpu_percent(interval=None)
        self._primed_at = time.monotonic()

    async def collect(self) -> list[Sample]:
        now = self.clock()
        boot = psutil.boot_time()
        memory = psutil.virtual_memory()
        tags = {
            "os": platform.system().lower(),
            "os_version": platform.release(),
            "hostname": socket.gethostname(),
        }
        samples = [
            self.sample(
                "ok",
                ts=now,
                fields={
                    "cpu_percent": await self._cpu_percent(),
                    "cpu_count": psutil.cpu_count() or 0,
                    "mem_percent": memory.percent,
                    "mem_total_bytes": memory.total,
                    "boot_time": boot,
                    "uptime_s": max(0.0, now - boot),
                    "os_build": platform.version()[:200],
                },
                tags=tags,
            )
        ]
        samples.extend(self._disks(now))
        return samples

    async def _cpu_percent(self) -> float:
        # Right after start-up (e.g. `commune-agent once`) the window is too short
        # to mean anything: measure over half a second instead.
        if time.monotonic() - self._primed_at < 0.5:
            self._primed_at = 0.0
            return float(await asyncio.to_thread(psutil.cpu_percent, 0.5))
        return float(psutil.cpu_percent(interval=None))

    def _disks(self, now: float) -> list[Sample]:
        samples: list[Sample] = []
        seen: set[str] = set()
        for partition in psutil.disk_partitions(all=False):
            if not is_fixed_disk(partition) or partition.device in seen:
                continue
            seen.add(partition.device)
            try:
                usage = psutil.disk_usage(partition.mountpoint)
            except OSError as exc:
                samples.append(
                    self.sample(
                        "error",
                        ts=now,
                        item="disk",
                        target=partition.mountpoint,
                        error=f"cannot read usage: {exc}",
                    )
                )
                continue
            samples.append(
                self.sample(
                    "ok",
                    ts=now,
                    item="disk",
                    target=partition.mountpoint,
                    fields={
                        "used_percent": usage.percent,
                        "total_bytes": usage.total,
                        "free_bytes": usage.free,
                    },
                    tags={"fstype": partition.fstype or "unknown"},
                )
            )
        return samples
