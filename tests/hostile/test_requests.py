"""Requests from a browser or a script with bad intent, against the real collector process:
forged or stale sessions, a reverse proxy's headers, DNS rebinding in loopback mode, open
redirects, absurd silences, oversized input. Each is refused by name and the views stay
up."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.province import TECH_TOKEN, Http, Province
from tests.servers import CollectorProcess, Mosquitto


def form(
    http: Http, path: str, fields: dict[str, str], cookie: str = "", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    sent = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    if cookie:
        sent["Cookie"] = f"commune_session={cookie}"
    return http.request("POST", path, body=urllib.parse.urlencode(fields).encode(), headers=sent)


def post_json(http: Http, path: str, body: bytes) -> tuple[int, object]:
    status, _, answer = http.request(
        "POST",
        path,
        body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TECH_TOKEN}"},
    )
    return status, json.loads(answer) if answer else None


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "/%0d%0aSet:x"]
)
def test_no_redirect_leaves_the_site(province: Province, target: str) -> None:
    quoted = urllib.parse.quote(target, safe="")
    status, headers, _ = province.http.request("GET", f"/lang/en?next={quoted}")
    assert status == 303 and headers["location"] in (
        "/",
        target if target.startswith("/%") else "/",
    )
    assert not headers["location"].startswith("//")
    status, headers, _ = form(province.http, f"/login?next={quoted}", {"token": TECH_TOKEN})
    assert status == 303 and not headers["location"].startswith(("//", "/\\", "http"))


@pytest.mark.parametrize(
    "body",
    [
        b'{"commune": "la-nga", "starts": Infinity, "duration_s": 3600}',
        b'{"commune": "la-nga", "ends": NaN}',
        b'{"commune": "la-nga", "duration_s": 1e12}',
        b'{"commune": "la-nga", "starts": 1e300, "duration_s": 60}',
        b'{"commune": "la-nga", "ends": 99999999999}',
        b'{"commune": "la-nga\\n", "duration_s": 60}',
        b'{"commune": "la-nga", "duration_s": 60, "comment": "' + b"x" * 5000 + b'"}',
    ],
)
def test_absurd_silences_are_refused_and_the_alerts_page_stays_up(
    province: Province, body: bytes
) -> None:
    status, answer = post_json(province.http, "/api/v1/silences", body)
    assert status in (400, 422), (status, answer)
    assert province.http.get("/api/v1/silences?all=true", token=TECH_TOKEN)[0] == 200
    assert province.http.page("/alerts", province.cookie)[0] == 200


def test_free_text_and_bodies_are_bounded(province: Province) -> None:
    status, _ = post_json(
        province.http, "/api/v1/alerts/1/ack", b'{"comment": "' + b"x" * 5000 + b'"}'
    )
    assert status == 422
    status, _ = post_json(province.http, "/api/v1/silences", b"[" + b" " * (70 * 1024) + b"]")
    assert status == 413
    status, _, _ = form(
        province.http, "/silences", {"commune": "x" * 500, "csrf": "x"}, province.cookie
    )
    assert status in (403, 422)
    province.views_answer()


@pytest.mark.parametrize(
    "declared",
    [
        "0" * 40 + "99999999",  # leading zeros do not hide a large body
        "9" * 5000,  # more digits than int() converts
        "\u00b2",  # "²" is a digit to str.isdigit(), not to int()
        "\u0663".encode().decode("latin-1"),  # an Arabic-Indic three, sent as UTF-8
    ],
)
def test_a_declared_length_that_is_no_plain_number_is_refused(
    province: Province, declared: str
) -> None:
    """The HTTP server or the guard refuses it; neither answers 500 or waits for the body."""
    status, _, _ = province.http.request(
        "POST",
        "/api/v1/silences",
        body=b"{}",
        headers={"Content-Length": declared, "Authorization": f"Bearer {TECH_TOKEN}"},
    )
    assert status in (400, 413)
    province.views_answer()


@pytest.mark.parametrize(
    "query",
    [
        "to=" + "9" * 400,  # float() makes it infinite
        "to=" + "1" + "0" * 20,  # finite, past any date a datetime holds
        "from=0&to=" + "9" * 12,
        "from=-5&to=10",
    ],
)
def test_a_time_outside_the_contract_is_refused_not_a_500(province: Province, query: str) -> None:
    status, answer = province.http.get(f"/api/v1/availability?commune=la-nga&{query}", TECH_TOKEN)
    assert status in (400, 422), (status, answer)
    status, answer = province.http.get("/api/v1/availability?commune=la-nga", TECH_TOKEN)
    assert status == 200, answer


def test_healthz_names_parts_and_tells_no_internal_errors(province: Province) -> None:
    # The read process warms its model at start ("warming"): its part says ok once done.
    deadline = time.monotonic() + 120
    while True:
        status, health = province.http.get("/healthz")
        if health["detail"]["parts"].get("read_process") == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and health["status"] == "ok"
    assert set(health["detail"]["parts"]) >= {
        "broker", "mqtt", "ingest", "notifier", "sink", "read_process"
    }  # fmt: skip
    assert all(state == "ok" for state in health["detail"]["parts"].values())
    assert "error" not in json.dumps(health).lower()


def test_forwarded_for_is_not_believed_from_a_peer_that_is_no_proxy(province: Province) -> None:
    guesser = Http(province.collector.api_port, source="127.0.0.3")
    for n in range(10):  # [api] max_auth_failures: the lockout counts the peer
        guesser.get(
            "/api/v1/province", token=f"guess-{n}", **{"X-Forwarded-For": f"198.51.100.{n}"}
        )
    assert guesser.get("/api/v1/province", token=TECH_TOKEN)[0] == 429
    # Nor can anyone lock another address out by naming it.
    other = Http(province.collector.api_port, source="127.0.0.4")
    assert (
        other.get("/api/v1/province", token=TECH_TOKEN, **{"X-Forwarded-For": "127.0.0.3"})[0]
        == 200
    )


def test_a_logged_out_session_stays_dead_across_a_restart(province: Province) -> None:
    cookie = province.http.login(TECH_TOKEN)
    assert province.http.page("/", cookie)[0] == 200
    status, _, _ = province.http.request(
        "POST", "/logout", headers={"Cookie": f"commune_session={cookie}"}
    )
    assert status == 303
    status, _, _ = province.http.request(
        "GET", "/", headers={"Cookie": f"commune_session={cookie}"}
    )
    assert status == 303  # to the login page: the cookie is dead server-side, not only here
    province.collector.stop()
    province.collector.start()
    status, _, _ = province.http.request(
        "GET", "/", headers={"Cookie": f"commune_session={cookie}"}
    )
    assert status == 303
    assert province.http.page("/", province.cookie)[0] == 200  # other sessions live on
    province.good_lands(20)


# A collector of its own for what needs its config changed ----------------------------------


TOKEN = "a-technician-token-0123456789"


def tokens_section(role: str) -> str:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    return f'[[api.tokens]]\nname = "tech"\nrole = "{role}"\nsha256 = "{digest}"\n'


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    broker = Mosquitto(tmp_path / "broker").start()
    secret = tmp_path / "secret"
    secret.write_text("q" * 40)
    yield broker, secret
    broker.stop()


def collector(
    tmp_path: Path, broker: Mosquitto, secret: Path, api: str, sections: str
) -> CollectorProcess:
    return CollectorProcess(
        tmp_path / "collector",
        broker.port,
        api=api,
        sections=sections + f'[console]\nsecret_file = "{secret}"\n',
    )


def test_a_session_ends_with_its_token_or_its_role(
    tmp_path: Path, lone: tuple[Mosquitto, Path]
) -> None:
    broker, secret = lone
    process = collector(tmp_path, broker, secret, "", tokens_section("technician")).start()
    http = Http(process.api_port)
    try:
        cookie = http.login(TOKEN)
        assert http.page("/alerts", cookie)[0] == 200
        process.stop()
        # The same secret, the token now read-only: the technician's session is over.
        process.config.write_text(process.config.read_text().replace('"technician"', '"read"'))
        process.start()
        assert (
            http.request("GET", "/alerts", headers={"Cookie": f"commune_session={cookie}"})[0]
            == 303
        )
        cookie = http.login(TOKEN)
        assert "/silences" not in http.page("/alerts", cookie)[1]  # read-only now
        process.stop()
        process.config.write_text(process.config.read_text().replace(tokens_section("read"), ""))
        process.start()
        assert http.request("GET", "/", headers={"Cookie": f"commune_session={cookie}"})[0] == 303
    finally:
        process.stop()


def test_the_session_cookie_is_secure_behind_a_trusted_proxy_saying_https(
    tmp_path: Path, lone: tuple[Mosquitto, Path]
) -> None:
    broker, secret = lone
    process = collector(
        tmp_path, broker, secret, 'trusted_proxies = ["127.0.0.1"]', tokens_section("technician")
    ).start()
    try:
        proxy, stranger = Http(process.api_port), Http(process.api_port, source="127.0.0.2")
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        _, headers, _ = form(proxy, "/login", {"token": TOKEN}, **https)
        assert "secure" in headers["set-cookie"].lower()
        _, headers, _ = form(stranger, "/login", {"token": TOKEN}, **https)
        assert "secure" not in headers["set-cookie"].lower()
        # The proxy's word on the client's address is believed: the lockout counts it.
        for n in range(10):
            proxy.get("/api/v1/communes", token=f"guess-{n}", **{"X-Forwarded-For": "203.0.113.5"})
        locked = proxy.get("/api/v1/communes", token=TOKEN, **{"X-Forwarded-For": "203.0.113.5"})
        assert locked[0] == 429
        other = proxy.get("/api/v1/communes", token=TOKEN, **{"X-Forwarded-For": "203.0.113.6"})
        assert other[0] == 200
    finally:
        process.stop()


def test_loopback_mode_keeps_csrf_and_refuses_rebinding_and_proxies(
    tmp_path: Path, lone: tuple[Mosquitto, Path]
) -> None:
    broker, secret = lone
    process = collector(tmp_path, broker, secret, "open_on_loopback = true", "").start()
    http = Http(process.api_port)
    try:
        assert http.get("/api/v1/province", Host=f"127.0.0.1:{process.api_port}")[0] in (200, 404)
        # A page of evil.example that rebound its name to 127.0.0.1 sends its own Host.
        status, body = http.get("/api/v1/province", Host="evil.example")
        assert status == 403 and "DNS rebinding" in body["detail"]
        assert http.get("/", Host=f"evil.example:{process.api_port}")[0] == 403
        # A reverse proxy on this host would hand the world anonymous admin.
        status, body = http.get("/api/v1/province", **{"X-Forwarded-For": "203.0.113.1"})
        assert status == 403 and "proxy" in body["detail"]
        # Forms need their CSRF token, in loopback mode too.
        fields = {"commune": "la-nga", "hours": "1", "comment": "maintenance"}
        assert form(http, "/silences", fields)[0] == 403
        body = b'{"commune": "la-nga", "duration_s": 3600}'
        status, _, _ = http.request(
            "POST", "/api/v1/silences", body=body, headers={"Content-Type": "application/json"}
        )
        assert status == 201  # a silence to show: its delete form carries the token
        status, headers, page = http.request("GET", "/alerts")
        assert status == 200
        cookie = re.search(r"commune_session=([^;]+)", headers["set-cookie"])
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.decode())
        assert cookie and csrf
        assert form(http, "/silences", {**fields, "csrf": "0" * 32}, cookie.group(1))[0] == 403
        status, headers, _ = form(
            http, "/silences", {**fields, "csrf": csrf.group(1)}, cookie.group(1)
        )
        assert status == 303 and headers["location"] == "/alerts"
    finally:
        process.stop()


def test_no_page_can_be_framed_by_another_site(province: Province) -> None:
    """The console's acknowledge and silence buttons cannot be clickjacked."""
    for path in ("/", "/alerts", "/login", "/api/v1/province"):
        _, headers, _ = province.http.request(
            "GET", path, headers={"Cookie": f"commune_session={province.cookie}"}
        )
        assert headers["x-frame-options"] == "DENY"
        assert headers["content-security-policy"] == "frame-ancestors 'none'"
        assert headers["x-content-type-options"] == "nosniff"


def test_a_report_for_a_province_that_is_no_slug_is_refused_not_a_500(
    province: Province,
) -> None:
    """Found by the schema fuzzing: a control character in ?province= reached the xlsx
    writer, which cannot hold it."""
    status, _ = province.http.get(
        "/api/v1/reports/monthly?month=2025-10&format=xlsx&province=%1F", token=TECH_TOKEN
    )
    assert status == 422
    assert province.http.get("/healthz")[0] == 200
