"""The IOC's API over real HTTP (uvicorn): answers computed by hand, clean errors, tokens."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.config import ApiSection, ApiToken
from collector.state.health import HealthModel
from collector.state.store import StateStore
from collector.web.factory import create_app
from collector.web.guard import Guard
from collector.web.metrics import Family, render
from tests.servers import AppServer
from tests.test_health import INVENTORY, T0, build_province

TOKEN = "technician-token"


class Served:
    def __init__(self, port: int) -> None:
        self.port = port

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
        return self.call("GET", path, token)

    def call(
        self, method: str, path: str, token: str | None = TOKEN, body: object = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


def serve(
    tmp_path: Path, settings: ApiSection, prepare: Callable[[StateStore], None] | None = None
) -> Iterator[Served]:
    from collector.config import ConsoleSection

    store = build_province(tmp_path)
    if prepare is not None:
        prepare(store)
    app = create_app(HealthModel(store, [INVENTORY]), store, settings, console=ConsoleSection())
    served = AppServer(app).start()
    yield Served(served.port)
    served.stop()
    store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    token = ApiToken(name="tech", role="technician", sha256=digest)
    yield from serve(tmp_path, ApiSection(tokens=[token]))


def test_availability_of_the_line_and_each_probe_over_a_window(api: Served) -> None:
    status, report = api.get(f"/api/v1/availability?commune=la-nga&from={T0}&to={T0 + 3600}")
    assert status == 200
    # Both probes were down only 1200-1500: the line lost 300 s of 3,600.
    line = report["line"]
    assert line["percent"] == round(100 * 3300 / 3600, 2)  # 91.67: two decimals
    assert [(o["start"], o["end"]) for o in line["outages"]] == [(T0 + 1200, T0 + 1500)]
    by_agent = {v["agent"]: v for v in report["subjects"] if v["kind"] == "link"}
    assert by_agent["pc-02"]["down_s"] == 800  # its own probe: 1000-1800
    # Local time without an offset is +07:00, like the command line.
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + 7 * 3600))
    assert api.get(f"/api/v1/availability?commune=la-nga&from={local}&to={T0 + 3600}")[1][
        "window_start"
    ] == pytest.approx(T0)
    # By province too: the same answer in its own, none in another province.
    window = f"commune=la-nga&from={T0}&to={T0 + 3600}"
    assert api.get(f"/api/v1/availability?{window}&province=dong-nai") == (status, report)
    assert api.get(f"/api/v1/availability?{window}&province=lam-dong")[0] == 404


def test_mistakes_are_clean_errors(api: Served) -> None:
    status, body = api.get("/api/v1/availability?commune=la-nga&from=yesterday")
    assert status == 422 and body["detail"][0]["loc"] == ["query", "from"]  # the pattern
    status, body = api.get(f"/api/v1/availability?commune=la-nga&from={T0}&to={T0}")
    assert status == 400 and "to must be after from" in body["detail"]
    assert api.get("/api/v1/availability?commune=nowhere")[0] == 404
    assert api.get("/api/v1/communes/nowhere")[0] == 404
    assert api.get("/api/v1/agents/nobody")[0] == 404
    # pc-01 exists in La Ngà and in Phú Hòa.
    status, body = api.get("/api/v1/agents/pc-01")
    assert status == 409 and "dong-nai/la-nga/pc-01" in body["detail"]
    status, body = api.get("/api/v1/agents/pc-01?commune=phu-hoa")
    assert status == 200 and body["commune"] == "phu-hoa"
    assert api.get("/api/v1/agents/dong-nai/phu-hoa/pc-01")[1]["commune"] == "phu-hoa"


def test_filters(api: Served) -> None:
    _, critical = api.get("/api/v1/communes?status=critical")
    assert [c["slug"] for c in critical] == ["phu-hoa"]
    _, offline = api.get("/api/v1/agents?state=offline")
    assert [(a["commune"], a["agent"]) for a in offline] == [("la-nga", "pc-03")]


def test_without_tokens_nothing_is_served_but_healthz(tmp_path: Path) -> None:
    for api in serve(tmp_path, ApiSection()):
        assert api.get("/api/v1/province", token=None)[0] == 401
        assert api.get("/api/v1/province", token="guess")[0] == 401
        assert api.get("/healthz", token=None)[0] == 200


def test_open_on_loopback_serves_without_a_token(tmp_path: Path) -> None:
    for api in serve(tmp_path, ApiSection(open_on_loopback=True)):
        status, province = api.get("/api/v1/province", token=None)
        assert status == 200 and province["communes"] == 3
        assert api.get("/api/v1/province", token="guess")[0] == 401  # a wrong token is wrong


def test_prometheus_text_escapes_labels_and_spells_numbers() -> None:
    family = Family("x_total", "counter", "Things.\nMore.")
    family.add(3, reason='bad "json"\\')
    family.add(0.25, reason="ok")
    assert render([family]) == (
        "# HELP x_total Things.\\nMore.\n"
        "# TYPE x_total counter\n"
        'x_total{reason="bad \\"json\\"\\\\"} 3\n'
        'x_total{reason="ok"} 0.25\n'
    )


def test_a_histogram_is_cumulative_with_sum_and_count() -> None:
    from collector.web.metrics import histogram

    text = render([histogram("h_seconds", "H.", (0.1, 1.0), [2, 1, 4], 9.5)])
    assert text.splitlines()[2:] == [
        'h_seconds_bucket{le="0.1"} 2',
        'h_seconds_bucket{le="1"} 3',
        'h_seconds_bucket{le="+Inf"} 7',
        "h_seconds_sum 9.5",
        "h_seconds_count 7",
    ]


READ_TOKEN = "ioc-read-token"


def with_an_alert(store: StateStore) -> None:
    """Tân Tiến's line down for three minutes: one firing alert, through the real engine."""
    from agent.wire import Envelope, Sample
    from collector.alerts.engine import AlertEngine
    from collector.alerts.rules import default_rules

    AlertEngine(default_rules()).install(store)
    now = time.time()
    for minute in range(4):
        ts = now - 240 + 60 * minute
        sample = Sample(
            ts=ts,
            check="link",
            name="tslcd",
            outcome="timeout",
            target="10.75.0.1",
            fields={"up": 0},
            tags={"network": "tslcd"},
        )
        store.apply(
            [
                Envelope(
                    v=1,
                    agent="pc-01",
                    province="dong-nai",
                    commune="tan-tien",
                    seq=minute,
                    ts=ts,
                    samples=[sample],
                )
            ]
        )


