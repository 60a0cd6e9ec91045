"""/api/v1/communes in pages: a national list is not one answer of 3,321 communes."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from collector.config import ApiSection
from collector.state.health import HealthModel
from collector.state.livehealth import LiveHealth
from collector.web.factory import create_app
from tests.servers import AppServer
from tests.test_health import INVENTORY, build_province


def get(base: str, path: str) -> tuple[int, Any, Message]:
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


@pytest.mark.parametrize("live", [False, True], ids=["full", "live"])
def test_the_pages_of_the_list_join_up_to_the_whole(tmp_path: Path, live: bool) -> None:
    store = build_province(tmp_path)
    model = LiveHealth(store, [INVENTORY]) if live else HealthModel(store, [INVENTORY])
    if isinstance(model, LiveHealth):
        model.install(store)
    settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
    served = AppServer(create_app(model, store, settings)).start()
    try:
        status, whole, headers = get(served.url, "/api/v1/communes")
        assert status == 200 and len(whole) == 3
        assert "Link" not in headers  # one page: nothing follows
        listed: list[str] = []
        path: str | None = "/api/v1/communes?limit=2"
        pages = 0
        while path is not None:
            status, page, headers = get(served.url, path)
            assert status == 200 and len(page) <= 2
            listed += [c["slug"] for c in page]
            pages += 1
            link = re.fullmatch(r'<(.+)>; rel="next"', headers.get("Link", ""))
            path = link.group(1) if link else None
            if path is not None:
                assert path.endswith("cursor=" + headers["X-Next-Cursor"].replace("/", "%2F"))
        assert pages == 2 and listed == [c["slug"] for c in whole]
        status, body, _ = get(served.url, "/api/v1/communes?cursor=dong-nai/nowhere")
        assert status == 400 and "cursor" in body["detail"]
        status, _, _ = get(served.url, "/api/v1/communes?limit=1001")
        assert status == 422
    finally:
        served.stop()
        if isinstance(model, LiveHealth):
            model.close()
        store.close()
