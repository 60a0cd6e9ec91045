"""Notifications delivered to real receivers: an HTTP endpoint (apprise json://) and an SMTP
server (aiosmtpd), grouped, translated, retried, silenced."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from collector.alerts.notify import Notifier, Route
from collector.alerts.records import add_silence
from collector.alerts.rules import default_rules
from tests.servers import free_port
from tests.test_alerts import T0, Harness, at, tslcd

NAMES = {"dong-nai/la-nga": "Xã La Ngà"}


class HttpReceiver:
    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, _server: object, _session: object, envelope: Any) -> str:
                outer.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = (
            f"mailto://127.0.0.1:{self.port}?from=collector@dong-nai.example"
            "&to=tech@dong-nai.example&mode=insecure"
        )

    def subjects(self) -> list[str]:
        return [
            str(make_header(decode_header(message_from_bytes(raw)["Subject"])))
            for _, _, raw in self.messages
        ]


@pytest.fixture
def receivers() -> Iterator[tuple[HttpReceiver, SmtpReceiver]]:
    http, smtp = HttpReceiver(), SmtpReceiver()
    yield http, smtp
    http.stop()
    smtp.controller.stop()


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def notifier(h: Harness, routes: list[Route]) -> Notifier:
    return Notifier(
        h.store, routes, default_rules(), names=NAMES, group_wait=30, clock=lambda: h.now
    )


def line_down_on_three_pcs(h: Harness) -> None:
    """Down from T0 on three PCs: the alerts fire with the samples of T0+120, now."""
    for minute in range(3):
        for agent in ("pc-01", "pc-02", "pc-03"):
            h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(False)), agent=agent)


def test_three_pcs_losing_the_line_make_one_message_per_route(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, smtp = receivers
    routes = [
        Route("technicians", (http.url,), language="vi"),
        Route("duty-officer", (smtp.url,), severities=("critical",), language="en"),
    ]
    sender = notifier(h, routes)
    line_down_on_three_pcs(h)
    assert sender.run_once() == 0  # within the group wait
    h.now += 30
    assert sender.run_once() == 2
    [message] = http.received
    assert message["title"].startswith("[ĐANG XẢY RA] [NGHIÊM TRỌNG]")
    assert "Mất đường truyền số liệu chuyên dùng tại Xã La Ngà" in message["title"]
    assert "và 2 cảnh báo khác" in message["title"]
    assert message["message"].count("- Mất đường truyền") == 3
    [subject] = smtp.subjects()
    assert subject.startswith("[FIRING] [CRITICAL] Dedicated line (TSLCD) down at Xã La Ngà")
    assert smtp.messages[0][1] == ["tech@dong-nai.example"]
    # Nothing is sent twice; the line comes back: one "resolved" per route.
    assert sender.run_once() == 0
    for minute in range(4, 8):
        for agent in ("pc-01", "pc-02", "pc-03"):
            h.send(T0 + 60 * minute, at(T0 + 60 * minute, tslcd(True)), agent=agent)
    h.now += 30
    assert sender.run_once() == 2
    assert http.received[1]["title"].startswith("[ĐÃ KHẮC PHỤC]")
    resolved = message_from_bytes(smtp.messages[1][2])
    assert resolved.get_content_type() == "text/plain"  # plain text: no HTML part
    assert "until" in resolved.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_a_warning_does_not_reach_a_critical_only_route(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, smtp = receivers
    sender = notifier(
        h, [Route("mail", (smtp.url,), severities=("critical",)), Route("hook", (http.url,))]
    )
    from tests.test_alerts import sample

    disk = sample("host", {"used_percent": 97.0}, item="disk", target="C:")
    h.send(T0, at(T0, disk))
    h.now += 60
    assert sender.run_once() == 1
    assert len(http.received) == 1 and smtp.messages == []
    assert "Ổ C: của máy pc-01 tại Xã La Ngà đầy 97%" in http.received[0]["title"]


def test_a_receiver_that_is_down_gets_the_message_later_and_the_other_only_once(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, _ = receivers
    down = f"json://127.0.0.1:{free_port()}/hook"
    sender = notifier(h, [Route("up", (http.url,)), Route("down", (down,))])
    line_down_on_three_pcs(h)
    h.now += 30
    assert sender.run_once() == 1
    assert sender.failures == 1 and len(http.received) == 1
    h.now += 11  # the retry's backoff
    assert sender.run_once() == 0
    assert sender.failures == 2 and len(http.received) == 1  # "up" is not sent it again
    with h.store.reading() as db:
        rows = db.execute("SELECT attempts, done FROM notifications").fetchall()
    assert rows == [(2, "up")] * 3  # one event per alert, kept until "down" has it


def test_a_silenced_or_held_back_alert_sends_nothing(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    http, _ = receivers
    sender = notifier(h, [Route("hook", (http.url,))])
    add_silence(h.store, starts=T0, ends=T0 + 7200, created_by="tech", now=T0, commune="la-nga")
    line_down_on_three_pcs(h)
    h.now += 30
    assert sender.run_once() == 0 and http.received == []
    with h.store.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0


def test_the_route_urls_file_keeps_passwords_out_of_the_config(tmp_path: Path) -> None:
    from collector.alerts.notify import load_urls

    path = tmp_path / "urls"
    path.write_text("# duty officer\nmailtos://user:secret@mail.example\n\n")
    assert load_urls(["json://hook"], str(path)) == (
        "json://hook",
        "mailtos://user:secret@mail.example",
    )


HOSTILE = '<a href="http://evil.example/x">C:</a> <b>&amp; <i>'
"""A disk target an agent chose: a link, an entity and tags left open."""

#: What Telegram's Bot API accepts with parse_mode=HTML (core.telegram.org/bots/api
#: #html-style): these tags, balanced; "<", ">" and "&" elsewhere escaped.
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre"}


class TelegramApi:
    """A local stand-in for api.telegram.org checking sendMessage as documented: JSON with
    chat_id and text; with parse_mode HTML the text must parse, or 400 "can't parse
    entities", as Telegram answers."""

    def __init__(self) -> None:
        from html.parser import HTMLParser

        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class Checker(HTMLParser):
            def __init__(self) -> None:
                super().__init__(convert_charrefs=True)
                self.open: list[str] = []
                self.bad = ""

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                if tag not in TELEGRAM_TAGS:
                    self.bad = self.bad or f"unsupported start tag {tag!r}"
                self.open.append(tag)

            def handle_endtag(self, tag: str) -> None:
                if not self.open or self.open.pop() != tag:
                    self.bad = self.bad or f"unexpected end tag {tag!r}"

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                problem = ""
                if not self.path.endswith("/sendMessage") or "chat_id" not in body:
                    problem = "not a sendMessage with a chat_id"
                elif body.get("parse_mode") == "HTML":
                    checker = Checker()
                    checker.feed(body["text"])
                    checker.close()
                    problem = checker.bad or ("unclosed tags" if checker.open else "")
                if problem:
                    outer.refused += 1
                    answer = {"ok": False, "error_code": 400, "description": problem}
                    self.send_response(400)
                else:
                    outer.accepted.append(body)
                    answer = {"ok": True, "result": {"message_id": len(outer.accepted)}}
                    self.send_response(200)
                data = json.dumps(answer).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/bot"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramApi]:
    from apprise.plugins.telegram import NotifyTelegram

    api = TelegramApi()
    # apprise's own Telegram plugin, pointed at the local stand-in instead of the Internet.
    monkeypatch.setattr(NotifyTelegram, "notify_url", api.base)
    yield api
    api.stop()


