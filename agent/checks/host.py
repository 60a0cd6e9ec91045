"""host: this PC's OS, uptime, CPU, memory and per fixed-disk usage (agent/machine.py)."""

from __future__ import annotations

import platform
import socket
import time
from collections.abc import Callable
from typing import ClassVar

from agent.checks.base import BlockingCheck
from agent.checks.options import HostOptions
from agent.machine import Machine, Partition, this_machine
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


def is_fixed_disk(partition: Partition, windows: bool) -> bool:
    """A volume without a file system type is skipped like a CD-ROM: on Windows that is
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


class HostCheck(BlockingCheck[HostOptions]):
    kind: ClassVar[str] = "host"
    default_timeout = 20.0

    def __init__(
        self,
        options: HostOptions,
        clock: Callable[[], float] = time.time,
        machine: Machine | None = None,
    ) -> None:
        super().__init__(options, clock)
        self.machine = machine or this_machine()
        # cpu_percent compares with the previous call: prime it so the first report
        # covers the time since start-up, not 0.0.
        self.machine.cpu_percent()
        self._primed_at = time.monotonic()

    def collect(self) -> list[Sample]:
        now = self.clock()
        boot = self.machine.boot_time()
        memory = self.machine.memory()
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
                    "cpu_percent": self._cpu_percent(),
                    "cpu_count": self.machine.cpu_count(),
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

    def _cpu_percent(self) -> float:
        # Right after start-up (e.g. `commune-agent once`) the window is too short
        # to mean anything: measure over half a second instead (on the run's own thread).
        if time.monotonic() - self._primed_at < 0.5:
            self._primed_at = 0.0
            self.machine.cpu_percent()
            time.sleep(0.5)
        return self.machine.cpu_percent()

    def _disks(self, now: float) -> list[Sample]:
        samples: list[Sample] = []
        seen: set[str] = set()
        for partition in self.machine.partitions():
            if not is_fixed_disk(partition, self.machine.windows) or partition.device in seen:
                continue
            seen.add(partition.device)
            try:
                usage = self.machine.disk_usage(partition.mountpoint)
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
