"""The console's screens as a technician meets them, in Chromium: the maintenance form
refuses in the page's language, the line chart starts when monitoring did, /docs works
with no route to the Internet, the overview's problems fit a 1366 px screen, an English
screen is English, and an admin starts, pauses, resumes and halts a rollout on its page
(a province's admin and a technician only read it).

The collector runs in this process (the collector's own server on a free port) on a
store fed with samples of the last minutes. Screenshots go to test-artifacts/console/
and, when the folder exists, to /work/artifacts/issue24/.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.wire import Sample
from collector.alerts.engine import AlertEngine
from collector.alerts.rules import default_rules
from collector.config import ApiSection, ConsoleSection
from collector.state.health import HealthModel
from collector.state.inventory import load_inventory
from collector.state.store import StateStore
from tests.factories import envelope, link, status
from tests.servers import REPO, AppServer

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect

ARTIFACTS = [REPO / "test-artifacts" / "console", Path("/work/artifacts/issue24")]
INVENTORY = load_inventory(REPO / "deploy" / "inventory" / "dong-nai.toml")
VIETNAM = dt.timezone(dt.timedelta(hours=7))


def feed(store: StateStore, now: float) -> None:
    """La Ngà: its PC enrolled a minute ago, one line probe answered in 0.4 ms, no
    anti-malware; Phú Hòa: two PCs, its line down for ten minutes, one unprotected PC.
    The real alert engine judges them."""
    AlertEngine(default_rules()).install(store)
    store.apply(statuses=[(status("online", now - 60, commune="la-nga"), now - 60)])
    store.apply([envelope(1, link(now - 55, rtt_ms=0.4), commune="la-nga")])
    for number, agent in enumerate(("pc-01", "pc-02"), start=1):
        born = status("online", now - 900, agent=agent, commune="phu-hoa")
        store.apply(statuses=[(born, now - 900)])
        verdict = "protected" if number == 1 else "unprotected"
        checked = Sample(ts=now - 600, check="antivirus", name="antivirus", outcome="ok",
                         fields={"verdict": verdict})  # fmt: skip
        store.apply([envelope(number, checked, agent=agent, commune="phu-hoa")])
    for minute in range(12):
        ts = now - 720 + 60 * minute
        store.apply([envelope(10 + minute, link(ts, up=minute < 2, rtt_ms=12.0 + minute),
                              commune="phu-hoa")])  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from collector.web.factory import create_app

    store = StateStore(tmp_path_factory.mktemp("console") / "state.sqlite")
    feed(store, time.time())
    settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True)
    app = create_app(HealthModel(store, [INVENTORY]), store, settings, console=ConsoleSection())
    served = AppServer(app).start()
    yield served.url
    served.stop()
    store.close()


def shot(page: Page, name: str) -> None:
    for folder in ARTIFACTS:
        if folder == ARTIFACTS[0] or folder.parent.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def screen(browser: Browser, url: str) -> Page:
    """A page at ``url`` on a 1366 px screen of a browser set to Vietnamese."""
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page.goto(url)
    return page


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


def at(moment: dt.datetime, hours: float = 0) -> str:
    """A datetime-local field's value, ``hours`` after ``moment``."""
    return (moment + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


def english(page: Page, base: str) -> None:
    page.goto(base + "/lang/en?next=/")
    expect(page.locator("h1")).to_contain_text("Overview")


def test_the_plan_form_refuses_on_the_form_in_the_pages_language(
    browser: Browser, base: str
) -> None:
    page = screen(browser, base + "/alerts")
    plan = page.locator("#plan")
    tomorrow = dt.datetime.now(VIETNAM).replace(hour=22, minute=0) + dt.timedelta(days=1)
    plan.locator("input[name=commune]").fill("Xã Không Có")
    plan.locator("input[name=device]").fill("tslcd")
    plan.locator("input[name=starts]").fill(at(tomorrow))
    plan.locator("input[name=ends]").fill(at(tomorrow, 4))
    plan.locator("input[name=reason]").fill("VNPT nâng cấp đường truyền")
    plan.locator("button[type=submit]").click()
    # The page again, the reason beside the form, what was typed kept; no JSON.
    expect(page.locator("#plan-error")).to_contain_text("Không có xã, phường này")
    expect(page.locator("h1")).to_have_text("Cảnh báo")
    expect(plan.locator("input[name=commune]")).to_have_attribute("aria-invalid", "true")
    expect(plan.locator("input[name=reason]")).to_have_value("VNPT nâng cấp đường truyền")
    assert "detail" not in page.locator("body").inner_text()
    shot(page, "maintenance-form-error")
    # Backwards: refused by the store's rule, said in the page's words.
    plan.locator("input[name=commune]").fill("Xã La Ngà")
    plan.locator("input[name=ends]").fill(at(tomorrow, -1))
    plan.locator("button[type=submit]").click()
    expect(page.locator("#plan-error")).to_contain_text("kết thúc phải sau bắt đầu")
    expect(plan.locator("input[name=ends]")).to_have_attribute("aria-invalid", "true")
    # The browser itself stops a device with a space (the pattern compiles in Chromium).
    plan.locator("input[name=device]").fill("tslcd province")
    assert plan.locator("input[name=device]").evaluate("e => e.validity.patternMismatch")
    # In English, the same refusal in English.
    english(page, base)
    page.goto(base + "/alerts")
    plan.locator("input[name=commune]").fill("nowhere")
    plan.locator("input[name=device]").fill("tslcd")
    plan.locator("input[name=starts]").fill(at(tomorrow))
    plan.locator("input[name=ends]").fill(at(tomorrow, 4))
    plan.locator("button[type=submit]").click()
    expect(page.locator("#plan-error")).to_contain_text("No such commune")
    # The commune by its name, as the technician knows it: the window is La Ngà's.
    plan.locator("input[name=commune]").fill("xa la nga")
    plan.locator("button[type=submit]").click()
    expect(page.locator("#maintenance")).to_contain_text("Xã La Ngà")
    windows = api(base, "/api/v1/maintenance")
    assert [(w["commune"], w["device"]) for w in windows] == [("la-nga", "tslcd")]


def test_the_line_chart_starts_when_monitoring_did_and_shows_one_point(
    browser: Browser, base: str
) -> None:
    page = screen(browser, base + "/communes/la-nga?province=dong-nai")
    chart = page.locator("svg.chart")
    expect(chart).to_have_count(1)
    # An hour shown, monitored for a minute: grey for the rest, green only at the end.
    unwatched, up = chart.locator("rect.unwatched"), chart.locator("rect.up")
    expect(unwatched).to_have_count(1)
    watched_from = float(up.get_attribute("x") or 0)
    assert float(unwatched.get_attribute("width") or 0) > 500 and watched_from > 600
    # The single RTT sample is a dot, on an axis of 0.5 ms, not "0 ms / 0 ms".
    expect(chart.locator("g.rtt circle")).to_have_count(1)
    expect(chart.locator("text.rtt-top")).to_have_text("0,5 ms")
    shot(page, "commune-just-enrolled")
    page.goto(base + "/communes/phu-hoa?province=dong-nai")
    expect(page.locator("svg.chart rect.down")).to_have_count(1)
    assert page.locator("svg.chart g.rtt circle").count() >= 2  # one per 5-minute bucket
    shot(page, "commune")


def test_docs_render_the_api_with_no_route_to_the_internet(browser: Browser, base: str) -> None:
    page = browser.new_page()
    elsewhere: list[tuple[str, str]] = []

    def only_the_collector(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            elsewhere.append((route.request.url, route.request.resource_type))
            route.abort()

    page.route("**/*", only_the_collector)
    page.goto(base + "/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator("body")).to_contain_text("/api/v1/communes")
    assert elsewhere == [], "the docs reach outside the collector"
    page.goto(base + "/redoc")
    expect(page.locator("body")).to_contain_text("/api/v1/communes")
    # ReDoc's "powered by" logo is an image from its site: nothing the page needs.
    assert [url for url, kind in elsewhere if kind != "image"] == []


def test_the_overviews_problems_are_not_clipped_at_1366_px(browser: Browser, base: str) -> None:
    page = screen(browser, base + "/")
    first = page.locator("#communes tbody tr").first
    expect(first.locator("td.reasons")).not_to_be_empty()
    scroll = page.locator("div.scroll").first
    overflow = scroll.evaluate("e => e.scrollWidth - e.clientWidth")
    assert overflow <= 0, f"the table overflows its box by {overflow} px"
    box = first.locator("td.reasons").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1366
    shot(page, "overview")


def test_an_english_screen_is_english(browser: Browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    english(page, base)
    overview = page.locator("main").inner_text()
    for page_path in ("/communes/phu-hoa?province=dong-nai", "/alerts?state=all"):
        page.goto(base + page_path)
        text = page.locator("main").inner_text()
        for raw in ("line_down_tslcd", "pc_unprotected", "hoạt động", "Xác nhận"):
            assert raw not in text, (page_path, raw)
    assert "Sẵn sàng" not in overview
    # The agent page: field names and the catalogue's states in words, either language.
    page.goto(base + "/agents/dong-nai/phu-hoa/pc-02")
    verdict = page.locator("dd[data-field=verdict]")
    expect(verdict).to_have_text("not protected")
    expect(page.locator("main dt").first).not_to_contain_text("_")
    page.goto(base + "/lang/vi?next=/agents/dong-nai/phu-hoa/pc-02")
    expect(verdict).to_have_text("không được bảo vệ")
    expect(page.locator("main")).to_contain_text("Đánh giá")
    assert "verdict" not in page.locator("main").inner_text()


def test_pending_alerts_silences_and_the_counting_rule_are_said(
    browser: Browser, base: str
) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    # Phú Hòa's unprotected PC: critical now, its alert ten minutes away: shown pending.
    page.goto(base + "/communes/phu-hoa?province=dong-nai")
    expect(page.locator("#pending")).to_contain_text("Máy không được bảo vệ")
    expect(page.locator("#pending")).to_contain_text("pc-02")
    page.goto(base + "/alerts")
    expect(page.locator("#pending")).to_contain_text("Xã Phú Hòa")
    # Silence the line's group for two hours, saying why: the group shows it, the list
    # names the commune and keeps the comment.
    group = page.locator("details.group", has_text="Mất đường truyền chuyên dùng").first
    group.locator("summary strong").click()
    silence = group.locator("form[action='/silences']")
    silence.locator("input[name=hours]").fill("2")
    silence.locator("input[name=comment]").fill("Chờ VNPT sửa cáp")
    silence.locator("button").click()
    group = page.locator("details.group", has_text="Mất đường truyền chuyên dùng").first
    expect(group.locator(".badge.silenced")).to_have_text("đã tạm ngưng")
    row = page.locator("tr[data-silence]").first
    expect(row).to_contain_text("Xã Phú Hòa")
    expect(row.locator("td.comment")).to_have_text("Chờ VNPT sửa cáp")
    expect(row).not_to_contain_text("phu-hoa")
    shot(page, "alerts")
    # The overview says how it counts PCs, below the table.
    page.goto(base + "/")
    expect(page.locator("#counting")).to_contain_text("kể cả máy đo (poller)")


@pytest.fixture(scope="module")
def rollout_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Enrollment on, its broker never reached (the page reads the store only): tokens
    made by the collector itself, PCs enrolled in three communes, some reporting."""
    from collector.app import rollout_settings
    from collector.rollout import registry
    from collector.rollout.service import Rollout
    from collector.web.factory import create_app
    from tests.scoped import _collector_config, api_tokens, profiles_text

    root = tmp_path_factory.mktemp("rollout")
    profiles = root / "dong-nai.profiles.toml"
    profiles.write_text(profiles_text("dong-nai"))
    store = StateStore(root / "state.sqlite")
    rollout = Rollout(store, rollout_settings(_collector_config(root, 1, [profiles])))
    rollout.rollouts.signed_versions = lambda: {"0.2.9", "0.3.0"}
    now = time.time()
    # La Ngà: 3 enrolled, 3 reporting; Phú Hòa: 4 enrolled, 1 reporting; Xuân Thành: 1, 0.
    for commune, enrolled, reporting in (("la-nga", 3, 3), ("phu-hoa", 4, 1), ("xuan-thanh", 1, 0)):
        rollout.create_token(province="dong-nai", commune=commune, profile="office",
                             uses=enrolled, ttl_s=86400, created_by="tech")  # fmt: skip
        for number in range(enrolled):
            agent = f"pc-{number + 1:02d}"
            with store.transaction() as db:
                registry.enrolled(db, province="dong-nai", commune=commune, agent=agent,
                                  username=f"{commune}-{agent}", profile="office",
                                  token_id="t", now=now)  # fmt: skip
            if number < reporting:
                online = status("online", now - 60, agent=agent, commune=commune)
                store.apply(statuses=[(online, now - 60)])
    # Logins that read the page without changing rollouts (the API's rule): a province's
    # admin, a technician of every province.
    tokens = api_tokens({"dong-nai": ("admin", ("dong-nai",), ()), "tech": ("technician", (), ())})
    settings = ApiSection(listen="127.0.0.1:0", open_on_loopback=True, tokens=tokens)
    app = create_app(HealthModel(store, [INVENTORY]), store, settings,
                     console=ConsoleSection(), rollout=rollout)  # fmt: skip
    served = AppServer(app).start()
    yield served.url
    served.stop()
    store.close()


def test_the_rollout_page_puts_the_furthest_behind_first_with_totals(
    browser: Browser, rollout_base: str
) -> None:
    page = screen(browser, rollout_base + "/rollout")
    expect(page.locator("h1")).to_have_text("Triển khai — Đồng Nai")
    rows = page.locator("#rollout tbody tr")
    expect(rows.first).to_have_attribute("data-commune", "phu-hoa")  # 3 PCs silent
    expect(rows.nth(1)).to_have_attribute("data-commune", "xuan-thanh")  # 1 silent
    expect(rows.last).to_have_attribute("data-commune", "la-nga")  # done: last
    expect(page.locator("#totals")).to_contain_text("8")  # enrolled, in the footer
    expect(page.locator("#rollout-totals")).to_contain_text("4 máy đang báo cáo trên 8")
    expect(page.locator("#rollout-totals")).to_contain_text("còn thiếu 4 máy")
    # The audit in words: the token's detail, not the log's "3 uses, profile office".
    expect(page.locator("#audit")).to_contain_text("3 lượt dùng, hồ sơ office")
    shot(page, "rollout")
    english(page, rollout_base)
    page.goto(rollout_base + "/rollout")
    expect(page.locator("#audit")).to_contain_text("3 uses, profile office")
    expect(page.locator("#audit")).to_contain_text("1 use, profile office")
    expect(page.locator("#audit")).to_contain_text("Xã Phú Hòa")


def test_an_admin_starts_pauses_resumes_and_halts_a_rollout_on_its_page(
    browser: Browser, rollout_base: str
) -> None:
    page = screen(browser, rollout_base + "/rollout")
    start = page.locator("#rollout-start")
    expect(start.locator("select[name=version] option").first).to_have_text("0.3.0")
    # The default rings open with the lab, and no lab PC is configured: said on the page.
    start.locator("button[type=submit]").click()
    expect(page.locator("#rollout-error")).to_contain_text("Vòng lab cần máy lab đã đăng ký")
    expect(start.locator("input[name=lab]")).to_have_attribute("aria-invalid", "true")
    expect(start.locator("input[name=rings]")).to_have_value("lab,pilot:3-communes,10%,50%,100%")
    start.locator("input[name=lab]").fill("dong-nai/la-nga/pc-01")
    start.locator("input[name=gate]").fill("soak=2h")
    start.locator("button[type=submit]").click()
    release = page.locator("#release")
    expect(release).to_have_attribute("data-state", "running")
    expect(page.locator("#rings tr[data-ring=lab]")).to_have_attribute("data-state", "open")
    expect(release).to_contain_text("theo dõi 2 giờ")
    page.locator("#rollout-pause input[name=why]").fill("Chờ kiểm tra máy lab")
    page.locator("#rollout-pause button").click()
    expect(release).to_have_attribute("data-state", "paused")
    expect(release).to_contain_text("Chờ kiểm tra máy lab")
    page.locator("#rollout-resume button").click()
    expect(release).to_have_attribute("data-state", "running")
    # A halt cannot be undone: the browser holds it until it is confirmed.
    halt = page.locator("#rollout-halt")
    halt.locator("button").click()
    expect(halt.locator("input[name=confirm]")).to_have_js_property("validity.valid", False)
    expect(release).to_have_attribute("data-state", "running")
    halt.locator("input[name=confirm]").check()
    halt.locator("button").click()
    expect(release).to_have_attribute("data-state", "halted")
    expect(release).to_contain_text("dừng hẳn bởi loopback")  # the store's why, in words
    expect(page.locator("#rollout-start")).to_be_visible()
    shot(page, "rollout-halted")
    actions = [(e["action"], e["via"]) for e in api(rollout_base, "/api/v1/audit")
               if e["action"].startswith("rollout_")]  # fmt: skip
    assert actions == [("rollout_halt", "console"), ("rollout_resume", "console"),
                       ("rollout_pause", "console"), ("rollout_start", "console")]  # fmt: skip
    english(page, rollout_base)
    page.goto(rollout_base + "/rollout")
    expect(page.locator("#rollout-start button")).to_have_text("Start a rollout")


@pytest.mark.parametrize("who", ["dong-nai", "tech"])
def test_a_province_admin_or_a_technician_reads_the_rollout_page_but_cannot_act(
    browser: Browser, rollout_base: str, who: str
) -> None:
    from tests.scoped import token

    page = screen(browser, rollout_base + "/login")
    page.fill("input[name=token]", token(who))
    page.click("button[type=submit]")
    page.goto(rollout_base + "/rollout")
    expect(page.locator("#rollout-read-only")).to_contain_text("Chỉ quản trị viên của mọi tỉnh")
    expect(page.locator("form[action^='/rollout/']")).to_have_count(0)
    # A start posted anyway, with the session's own CSRF token: the API's 403.
    page.goto(rollout_base + "/alerts")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    before = api(rollout_base, "/api/v1/rollouts")["rollouts"]
    form = {"csrf": csrf, "version": "0.3.0", "rings": "100%", "spread": "1m"}
    posted = page.request.post(rollout_base + "/rollout/start", form=form)
    assert posted.status == 403 and "forged" not in posted.text(), posted.text()
    assert api(rollout_base, "/api/v1/rollouts")["rollouts"] == before
