"""A collector of two provinces, two communes each, served for real with scoped tokens.

Đồng Nai (la-nga, tan-phu) and Lâm Đồng (bao-loc, di-linh): in each commune a PC
``pc-01`` whose line is down (a firing alert from the real alert engine), a silence
and a maintenance window; a province-wide window in each province; enrollment tokens
and an enrolled PC per commune, made through the API against a real Mosquitto with
the dynamic security plugin. The API and the console run in uvicorn on loopback.

Every token is an admin, so that only its scope tells what it may see and do:
``all`` (every province), ``dong-nai`` and ``lam-dong`` (a province), and one per
commune (``la-nga``, ``tan-phu``, ``bao-loc``, ``di-linh``). ``viewer-la-nga`` and
``tech-la-nga`` are la-nga's with lesser roles.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from collector.alerts.engine import AlertEngine
from collector.alerts.records import add_silence
from collector.alerts.rules import default_rules
from collector.app import rollout_settings
from collector.config import ApiSection, ApiToken, ConsoleSection, Role, parse_collector_config
from collector.rollout.service import Rollout
from collector.state import maintenance
from collector.state.health import HealthModel
from collector.state.inventory import Commune, Inventory
from collector.state.store import StateStore
from collector.state.systems import parse_catalogue
from collector.web.auth import token_digest
from tests.factories import envelope, link, status
from tests.servers import AppServer, Mosquitto, dynsec_broker

ADMIN, ADMIN_PASSWORD = "commune-admin", "dynsec-admin-password-0123"
COLLECTOR_USER, COLLECTOR_PASSWORD = "commune-collector", "collector-password-0123456"

PLACES = {
    "dong-nai": ("la-nga", "tan-phu"),
    "lam-dong": ("bao-loc", "di-linh"),
}
NAMES = {
    "la-nga": "Xã La Ngà",
    "tan-phu": "Xã Tân Phú",
    "bao-loc": "Phường Bảo Lộc",
    "di-linh": "Xã Di Linh",
}
PROVINCE_OF = {c: p for p, communes in PLACES.items() for c in communes}
INVENTORIES = [
    Inventory(
        province="dong-nai",
        name="Đồng Nai",
        communes=[Commune(slug=c, name=NAMES[c], pcs=1) for c in PLACES["dong-nai"]],
    ),
    Inventory(
        province="lam-dong",
        name="Lâm Đồng",
        communes=[Commune(slug=c, name=NAMES[c], pcs=1) for c in PLACES["lam-dong"]],
    ),
]

#: Each province's shared systems: one every commune uses, one of a single commune, and
#: each commune's website (dong-nai's only).
CATALOGUES = {
    inventory.province: parse_catalogue(
        {
            "province": inventory.province,
            "systems": [
                {
                    "id": "mot-cua",
                    "name": "Một cửa điện tử",
                    "kind": "one-stop",
                    "url": f"https://motcua.{inventory.province}.example/",
                    "network": "tslcd",
                },
                {
                    "id": "lis",
                    "name": "Đất đai",
                    "kind": "land",
                    "host": "lis.example",
                    "port": 8443,
                    "network": "tslcd",
                    "communes": [inventory.communes[1].slug],
                },
            ],
            "websites": [
                {"commune": c.slug, "url": f"https://{c.slug}.example/"}
                for c in inventory.communes
                if inventory.province == "dong-nai"
            ],
        },
        f"{inventory.province}.systems.toml",
        inventory,
    )
    for inventory in INVENTORIES
}

#: name -> (role, provinces, communes)
SCOPES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "all": ("admin", (), ()),
    "dong-nai": ("admin", ("dong-nai",), ()),
    "lam-dong": ("admin", ("lam-dong",), ()),
    **{c: ("admin", (PROVINCE_OF[c],), (c,)) for c in PROVINCE_OF},
    "viewer-la-nga": ("viewer", ("dong-nai",), ("la-nga",)),
    "tech-la-nga": ("technician", ("dong-nai",), ("la-nga",)),
}


def token(name: str) -> str:
    return f"scoped-token-{name}-0123456789"


def api_tokens(scopes: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]) -> list[ApiToken]:
    return [
        ApiToken(
            name=name,
            role=cast(Role, role),
            sha256=token_digest(token(name)),
            provinces=list(provinces),
            communes=list(communes),
        )
        for name, (role, provinces, communes) in scopes.items()
    ]


def profiles_text(province: str) -> str:
    return (
        f'province = "{province}"\n[vars]\ngateway = "127.0.0.1"\n\n'
        '[profiles.office]\ninterval = "60s"\n[[profiles.office.checks.host]]\n'
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class Client:
    """Plain HTTP to the collector: redirects are answers, not followed."""

    port: int

    def call(
        self,
        method: str,
        path: str,
        who: str | None = None,
        *,
        body: object = None,
        raw: bytes | None = None,
        cookie: str = "",
        form: dict[str, str] | None = None,
    ) -> Answer:
        headers: dict[str, str] = {}
        data = raw
        if who is not None:
            headers["Authorization"] = f"Bearer {token(who)}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie:
            headers["Cookie"] = f"commune_session={cookie}"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def get(self, path: str, who: str | None = "all") -> Answer:
        return self.call("GET", path, who)

    def login(self, who: str) -> str:
        answer = self.call("POST", "/login", form={"token": token(who)})
        assert answer.status == 303, answer
        found = re.search(r"commune_session=([^;]+)", answer.headers.get("set-cookie", ""))
        assert found, answer.headers
        return found.group(1)

    def page(self, path: str, cookie: str) -> Answer:
        return self.call("GET", path, cookie=cookie)

    def form(self, path: str, cookie: str, **fields: str) -> Answer:
        """A console form posted with the session's CSRF token (read from a page)."""
        page = self.page("/alerts", cookie).text
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, "no form on the alerts page"
        return self.call("POST", path, cookie=cookie, form={"csrf": found.group(1), **fields})


