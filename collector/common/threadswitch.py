"""How often the interpreter hands itself between the collector's threads.

Ingest and the API's requests share one interpreter. Each of their SQLite calls lets
go of it (``sqlite3`` releases it around every step of a statement); when another
thread is waiting, that thread takes it, and the caller gets it back only when the
other lets go or is asked to after the switch interval (Python's default: 5 ms). With
twenty consoles and the IOC reading while the country's data commits, ingest waited up
to 5 ms after many of its statements: measured in ``bench/reads_bench.py`` with the two
settings taken in turn in the same run, ingest under reads held 5,064 / 6,746 / 4,374
msg/s at 5 ms and 7,230 / 8,931 / 7,102 at 1 ms, and alone the same either way (no
thread waits then, so no more switches happen).
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.001
"""Python's default is 0.005."""


def share_between_ingest_and_reads() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
