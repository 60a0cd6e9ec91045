"""The API against its own OpenAPI schema (schemathesis), bounded in time: whatever the
parameters and bodies, no 5xx, and every response matches the schema."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from collector.config import ApiSection, ApiToken
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.state.systems import parse_catalogue
from collector.web.factory import create_app
from tests.test_api import with_an_alert
from tests.test_health import INVENTORY, build_province

TOKEN = "schema-test-technician"


_STORES: list[StateStore] = []


def _app():  # type: ignore[no-untyped-def]
    store = build_province(Path(tempfile.mkdtemp(prefix="commune-schema-")))
    _STORES.append(store)  # made at import, for schemathesis: closed with the module
    with_an_alert(store)
    token = ApiToken(
        name="tech", role="technician", sha256=hashlib.sha256(TOKEN.encode()).hexdigest()
    )
    # Enough failures allowed that the fuzzing never locks itself out.
    catalogue = parse_catalogue(
        {
            "province": "dong-nai",
            "systems": [
                {"id": "mot-cua", "name": "Một cửa điện tử", "kind": "one-stop",
                 "url": "https://motcua.dongnai.gov.vn/", "network": "tslcd"},
                {"id": "lgsp", "name": "LGSP", "kind": "lgsp", "host": "lgsp.dongnai.gov.vn",
                 "port": 8443, "network": "tslcd", "communes": ["la-nga"]},
            ],
            "websites": [{"commune": "la-nga", "url": "https://langa.dongnai.gov.vn/"}],
        },
        "dong-nai.systems.toml",
        INVENTORY,
    )  # fmt: skip
    return create_app(
        HealthModel(store, [INVENTORY]), store, ApiSection(tokens=[token], max_auth_failures=10**9),
        systems=lambda: {"dong-nai": catalogue},
    )  # fmt: skip


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.fixture(scope="module", autouse=True)
def _close_the_store() -> Iterator[None]:
    yield
    while _STORES:
        _STORES.pop().close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_route_keeps_its_schema(case: schemathesis.Case) -> None:
    # Every check but one: a schema-valid request may still be refused with a documented
    # 400 when its values contradict each other ("to" before "from", a silence muting
    # nothing), which no schema can express.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=[positive_data_acceptance],
    )
