"""The Linux reader of agent/machine.py gives psutil's figures: on the same /proc files
(psutil's ``PROCFS_PATH``), and live on this machine."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.checks.host import HostCheck
from agent.checks.options import HostOptions
from agent.machine import ProcMachine, ProcProcess, PsutilMachine

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc")

MEMINFO = """MemTotal:       16314436 kB
MemFree:         1022904 kB
{available}Buffers:          401212 kB
Cached:          7291832 kB
Active:          6125652 kB
Inactive:        7443972 kB
Active(file):    3528204 kB
Inactive(file):  4015996 kB
Shmem:            452812 kB
Slab:             702784 kB
SReclaimable:     517540 kB
"""
ZONEINFO = """Node 0, zone      DMA
  pages free     3840
        min      32
        low      40
        high     48
Node 0, zone   Normal
  pages free     250000
        min      16000
        low      20000
        high     24000
"""
FILESYSTEMS = "nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\n\text4\n\tvfat\nnodev\tzfs\n\tiso9660\n"
MOUNTS = (
    "proc /proc proc rw,relatime 0 0\n"
    "/dev/sda2 / ext4 rw,relatime,errors=remount-ro 0 0\n"
    "/dev/sda1 /boot/efi vfat rw,relatime,fmask=0077 0 0\n"
    "tmpfs /run tmpfs rw,nosuid,nodev 0 0\n"
    "/dev/sdb1 /media/USB\\040Drive vfat rw,nosuid 0 0\n"
    "/dev/sdc1 /media/a\\134b\\011c vfat rw,nosuid 0 0\n"
    "tank/home /home zfs rw,xattr 0 0\n"
    "none /mnt/none ext4 rw 0 0\n"
    "/dev/sr0 /media/cdrom iso9660 ro 0 0\n"
)


def cpu_line(user: int, idle: int, iowait: int, guest: int) -> str:
    return f"cpu  {user} 120 3400 {idle} {iowait} 0 230 15 {guest} 0\nbtime 1764900000\n"


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[Path]:
    """A /proc of recorded files that psutil reads too."""
    (tmp_path / "self").mkdir()
    (tmp_path / "stat").write_text(cpu_line(50_000, 900_000, 4_000, 700))
    (tmp_path / "meminfo").write_text(MEMINFO.format(available="MemAvailable:    9200104 kB\n"))
    (tmp_path / "zoneinfo").write_text(ZONEINFO)
    (tmp_path / "filesystems").write_text(FILESYSTEMS)
    (tmp_path / "self" / "mounts").write_text(MOUNTS)
    saved = psutil.PROCFS_PATH
    psutil.PROCFS_PATH = str(tmp_path)
    try:
        yield tmp_path
    finally:
        psutil.PROCFS_PATH = saved


def test_cpu_busy_share_is_psutils(proc: Path) -> None:
    ours, theirs = ProcMachine(str(proc)), PsutilMachine()
    assert ours.cpu_percent() == 0.0  # the first call only primes
    theirs.cpu_percent()
    for user, idle, iowait, guest in [
        (50_900, 903_000, 4_050, 900),  # busy a quarter, guest time inside user's
        (50_900, 903_000, 4_050, 900),  # no time at all
        (50_800, 904_000, 4_100, 950),  # a counter that went back counts as 0
        (62_000, 904_100, 4_100, 950),  # all busy
    ]:
        (proc / "stat").write_text(cpu_line(user, idle, iowait, guest))
        assert ours.cpu_percent() == theirs.cpu_percent()
    assert ours.boot_time() == theirs.boot_time() == 1764900000.0


def test_memory_is_psutils_with_and_without_memavailable(proc: Path) -> None:
    ours, theirs = ProcMachine(str(proc)), PsutilMachine()
    assert ours.memory() == theirs.memory()
    assert ours.memory().percent == 43.6
    # A kernel before 3.14, and one that says 0 (psutil's issue 1915): estimated alike.
    for available in ("", "MemAvailable:          0 kB\n"):
        (proc / "meminfo").write_text(MEMINFO.format(available=available))
        assert ours.memory() == theirs.memory()
        assert 0 < ours.memory().percent < 100


def test_partitions_are_psutils(proc: Path) -> None:
    ours = ProcMachine(str(proc)).partitions()
    assert ours == PsutilMachine().partitions()
    assert [p.mountpoint for p in ours] == [
        "/", "/boot/efi", "/media/USB Drive", "/media/a\\b\tc", "/home", "/media/cdrom",
    ]  # fmt: skip


def test_this_machines_figures_are_psutils() -> None:
    ours, theirs = ProcMachine(), PsutilMachine()
    assert ours.cpu_count() == theirs.cpu_count() > 0
    assert ours.boot_time() == theirs.boot_time()
    assert ours.memory().total == theirs.memory().total
    assert abs(ours.memory().percent - theirs.memory().percent) < 2.0
    partitions = ours.partitions()
    assert partitions == theirs.partitions()
    for partition in partitions:
        try:
            usage = ours.disk_usage(partition.mountpoint)
        except OSError:
            continue
        reference = theirs.disk_usage(partition.mountpoint)
        assert usage.total == reference.total
        assert abs(usage.percent - reference.percent) < 1.0


def test_the_agents_own_process_is_psutils() -> None:
    ours, theirs = ProcProcess(), psutil.Process(os.getpid())
    assert abs(ours.rss() - theirs.memory_info().rss) < 4 * 1024 * 1024
    times = os.times()
    cpu = theirs.cpu_times()
    assert abs((times.user + times.system) - (cpu.user + cpu.system)) < 0.1
    # What the health file the launcher judges says: its CPU since its start.
    assert abs(ours.cpu_seconds() - (cpu.user + cpu.system)) < 0.1
    assert abs(ours.started() - theirs.create_time()) < 0.05
    assert ours.cpu_percent() == 0.0  # the first call only primes
    sum(i * i for i in range(200_000))
    assert ours.cpu_percent() >= 0.0


def test_the_host_check_reports_the_same_with_either_reader() -> None:
    def shape(machine: ProcMachine | PsutilMachine) -> list[tuple[object, ...]]:
        samples = HostCheck(HostOptions(), machine=machine).collect()
        return [
            (s.outcome, s.item, s.target, sorted(s.fields), sorted(s.tags.items())) for s in samples
        ]

    ours, theirs = shape(ProcMachine()), shape(PsutilMachine())
    assert ours == theirs
    assert ours[0][0] == "ok" and "cpu_percent" in ours[0][3]