def test_the_iocs_read_token_cannot_ack_or_silence_a_technicians_can(tmp_path: Path) -> None:
    tokens = [
        ApiToken(name="ioc", role="read", sha256=hashlib.sha256(READ_TOKEN.encode()).hexdigest()),
        ApiToken(name="tech", role="technician", sha256=hashlib.sha256(TOKEN.encode()).hexdigest()),
    ]
    for api in serve(tmp_path, ApiSection(tokens=tokens), with_an_alert):
        status, alerts = api.get("/api/v1/alerts?state=firing", token=READ_TOKEN)
        assert status == 200
        [alert] = alerts
        assert (alert["rule"], alert["commune"]) == ("line_down_tslcd", "tan-tien")
        path = f"/api/v1/alerts/{alert['id']}/ack"
        status, body = api.call("POST", path, READ_TOKEN, {"comment": "seen"})
        assert status == 403 and "cannot change alerts" in body["detail"]
        silence = {"commune": "tan-tien", "duration_s": 3600, "comment": "VNPT works"}
        assert api.call("POST", "/api/v1/silences", READ_TOKEN, silence)[0] == 403
        status, acked = api.call("POST", path, TOKEN, {"comment": "VNPT ticket 4411"})
        assert status == 200
        assert (acked["acked_by"], acked["ack_comment"]) == ("tech", "VNPT ticket 4411")
        status, created = api.call("POST", "/api/v1/silences", TOKEN, silence)
        assert status == 201 and created["created_by"] == "tech"
        assert created["ends"] - created["starts"] == 3600
        assert api.get(f"/api/v1/alerts/{alert['id']}")[1]["silenced"] is True
        assert api.call("DELETE", f"/api/v1/silences/{created['id']}", READ_TOKEN)[0] == 403
        assert api.call("DELETE", f"/api/v1/silences/{created['id']}", TOKEN)[0] == 204
        assert api.get("/api/v1/silences")[1] == []
        status, body = api.call("POST", "/api/v1/silences", TOKEN, {"duration_s": 60})
        assert status == 400 and "cannot mute everything" in body["detail"]
        assert api.call("POST", "/api/v1/alerts/999/ack", TOKEN, {})[0] == 404


