"""How often the interpreter hands itself between the collector's threads.

Ingest and the API's requests share one interpreter. Each of their SQLite calls lets
go of it (``sqlite3`` releases it around every step of a statement); when another
thread is waiting, that thread takes it, and the caller gets it back only when the
other lets go or is asked to after the switch interval (Python's default: 5 ms). A
profile of ``bench/reads_bench.py`` under ingest (py-spy, native stacks) found ingest
waiting for the interpreter right after its SQLite calls 16-17 % of its time, and the
requests 12-20 % of theirs. With the two settings taken in turn in the same runs
(``reads_bench.py --switch-ms 5,1``, a busy machine), ingest under the reads held more
at 1 ms in 5 of 7 runs (42,182 → 48,668 msg/s summed, +15 %), alone the same (-2.5 %,
within the noise); the requests' latencies moved within the noise either way. The
profile at 1 ms still shows ingest waiting 16 % of its time: on a machine this loaded
a thread handed the interpreter waits for a core as well, so the gain is modest. At
load 6 ingest kept up under the reads either way, the requests' p99 alike or lower at
1 ms.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.001
"""Python's default is 0.005."""


def share_between_ingest_and_reads() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
