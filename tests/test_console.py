"""The console in a real browser (Chromium through Playwright) against a collector fed by a real
agent through Mosquitto: log in, open the overview, drill into a commune, acknowledge an alert
and see it acknowledged; English toggle; a phone's screen; a read-only account.

Screenshots are kept in test-artifacts/console/.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, AgentProcess, CollectorProcess, Mosquitto, free_port

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect

ARTIFACTS = REPO / "test-artifacts" / "console"
TECH_TOKEN = "technician-token-la-nga"
READ_TOKEN = "ioc-test-token-0123456789"  # CollectorProcess's read-only token

# The line rule without its two minutes, so the test's agent trips it at once.
RULES = """
[[rules]]
name = "line_down_tslcd"
check = "link"
tags = { network = "tslcd" }
when = [{ field = "up", op = "==", value = 0 }]
severity = "critical"
summary.vi = "Mất đường truyền số liệu chuyên dùng tại {commune} ({target})"
summary.en = "Dedicated line (TSLCD) down at {commune} ({target})"
"""


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    broker = Mosquitto(tmp_path / "broker", extra="allow_anonymous true").start()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    inventory = REPO / "deploy" / "inventory" / "dong-nai.toml"
    digest = hashlib.sha256(TECH_TOKEN.encode()).hexdigest()
    collector = CollectorProcess(
        tmp_path / "collector",
        broker.port,
        extra=f'inventory = ["{inventory}"]',
        sections=(
            f'[alerts]\nrules = ["{rules}"]\n'
            f'[[api.tokens]]\nname = "tech"\nrole = "technician"\nsha256 = "{digest}"\n'
        ),
    ).start()
    agent_config = tmp_path / "agent.toml"
    agent_config.write_text(
        f"""
