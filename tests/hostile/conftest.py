from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.province import Province, start_province


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Province]:
    # Small per-agent bounds, so that going over them takes a few envelopes.
    limits = "max_series_per_agent = 300\nmax_subjects_per_agent = 20\n"
    yield from start_province(tmp_path_factory.mktemp("province"), limits)
