"""A store written by an earlier release opens with this one, its history intact.

``tests/data/stores/<release>/`` holds a store made by that release's own code
(``make_store.py``, run on its checkout) and what that release read back from
it. Opened here the way the collector opens it at start, every agent, outage,
alert, silence and spooled point must read back the same, and the monthly
figures must not move.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.store import StateStore

STORES = Path(__file__).parent / "data" / "stores"
sys.path.insert(0, str(STORES))
import make_store  # noqa: E402

RELEASES = sorted(p.name for p in STORES.iterdir() if (p / "state.sqlite").exists())


@pytest.mark.parametrize("release", RELEASES)
def test_a_store_of_an_earlier_release_opens_with_its_history_intact(
    release: str, tmp_path: Path
) -> None:
    shutil.copy(STORES / release / "state.sqlite", tmp_path / "state.sqlite")
    expected = json.loads((STORES / release / "expected.json").read_text())
    # As `commune-collector run` opens it: the store, then the alert engine's tables.
    store = StateStore(tmp_path / "state.sqlite")
    AlertEngine(default_rules()).install(store)
    store.close()
    found = json.loads(json.dumps(make_store.dump(tmp_path, expected["now"])))
    for part in ("agents", "subjects", "outages", "alerts", "silences", "spool", "latest"):
        assert found[part] == expected[part], part
    assert found["report"] == expected["report"]
    assert sum(map(len, found["outages"].values())) >= 9
    assert any(a["acked_by"] == "tech-la-nga" for a in found["alerts"])