[agent]
province = "dong-nai"
commune = "la-nga"
id = "ketoan-01"
interval = "1s"
state_dir = "{tmp_path / "state"}"
[mqtt]
url = "mqtt://127.0.0.1:{broker.port}"
[[checks.host]]
[[checks.antivirus]]
interval = "2s"
source = "clamav"
clamd_socket = "{tmp_path / "no-clamd.sock"}"
clamav_db_dir = "{tmp_path}"
[[checks.link]]
name = "tslcd-province"
network = "tslcd"
method = "tcp"
target = "127.0.0.1"
port = {free_port()}
count = 1
"""
    )
    agent = AgentProcess(agent_config).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, alerts = collector.get("/api/v1/alerts?state=firing&rule=line_down_tslcd")
            _, la_nga = collector.get("/api/v1/communes/la-nga")
            if alerts and la_nga["antimalware"]["reporting"]:  # type: ignore[index]
                break
            time.sleep(0.3)
        assert alerts, "the agent's line probe must raise the alert"
        yield collector
    finally:
        agent.stop()
        collector.stop()
        broker.stop()
    assert "Traceback" not in collector.log


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    expect(page).to_have_url(f"{base}/login?next=/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Tổng quan")


def test_a_technician_drills_into_a_commune_and_acknowledges_its_alert(
    browser: Browser, collector: CollectorProcess
) -> None:
    base = f"http://127.0.0.1:{collector.api_port}"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, base, TECH_TOKEN)
    # The overview: the province's figures on top, one row per commune of the register,
    # the worst first: La Ngà (critical) heads the table, the silent ones come last.
    rows = page.locator("#communes tbody tr")
    expect(rows).to_have_count(95)
    expect(rows.first).to_have_attribute("data-commune", "la-nga")
    expect(rows.first).to_have_class("critical")
    expect(rows.first.locator("td.code")).to_have_text("26227")
    expect(page.locator('tr[data-commune="xuan-thanh"]')).to_contain_text("Không có dữ liệu")
    expect(rows.last).to_have_class("no_data")
    expect(rows.first.locator("svg.strip rect")).to_have_count(7)  # its line, day by day
    shot(page, "1-overview")
    # Search by official code, then by name without tone marks; filter by status.
    page.fill("input[name=q]", "26227")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(1)
    page.fill("input[name=q]", "la nga")
    page.click("#filters button[type=submit]")
    expect(rows.first).to_have_attribute("data-commune", "la-nga")
    page.goto(base + "/?status=no_data")
    expect(page.locator("#communes tbody tr.critical")).to_have_count(0)
    expect(page.locator("#shown")).to_contain_text("94 / 95")
    page.goto(base + "/?sort=code")
    codes = page.locator("#communes td.code").all_inner_texts()
    assert codes == sorted(codes) and len(codes) == 95, "sorted by official code"
    page.goto(base + "/")
    # Into La Ngà: its line is down, its PC has no anti-malware.
    rows.first.locator("a").first.click()
    expect(page.locator("h1")).to_contain_text("Xã La Ngà")
    expect(page.locator("#code")).to_contain_text("26227")
    expect(page.locator("#line-state")).to_contain_text("mất kết nối")
    expect(page.locator("#pcs")).to_contain_text("ketoan-01")
    expect(page.locator("#pcs")).to_contain_text("chưa cài")
    expect(page.locator("svg.chart")).to_have_count(1)
    # The chart starts when monitoring did (minutes ago), not a grey week before it.
    start = float(page.locator("svg.chart").get_attribute("data-start") or 0)
    assert time.time() - start <= 3700, "the chart shows the monitored time"
    expect(page.locator("svg.chart rect.down")).not_to_have_count(0)
    shot(page, "2-commune-la-nga")
    # The agent: values with units, grouped by check, no raw floats.
    page.locator("#pcs a", has_text="ketoan-01").click()
    expect(page.locator("h3.check").first).to_be_visible()
    text = page.locator("main").inner_text()
    assert "rss_bytes=" not in text and " MB" in text and " ms" in text
    assert not any(len(word) > 12 and word.replace(".", "").isdigit() for word in text.split())
    shot(page, "5-agent")
    # The alerts, grouped by rule and commune: acknowledge the group with a comment.
    page.click("header >> text=Cảnh báo")
    group = page.locator("details.group", has_text="Mất đường truyền chuyên dùng").first
    expect(group.locator(".count")).to_have_text("1")
    group.locator("summary strong").click()  # not its centre: the commune link may be there
    shot(page, "3-alerts-grouped")
    group.locator("input[name=comment]").first.fill("Đã báo VNPT, phiếu 4411")
    group.locator("button", has_text="Xác nhận cả nhóm").click()
    group = page.locator("details.group", has_text="Mất đường truyền chuyên dùng").first
    group.locator("summary strong").click()
    expect(group).to_contain_text("Đã xác nhận bởi tech")
    expect(group).to_contain_text("Đã báo VNPT, phiếu 4411")
    expect(group).to_have_class(re.compile(r"\bhandled\b"))  # someone is on it: shown so
    expect(group.locator(".badge.handled")).to_have_text("Đã xác nhận")
    shot(page, "3-alert-acknowledged")
    status, alerts = collector.get("/api/v1/alerts?rule=line_down_tslcd")
    assert status == 200 and alerts[0]["acked_by"] == "tech"  # type: ignore[index]
    status, steps = collector.get(f"/api/v1/alerts/{alerts[0]['id']}/steps")  # type: ignore[index]
    assert status == 200 and [s["step"] for s in steps][-1] == "acked"  # type: ignore[index]
    # Plan VNPT's works on the line for tomorrow night: listed, refused when backwards.
    import datetime as dt

    night = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).replace(
        hour=22, minute=0, second=0, microsecond=0
    ) + dt.timedelta(days=1)
    plan = page.locator("#plan")
    plan.locator("input[name=commune]").fill("la-nga")
    plan.locator("input[name=device]").fill("tslcd")
    plan.locator("input[name=starts]").fill(night.strftime("%Y-%m-%dT%H:%M"))
    plan.locator("input[name=ends]").fill(
        (night + dt.timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M")
    )
    plan.locator("input[name=reason]").fill("VNPT nâng cấp đường truyền")
    plan.locator("button[type=submit]").click()
    expect(page.locator("#maintenance")).to_contain_text("VNPT nâng cấp đường truyền")
    expect(page.locator("#maintenance")).to_contain_text("Xã La Ngà")
    status, windows = collector.get("/api/v1/maintenance")
    assert status == 200 and windows[0]["device"] == "tslcd"  # type: ignore[index]
    assert windows[0]["ends"] - windows[0]["starts"] == 4 * 3600  # type: ignore[index]
    shot(page, "6-maintenance-planned")
    # English, then a phone's screen.
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Alerts")
    expect(page.locator("#groups")).to_contain_text("Acknowledged by tech")
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.context.add_cookies(page.context.cookies())
    phone.goto(base + "/")
    expect(phone.locator("#communes tbody tr")).to_have_count(95)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the overview must fit a phone's width"
    shot(phone, "4-overview-phone")


def test_the_iocs_read_only_account_sees_but_cannot_act(
    browser: Browser, collector: CollectorProcess
) -> None:
    base = f"http://127.0.0.1:{collector.api_port}"
    page = browser.new_page()
    log_in(page, base, READ_TOKEN)
    page.goto(base + "/alerts")
    expect(page.locator(".note").first).to_contain_text("chỉ xem")
    expect(page.locator("#plan")).to_have_count(0)
    expect(page.locator("#groups form")).to_have_count(0)
    _, alerts = collector.get("/api/v1/alerts?state=firing&rule=line_down_tslcd")
    alert_id = alerts[0]["id"]  # type: ignore[index]
    # A forged post (no CSRF token), and a read-only one with it: both refused.
    forged = page.request.post(f"{base}/alerts/{alert_id}/ack", form={"comment": "x"})
    assert forged.status == 403
    assert collector.get(f"/api/v1/alerts/{alert_id}")[1]["acked_by"] is None  # type: ignore[index]
    # A collector without enrollment says so on its rollout page.
    page.goto(base + "/rollout")
    expect(page.locator(".note")).to_contain_text("Chưa bật đăng ký máy bằng mã")
    page.goto(base + "/login")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("Mã truy cập không đúng")
