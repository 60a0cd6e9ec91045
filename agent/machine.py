"""This PC's figures that the host check and the agent's own metrics report.

On Linux they are read from /proc (and statvfs) here, with psutil's arithmetic, so the
samples are the same as psutil's: psutil is about 0.8 MB of a PC agent's memory kept for
as long as it runs, for a few files' worth of reading. Elsewhere (Windows) psutil reads
them. ``this_machine()`` and ``this_process()`` choose; tests/test_machine.py holds the
two readers equal on the same files.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    import psutil


class Memory(msgspec.Struct, frozen=True):
    """Physical memory: its size, and the share not available to start programs."""

    total: int
    percent: float


class Partition(msgspec.Struct, frozen=True):
    """A mounted file system, as psutil's ``disk_partitions`` names its fields."""

    device: str
    mountpoint: str
    fstype: str
    opts: str


class DiskUsage(msgspec.Struct, frozen=True):
    """A file system's size, what an unprivileged user may still write, and the share used
    of what users can have (root's reserve left out)."""

    total: int
    free: int
    percent: float


class Machine(Protocol):
    windows: bool

    def cpu_percent(self) -> float:
        """Busy share of all CPUs since the previous call (0.0 at the first)."""

    def cpu_count(self) -> int: ...

    def memory(self) -> Memory: ...

    def boot_time(self) -> float: ...

    def partitions(self) -> list[Partition]:
        """File systems on devices (psutil's ``all=False``)."""

    def disk_usage(self, path: str) -> DiskUsage: ...


class OwnProcess(Protocol):
    def rss(self) -> int: ...

    def cpu_seconds(self) -> float:
        """CPU time used since the process started (user + system, its threads')."""

    def started(self) -> float:
        """When the process started (a Unix time)."""

    def cpu_percent(self) -> float:
        """CPU time used since the previous call, as a share of one CPU (0.0 at the first)."""


def usage_percent(used: float, total: float) -> float:
    """psutil's share, rounded as psutil rounds it."""
    return round(float(used) / total * 100, 1) if total else 0.0


# Linux ----------------------------------------------------------------------------------

#: /proc/stat's first line, in this order; guest times are counted in user and nice too.
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_GUEST_FIELDS = ("guest", "guest_nice")
#: The escapes getmntent reads back in a mounts field (what psutil's C code calls).
_MOUNT_ESCAPES = {"\\040": " ", "\\011": "\t", "\\012": "\n", "\\134": "\\", "\\\\": "\\"}
_MOUNT_ESCAPE = re.compile("|".join(re.escape(escape) for escape in _MOUNT_ESCAPES))


def _mount_field(text: str) -> str:
    return _MOUNT_ESCAPE.sub(lambda m: _MOUNT_ESCAPES[m.group(0)], text)


class ProcMachine:
    """Linux: /proc at ``proc`` (psutil's ``PROCFS_PATH``), statvfs for disks."""

    windows = False

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._last_cpu: list[float] | None = None

    def _cpu_times(self) -> list[float]:
        """CPU seconds since boot, per /proc/stat field (``_CPU_FIELDS``, then guests)."""
        with open(f"{self.proc}/stat", "rb") as stat:
            values = stat.readline().split()[1 : 1 + len(_CPU_FIELDS) + len(_GUEST_FIELDS)]
        ticks = os.sysconf("SC_CLK_TCK")
        return [int(value) / ticks for value in values]

    def cpu_percent(self) -> float:
        times = self._cpu_times()
        last, self._last_cpu = self._last_cpu, times
        if last is None:
            return 0.0
        # psutil's arithmetic: each field's increase, never below zero (a counter that
        # went back); guest time is in user and nice already; idle and iowait are not busy.
        deltas = [max(0.0, now - before) for now, before in zip(times, last, strict=True)]
        total = sum(deltas) - sum(deltas[len(_CPU_FIELDS) :])
        busy = total - deltas[_CPU_FIELDS.index("idle")] - deltas[_CPU_FIELDS.index("iowait")]
        return usage_percent(busy, total)

    def cpu_count(self) -> int:
        return os.cpu_count() or 0

    def memory(self) -> Memory:
        fields: dict[bytes, int] = {}
        with open(f"{self.proc}/meminfo", "rb") as meminfo:
            for line in meminfo:
                name, value, *_ = line.split()
                fields[name] = int(value) * 1024
        total = fields[b"MemTotal:"]
        available = fields.get(b"MemAvailable:", 0) or self._available(fields)
        if available < 0:
            available = 0
        elif available > total:
            available = fields[b"MemFree:"]
        return Memory(total, usage_percent(total - available, total))

    def _available(self, fields: dict[bytes, int]) -> int:
        """A kernel before 3.14 (no MemAvailable): psutil's estimate, as the kernel makes it."""
        free = fields[b"MemFree:"]
        try:
            lru = fields[b"Active(file):"] + fields[b"Inactive(file):"]
            reclaimable = fields[b"SReclaimable:"]
        except KeyError:
            return free + fields.get(b"Cached:", 0)
        try:
            with open(f"{self.proc}/zoneinfo", "rb") as zoneinfo:
                low = sum(
                    int(line.split()[1])
                    for line in zoneinfo
                    if line.strip().startswith(b"low")
                ) * os.sysconf("SC_PAGE_SIZE")  # fmt: skip
        except (OSError, IndexError, ValueError):
            return free + fields.get(b"Cached:", 0)
        available = free - low + lru - min(lru / 2, low)
        return int(available + reclaimable - min(reclaimable / 2.0, low))

    def boot_time(self) -> float:
        with open(f"{self.proc}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime"):
                    return float(line.split()[1])
        raise RuntimeError(f"no btime in {self.proc}/stat")

    def partitions(self) -> list[Partition]:
        physical: set[str] = set()
        with open(f"{self.proc}/filesystems") as filesystems:
            for entry in map(str.strip, filesystems):
                if not entry.startswith("nodev"):
                    physical.add(entry)
                elif entry.split("\t")[1] == "zfs":
                    physical.add("zfs")
        mounts = f"{self.proc}/self/mounts"
        if self.proc == "/proc" and os.path.isfile("/etc/mtab"):
            mounts = "/etc/mtab"  # psutil's choice (its issue 1307)
        found = []
        with open(os.path.realpath(mounts)) as table:
            for line in table:
                fields = line.split()
                if len(fields) < 4 or fields[0].startswith("#"):
                    continue
                device, mountpoint, fstype, opts = map(_mount_field, fields[:4])
                if device == "none":
                    device = ""
                if device in ("/dev/root", "rootfs"):
                    device = root_device() or device
                if device and fstype in physical:
                    found.append(Partition(device, mountpoint, fstype, opts))
        return found

    def disk_usage(self, path: str) -> DiskUsage:
        st = os.statvfs(path)
        total = st.f_blocks * st.f_frsize
        used = total - st.f_bfree * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return DiskUsage(total, free, usage_percent(used, used + free))


