"""Zalo Official Account messages against a local server that checks each request as the
OA API documents it: the message endpoint, the token renewal, and what the collector does
when Zalo says no."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.alerts.notify import Notifier, Route
from collector.alerts.rules import default_rules
from collector.alerts.zalo import MAX_TEXT, ZaloChannel, ZaloSettings
from collector.config import parse_collector_config
from collector.state.store import StateStore
from tests.test_alerts import T0, Harness, at, tslcd

APP_ID, SECRET = "4291763606161179100", "AbC123456XyZ"


class FakeZalo:
    """The OA API as documented: tokens it issued, messages it took, requests it refused."""

    def __init__(self) -> None:
        self.access = {"old-access"}
        self.refresh = {"refresh-1"}
        self.messages: list[tuple[str, str]] = []
        self.problems: list[str] = []
        self.renewals = 0
        self.refuse_user = ""

    def handle(self, path: str, headers: Any, body: bytes) -> dict[str, Any]:
        if path == "/v4/oa/access_token":
            return self._renew(headers, body)
        if path == "/v3.0/oa/message/cs":
            return self._message(headers, body)
        self.problems.append(f"unknown path {path}")
        return {"error": -201, "message": "no such API"}

    def _renew(self, headers: Any, body: bytes) -> dict[str, Any]:
        if headers.get("secret_key") != SECRET:
            self.problems.append("renewal without the app's secret_key header")
        if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            self.problems.append("renewal not form-encoded")
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("app_id") != APP_ID or form.get("grant_type") != "refresh_token":
            self.problems.append(f"renewal form {form}")
        if form.get("refresh_token") not in self.refresh:
            return {"error": -14020, "error_description": "Invalid refresh token"}
        self.refresh.discard(form["refresh_token"])  # each refresh token is good once
        self.renewals += 1
        access, refresh = f"access-{self.renewals}", f"refresh-{self.renewals + 1}"
        self.access, self.refresh = {access}, {refresh}
        return {"access_token": access, "refresh_token": refresh, "expires_in": "90000"}

    def _message(self, headers: Any, body: bytes) -> dict[str, Any]:
        if not headers.get("Content-Type", "").startswith("application/json"):
            self.problems.append("message not JSON")
        if headers.get("access_token") not in self.access:
            return {"error": -216, "message": "Access token is invalid"}
        data = json.loads(body)
        if set(data) != {"recipient", "message"} or set(data["message"]) != {"text"}:
            self.problems.append(f"message shape {sorted(data)}")
        text, user = data["message"]["text"], data["recipient"]["user_id"]
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            self.problems.append("text missing or over 2000 characters")
        if user == self.refuse_user:
            return {"error": -213, "message": "User has not followed the OA"}
        self.messages.append((user, text))
        return {"error": 0, "message": "Success", "data": {"message_id": "m1", "user_id": user}}


@pytest.fixture
def zalo() -> Iterator[tuple[FakeZalo, str]]:
    fake = FakeZalo()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer = json.dumps(fake.handle(self.path, self.headers, body)).encode()
            self.send_response(200)  # Zalo answers 200 with its error in the body
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def settings(tmp_path: Path, url: str, users: tuple[str, ...] = ("1234567890",)) -> ZaloSettings:
    secret = tmp_path / "zalo-secret"
    secret.write_text(SECRET + "\n")
    tokens = tmp_path / "zalo-tokens.json"
    if not tokens.exists():
        tokens.write_text(json.dumps({"refresh_token": "refresh-1"}))
    return ZaloSettings(APP_ID, str(secret), str(tokens), users, url, url, timeout_s=5)


def test_the_first_message_renews_the_token_and_keeps_the_new_pair(
    zalo: tuple[FakeZalo, str], tmp_path: Path
) -> None:
    fake, url = zalo
    channel = ZaloChannel(settings(tmp_path, url, ("111", "222")), clock=lambda: T0)
    assert channel.send("[ĐANG XẢY RA] Mất đường truyền", "- la-nga <b>x</b>")
    assert fake.problems == []
    text = "[ĐANG XẢY RA] Mất đường truyền\n- la-nga <b>x</b>"  # as it is: no markup
    assert fake.messages == [("111", text), ("222", text)]
    saved = json.loads((tmp_path / "zalo-tokens.json").read_text())
    assert saved == {"access_token": "access-1", "refresh_token": "refresh-2",
                     "expires_at": T0 + 90000}  # fmt: skip
    assert (tmp_path / "zalo-tokens.json").stat().st_mode & 0o777 == 0o600
    # The next one uses the saved token: no renewal.
    assert channel.send("again", "")
    assert fake.renewals == 1


def test_a_token_zalo_no_longer_takes_is_renewed_once_and_the_message_sent(
    zalo: tuple[FakeZalo, str], tmp_path: Path
) -> None:
    fake, url = zalo
    channel = ZaloChannel(settings(tmp_path, url), clock=lambda: T0)
    assert channel.send("one", "")
    fake.access = {"revoked-by-zalo"}  # e.g. the OA's admin re-authorised the app
    assert channel.send("two", "")
    assert fake.renewals == 2 and [t for _, t in fake.messages] == ["one", "two"]
    # A token that will expire within minutes is renewed before it is used.
    later = ZaloChannel(settings(tmp_path, url), clock=lambda: T0 + 89_900)
    assert later.send("three", "") and fake.renewals == 3


def test_a_refusal_is_a_failed_delivery_and_a_long_text_is_cut(
    zalo: tuple[FakeZalo, str], tmp_path: Path
) -> None:
    fake, url = zalo
    fake.refuse_user = "999"
    channel = ZaloChannel(settings(tmp_path, url, ("999",)), clock=lambda: T0)
    assert not channel.send("title", "body")
    fine = ZaloChannel(settings(tmp_path, url, ("111",)), clock=lambda: T0)
    assert fine.send("t", "x" * 5000)
    assert len(fake.messages[-1][1]) == MAX_TEXT and fake.messages[-1][1].endswith("…")
    broken = ZaloChannel(settings(tmp_path, "http://127.0.0.1:9"), clock=lambda: T0)
    assert not broken.send("t", "")  # nothing listens: a failure to retry, not a crash
    assert fake.problems == []


def test_a_retry_after_a_partial_delivery_goes_only_to_who_did_not_get_it(
    zalo: tuple[FakeZalo, str], tmp_path: Path
) -> None:
    """One technician has unfollowed the OA for a while: the others get the message at
    once, and the retries never send it to them twice."""
    fake, url = zalo
    fake.refuse_user = "222"
    channel = ZaloChannel(settings(tmp_path, url, ("111", "222", "333")), clock=lambda: T0)
    assert not channel.send("[ĐANG XẢY RA] Mất đường truyền", "- la-nga")
    assert [u for u, _ in fake.messages] == ["111", "333"]  # not held up by 222
    assert not channel.send("[ĐANG XẢY RA] Mất đường truyền", "- la-nga")  # still refused
    assert [u for u, _ in fake.messages] == ["111", "333"]
    fake.refuse_user = ""
    assert channel.send("[ĐANG XẢY RA] Mất đường truyền", "- la-nga")
    assert [u for u, _ in fake.messages] == ["111", "333", "222"]
    # Delivered to all, the text is forgotten: the same text later is a new message.
    assert channel.send("[ĐANG XẢY RA] Mất đường truyền", "- la-nga")
    assert [u for u, _ in fake.messages] == ["111", "333", "222", "111", "222", "333"]
    assert fake.problems == []


def test_an_alert_reaches_a_technician_on_zalo_through_the_notifier(
    zalo: tuple[FakeZalo, str], tmp_path: Path
) -> None:
    fake, url = zalo
    h = Harness(tmp_path)
    route = Route("zalo", (), zalo=ZaloChannel(settings(tmp_path, url), clock=lambda: h.now))
    notifier = Notifier(h.store, [route], default_rules(), group_wait=0, clock=lambda: h.now)
    for minute in range(4):
        h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)))
    assert notifier.run_once() == 1
    [(user, text)] = fake.messages
    assert user == "1234567890" and text.startswith("[ĐANG XẢY RA] [NGHIÊM TRỌNG]")
    assert "commune-collector ack" in text


def test_the_config_takes_a_zalo_route_and_checks_its_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"refresh_token": "r"}')
    route = {
        "name": "zalo",
        "zalo": {"app_id": APP_ID, "secret_key_file": str(secret), "token_file": str(tokens),
                 "user_ids": ["1234567890"]},
    }  # fmt: skip
    config = parse_collector_config({"alerts": {"routes": [route]}}, "collector.toml")
    zalo_section = config.alerts.routes[0].zalo
    assert zalo_section is not None and zalo_section.user_ids == ["1234567890"]
    from agent.configtypes import ConfigError

    for change, message in (
        ({"secret_key_file": str(tmp_path / "missing")}, "secret_key_file"),
        ({"user_ids": ["not a number"]}, "user_ids"),
        ({"api_url": "ftp://x"}, "api_url"),
    ):
        bad = {**route, "zalo": {**route["zalo"], **change}}  # type: ignore[dict-item]
        with pytest.raises(ConfigError, match=message):
            parse_collector_config({"alerts": {"routes": [bad]}}, "collector.toml")
    StateStore(tmp_path / "s.sqlite").close()