def test_the_monthly_report_as_json_and_rendered(api: Served) -> None:
    status, report = api.get("/api/v1/reports/monthly?month=2026-11")
    assert status == 200
    assert [c["slug"] for c in report["communes"]] == ["la-nga", "phu-hoa", "bien-hoa"]
    assert report["province_name"] == "Đồng Nai"
    # La Ngà's line: down 300 s only, while both probes said so.
    assert report["communes"][0]["line_downtime_s"] == 300
    request = urllib.request.Request(
        f"http://127.0.0.1:{api.port}/api/v1/reports/monthly?month=2026-11&format=csv&lang=en",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/csv")
        # A BOM first, for Excel on Windows; reporting and expected in columns of their own.
        body = response.read()
        assert body.decode("utf-8-sig").startswith("Commune,Code,PCs reporting,PCs expected")
        assert body.startswith(b"\xef\xbb\xbf")
    assert api.get("/api/v1/reports/monthly?month=2026-13")[0] == 400
    assert api.get("/api/v1/reports/monthly?month=Nov")[0] == 422


def test_guessing_tokens_gets_an_address_locked_out(tmp_path: Path) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings = ApiSection(
        tokens=[ApiToken(name="tech", role="technician", sha256=digest)], max_auth_failures=3
    )
    for api in serve(tmp_path, settings):
        assert [api.get("/api/v1/province", token=f"guess-{i}")[0] for i in range(3)] == [
            401,
            401,
            401,
        ]
        status, body = api.get("/api/v1/province")  # even the right token, for a while
        assert status == 429 and "too many wrong tokens" in body["detail"]
        # The console's login counts the same failures.
        request = urllib.request.Request(
            f"http://127.0.0.1:{api.port}/login", data=b"token=" + TOKEN.encode(), method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        refused.value.close()
        assert refused.value.code == 429 and int(refused.value.headers["Retry-After"]) > 290


def test_the_limiter_forgets_after_the_lockout_and_a_success_resets() -> None:
    from collector.web.ratelimit import FailureLimiter

    now = [0.0]
    limiter = FailureLimiter(max_failures=2, window_s=60, lockout_s=100, clock=lambda: now[0])
    limiter.failed("10.0.0.9")
    limiter.succeeded("10.0.0.9")
    limiter.failed("10.0.0.9")
    assert limiter.retry_after("10.0.0.9") == 0  # one failure since the success
    limiter.failed("10.0.0.9")
    assert limiter.retry_after("10.0.0.9") == 100
    assert limiter.retry_after("10.0.0.10") == 0  # another address
    now[0] = 100.5
    assert limiter.retry_after("10.0.0.9") == 0
    now[0] = 200
    limiter.failed("10.0.0.9")
    now[0] = 300  # the earlier failure left the window
    limiter.failed("10.0.0.9")
    assert limiter.retry_after("10.0.0.9") == 0


def test_alert_groups_their_bulk_actions_and_an_alerts_steps(tmp_path: Path) -> None:
    tokens = [
        ApiToken(name="ioc", role="read", sha256=hashlib.sha256(READ_TOKEN.encode()).hexdigest()),
        ApiToken(name="tech", role="technician", sha256=hashlib.sha256(TOKEN.encode()).hexdigest()),
    ]
    for api in serve(tmp_path, ApiSection(tokens=tokens), with_an_alert):
        status, groups = api.get("/api/v1/alert-groups", token=READ_TOKEN)
        assert status == 200
        [group] = groups
        assert (group["rule"], group["commune"], group["count"], group["severity"]) == (
            "line_down_tslcd", "tan-tien", 1, "critical",
        )  # fmt: skip
        body = {"province": "dong-nai", "commune": "tan-tien", "rule": "line_down_tslcd",
                "comment": "VNPT ticket 4411"}  # fmt: skip
        assert api.call("POST", "/api/v1/alert-groups/ack", READ_TOKEN, body)[0] == 403
        status, acked = api.call("POST", "/api/v1/alert-groups/ack", TOKEN, body)
        assert status == 200 and acked == {"acknowledged": [group["members"][0]["id"]]}
        status, steps = api.get(f"/api/v1/alerts/{acked['acknowledged'][0]}/steps")
        assert [s["step"] for s in steps] == ["fired", "acked"]
        assert steps[-1]["detail"] == "tech: VNPT ticket 4411 (group)"
        status, silence = api.call(
            "POST", "/api/v1/alert-groups/silence", TOKEN, {**body, "duration_s": 7200}
        )
        assert status == 201 and (silence["commune"], silence["rule"]) == (
            "tan-tien", "line_down_tslcd",
        )  # fmt: skip
        bad = {**body, "rule": "DROP TABLE"}
        assert api.call("POST", "/api/v1/alert-groups/ack", TOKEN, bad)[0] == 422
        assert api.get("/api/v1/alerts/999/steps")[0] == 404


def test_maintenance_windows_over_http(api: Served) -> None:
    now = time.time()
    window = {"province": "dong-nai", "commune": "la-nga", "device": "tslcd",
              "starts": now + 3600, "ends": now + 7200, "reason": "VNPT nâng cấp"}  # fmt: skip
    status, created = api.call("POST", "/api/v1/maintenance", TOKEN, window)
    assert status == 201 and created["created_by"] == "tech" and created["every"] == ""
    status, listed = api.get("/api/v1/maintenance?province=dong-nai")
    assert status == 200 and [w["id"] for w in listed] == [created["id"]]
    for change, refused in (
        ({"ends": now + 1800}, "ends: the window ends before it starts"),
        ({"ends": now + 400 * 86400}, "ends: beyond a year"),
        ({"every": "week"}, "until: a recurring window needs the date it stops"),
    ):
        status, body = api.call("POST", "/api/v1/maintenance", TOKEN, {**window, **change})
        assert status == 400 and refused in body["detail"], change
    status, _ = api.call("POST", "/api/v1/maintenance", TOKEN, {**window, "starts": "Infinity"})
    assert status == 422
    assert api.call("DELETE", f"/api/v1/maintenance/{created['id']}", TOKEN)[0] == 204
    assert api.call("DELETE", f"/api/v1/maintenance/{created['id']}", TOKEN)[0] == 404


def test_the_monthly_report_as_the_provinces_word_document(api: Served) -> None:
    from docx import Document

    request = urllib.request.Request(
        f"http://127.0.0.1:{api.port}/api/v1/reports/monthly?month=2026-11&format=docx",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].endswith("wordprocessingml.document")
        assert 'filename="report-2026-11.docx"' in response.headers["content-disposition"]
        document = Document(io.BytesIO(response.read()))
    header = document.tables[0]
    assert header.rows[0].cells[1].paragraphs[0].text == "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    assert header.rows[0].cells[0].paragraphs[0].text == "UBND TỈNH ĐỒNG NAI"
    assert any(p.text.startswith("1. Hệ thống phòng chống mã độc:") for p in document.paragraphs)


@pytest.mark.parametrize(
    ("declared", "answer"),
    [
        (b"0" * 40 + b"70000", 413),  # leading zeros do not hide a large body
        (b"9" * 5000, 413),  # more digits than int() converts: too large, not a crash
        ("\u00b2".encode("latin-1"), 200),  # "²": no number, the body is counted instead
        (b"12", 200),
    ],
)
def test_the_guard_reads_a_declared_length_as_ascii_digits(declared: bytes, answer: int) -> None:
    """The guard behind any ASGI server: uvicorn refuses some of these itself first."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/silences",
        "headers": [(b"content-length", declared), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "query_string": b"",
    }
    asyncio.run(Guard(app, open_on_loopback=False, max_body=64 * 1024)(scope, receive, send))
    assert sent[0]["status"] == answer


@pytest.mark.parametrize(("declared", "read_all"), [(70_000, True), (5 * 1024 * 1024, False)])
def test_a_refused_body_is_read_before_its_413_unless_it_is_huge(
    declared: int, read_all: bool
) -> None:
    """An answer sent with the request's bytes unread is followed by a close the kernel
    turns into a reset: a client still sending sees the reset, not the 413 (it happened
    to a 70 KB profile under load). Up to DRAIN_MAX the body is read and dropped first;
    a huge one is not waited for."""
    from collector.web import guard

    events: list[str] = []
    chunks = [b" " * 16384] * 5

    async def receive() -> dict[str, Any]:
        body = chunks.pop(0) if chunks else b""
        events.append("read")
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: Any) -> None:
        events.append(message["type"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a refused body never reaches the application")

    scope = {
        "type": "http", "method": "PUT", "path": "/api/v1/profiles/dong-nai",
        "headers": [(b"content-length", str(declared).encode()), (b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080), "scheme": "http",
        "query_string": b"",
    }  # fmt: skip
    asyncio.run(guard.Guard(app, open_on_loopback=False)(scope, receive, send))
    start = events.index("http.response.start")
    assert (events[:start].count("read") == 5) is read_all, events
    assert declared <= guard.DRAIN_MAX or "read" not in events[:start]