def root_device() -> str | None:
    """The device "/dev/root" stands for (the kernel's name for the root file system)."""
    dev = os.stat("/").st_dev
    uevent = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/uevent")
    try:
        for line in uevent.read_text().splitlines():
            if line.startswith("DEVNAME="):
                return "/dev/" + line.removeprefix("DEVNAME=")
    except OSError:
        pass
    return None


class ProcProcess:
    """This process on Linux: resident size from /proc/self/statm, CPU time from times()."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._last: tuple[float, float] | None = None
        self._started: float | None = None

    def rss(self) -> int:
        with open(f"{self.proc}/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu_seconds(self) -> float:
        times = os.times()
        return times.user + times.system

    def started(self) -> float:
        """psutil's arithmetic: the boot time plus the start in clock ticks (/proc/self/stat's
        22nd field, counted after the command's name, which may hold spaces)."""
        if self._started is None:
            with open(f"{self.proc}/self/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            ticks = int(fields[19]) / os.sysconf("SC_CLK_TCK")
            self._started = ProcMachine(self.proc).boot_time() + ticks
        return self._started

    def cpu_percent(self) -> float:
        times = os.times()
        now, used = time.monotonic(), times.user + times.system
        last, self._last = self._last, (now, used)
        if last is None or now <= last[0]:
            return 0.0
        return round((used - last[1]) / (now - last[0]) * 100, 1)


# Elsewhere: psutil ------------------------------------------------------------------------


class PsutilMachine:
    """psutil's figures (Windows; on Linux, the reference tests compare with)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self.windows = bool(psutil.WINDOWS)

    def cpu_percent(self) -> float:
        return float(self._psutil.cpu_percent(interval=None))

    def cpu_count(self) -> int:
        return self._psutil.cpu_count() or 0

    def memory(self) -> Memory:
        memory = self._psutil.virtual_memory()
        return Memory(memory.total, memory.percent)

    def boot_time(self) -> float:
        return float(self._psutil.boot_time())

    def partitions(self) -> list[Partition]:
        return [
            Partition(p.device, p.mountpoint, p.fstype, p.opts)
            for p in self._psutil.disk_partitions(all=False)
        ]

    def disk_usage(self, path: str) -> DiskUsage:
        usage = self._psutil.disk_usage(path)
        return DiskUsage(usage.total, usage.free, usage.percent)


class PsutilProcess:
    def __init__(self) -> None:
        import psutil

        self._process: psutil.Process = psutil.Process(os.getpid())

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def started(self) -> float:
        return float(self._process.create_time())

    def cpu_percent(self) -> float:
        return float(self._process.cpu_percent(None))


def this_machine() -> Machine:
    return ProcMachine() if sys.platform.startswith("linux") else PsutilMachine()


def this_process() -> OwnProcess:
    return ProcProcess() if sys.platform.startswith("linux") else PsutilProcess()