def test_an_agents_text_cannot_put_markup_into_telegram_or_mail(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver], telegram: TelegramApi
) -> None:
    from tests.test_alerts import sample

    _, smtp = receivers
    routes = [
        Route("telegram", ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567",)),
        Route("mail", (smtp.url,)),
    ]
    sender = notifier(h, routes)
    h.send(T0, at(T0, sample("host", {"used_percent": 97.0}, item="disk", target=HOSTILE)))
    h.now += 60
    assert sender.run_once() == 2
    assert telegram.refused == 0
    [message] = telegram.accepted
    assert message["parse_mode"] == "HTML"
    assert "<a" not in message["text"] and "&lt;a href=" in message["text"]
    assert "&lt;i&gt;" in message["text"]  # the open tag is text, not markup
    mail = message_from_bytes(smtp.messages[0][2])
    assert not mail.is_multipart() and mail.get_content_type() == "text/plain"
    assert HOSTILE in mail.get_payload(decode=True).decode()  # type: ignore[union-attr]


def test_an_event_no_route_takes_is_given_up_after_its_attempts(
    h: Harness, receivers: tuple[HttpReceiver, SmtpReceiver]
) -> None:
    from collector.alerts.notify import MAX_ATTEMPTS

    sender = notifier(h, [Route("down", (f"json://127.0.0.1:{free_port()}/hook",))])
    line_down_on_three_pcs(h)
    for _ in range(MAX_ATTEMPTS):
        h.now += 3601
        sender.run_once()
    assert sender.abandoned == 3 and sender.failures == MAX_ATTEMPTS
    with h.store.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM notifications").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM alerts WHERE state = 'firing'").fetchone()[0] == 3
