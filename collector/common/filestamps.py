"""When files that are read again on change last changed: (mtime, size) each, (0, 0)
for one that cannot be read, so a file appearing or vanishing counts as a change."""

from __future__ import annotations

import os
from collections.abc import Iterable


def file_stamps(paths: Iterable[str | os.PathLike[str]]) -> tuple[tuple[int, int], ...]:
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
            stamps.append((info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append((0, 0))
    return tuple(stamps)