@dataclass
class Site:
    client: Client
    store: StateStore
    app: Any
    broker: Mosquitto
    rollout: Rollout
    root: Path
    cookies: dict[str, str]

    def cookie(self, who: str) -> str:
        """A console session for the token (one login per token and test module)."""
        if who not in self.cookies:
            self.cookies[who] = self.client.login(who)
        return self.cookies[who]

    def alert_of(self, commune: str) -> dict[str, Any]:
        """The firing alert of a commune's pc-01 (as the all-seeing token reads it)."""
        province = PROVINCE_OF[commune]
        answer = self.client.get(f"/api/v1/alerts?province={province}&commune={commune}")
        found = [a for a in answer.json if a["agent"] == "pc-01"]
        assert found, answer.json
        return dict(found[0])


def fill(store: StateStore) -> None:
    """Each commune: pc-01 online, its line down three minutes (the alert fires), a
    silence of its line rule and a window; each province: a window for all of it."""
    AlertEngine(default_rules()).install(store)
    now = time.time()
    for commune, province in PROVINCE_OF.items():
        place = {"province": province, "commune": commune}
        store.apply(statuses=[(status("online", now - 300, **place), now - 300)])
        for minute in range(4):
            ts = now - 240 + 60 * minute
            sample = link(ts, up=False, name="tslcd", target="10.0.0.1")
            store.apply([envelope(minute + 1, sample, ts=ts, **place)])
        add_silence(store, starts=now, ends=now + 86400, created_by="seed", now=now,
                    comment=f"silence of {commune}", rule="port_down", **place)  # fmt: skip
        maintenance.add(store, starts=now + 3600, ends=now + 7200, created_by="seed", now=now,
                        reason=f"window of {commune}", **place)  # fmt: skip
    for province in PLACES:
        maintenance.add(store, province=province, starts=now + 3600, ends=now + 7200,
                        created_by="seed", now=now, reason=f"window of {province}")  # fmt: skip


def _collector_config(root: Path, port: int, profiles: list[Path]) -> Any:
    (root / "admin.password").write_text(ADMIN_PASSWORD)
    (root / "collector.password").write_text(COLLECTOR_PASSWORD)
    url = f"mqtt://127.0.0.1:{port}"
    return parse_collector_config({
        "mqtt": {"url": url, "username": COLLECTOR_USER,
                 "password_file": str(root / "collector.password")},
        "dynsec": {"url": url, "username": ADMIN, "password_file": str(root / "admin.password")},
        "enrollment": {"broker_url": url, "profiles": [str(p) for p in profiles],
                       "collector_url": "https://collector.example:8443"},
        "api": {"listen": "127.0.0.1:8080"},
    })  # fmt: skip


@contextmanager
def scoped_site(root: Path) -> Iterator[Site]:
    broker = dynsec_broker(root / "broker", ADMIN, ADMIN_PASSWORD).start()
    profiles = []
    for province in PLACES:
        path = root / f"{province}.profiles.toml"
        path.write_text(profiles_text(province))
        profiles.append(path)
    store = StateStore(root / "state.sqlite")
    rollout: Rollout | None = None
    server: AppServer | None = None
    try:
        fill(store)
        config = _collector_config(root, broker.port, profiles)
        rollout = Rollout(store, rollout_settings(config))
        rollout.start()
        secret = root / "console-secret"
        secret.write_text("s" * 48)
        from collector.web.factory import create_app

        app = create_app(
            HealthModel(store, INVENTORIES), store,
            ApiSection(tokens=api_tokens(SCOPES)),
            console=ConsoleSection(secret_file=str(secret)), rollout=rollout,
            systems=lambda: CATALOGUES,
        )  # fmt: skip
        server = AppServer(app).start()
        client = Client(server.port)
        for commune, province in PROVINCE_OF.items():
            made = client.call(
                "POST", "/api/v1/enrollment/tokens", "all",
                body={"province": province, "commune": commune, "uses": 5},
            )  # fmt: skip
            assert made.status == 201, made
            enrolled = client.call(
                "POST", "/api/v1/enroll",
                raw=json.dumps({"token": made.json["token"], "agent": "pc-enrolled",
                                "password": "agent-password-0123456789"}).encode(),
            )  # fmt: skip
            assert enrolled.status == 201, enrolled
        yield Site(client, store, app, broker, rollout, root, {})
    finally:
        if server is not None:
            server.stop()
        if rollout is not None:
            rollout.stop()
        store.close()
        broker.stop()
