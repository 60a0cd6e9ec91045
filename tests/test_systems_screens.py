"""The shared systems' screens as a technician meets them, in Chromium: the systems page,
a system commune by commune, a commune's systems, a commune's technician's narrower
view, and the same in English.

The five communes of tests/test_systems_web.py (a real store fed as the ingest does):
Phú Lý's line is down (its systems out of reach are the line's problem), Tân Phú's line
is up and the one-stop shop does not answer it, Xuân Bắc gets a login page. The
collector runs in this process on a free port. Screenshots go to
test-artifacts/console/ and, when the folder exists, to /work/artifacts/issue25/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, AppServer
from tests.test_systems_web import build, token

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect

ARTIFACTS = [REPO / "test-artifacts" / "console", Path("/work/artifacts/issue25")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store, app = build(tmp_path_factory.mktemp("systems-screens"))
    served = AppServer(app).start()
    yield served.url
    served.stop()
    store.close()


def shot(page: Page, name: str) -> None:
    for folder in ARTIFACTS:
        if folder == ARTIFACTS[0] or folder.parent.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_the_systems_page_names_who_cannot_reach_each_system_and_why(
    browser: Browser, base: str
) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page.goto(base + "/")
    page.locator("#nav-systems").click()
    expect(page.locator("h1")).to_have_text("Hệ thống dùng chung — Đồng Nai")
    rows = page.locator("#systems tbody tr")
    expect(rows).to_have_count(3)
    mot_cua = page.locator("tr[data-system=mot-cua]")
    expect(mot_cua.locator(".badge")).to_have_text("Lỗi tại một số xã")
    expect(mot_cua.locator(".badge")).to_have_class("badge warning")
    expect(mot_cua.locator("td.reaching")).to_have_text("2/5")
    # Each commune that cannot use it, and why, in words that say where to act.
    cannot = mot_cua.locator("td.cannot")
    expect(cannot.locator("[data-commune=phu-ly]")).to_have_text(
        "Xã Phú Lý: mất đường truyền của xã"
    )
    expect(cannot.locator("[data-commune=tan-phu]")).to_have_text(
        "Xã Tân Phú: hệ thống không phản hồi"
    )
    expect(cannot.locator("[data-commune=xuan-bac]")).to_have_text("Xã Xuân Bắc: trả về sai trang")
    expect(cannot.locator(".slow")).to_have_text("chậm ở 1 xã")
    expect(mot_cua.locator("td.cert")).to_have_text("9 ngày")
    expect(mot_cua.locator("td.cert span")).to_have_class("down")  # under 14 days
    lis = page.locator("tr[data-system=lis]")
    expect(lis.locator(".badge")).to_have_text("Lỗi tại một số xã")
    expect(lis.locator(".badge")).to_have_class("badge warning")
    expect(lis).to_contain_text("94,74 %")  # 18 h of 19 watched
    expect(page.locator("tr[data-system=website] .badge")).to_have_class("badge ok")
    # Every column fits a 1366 px screen: nothing to scroll for.
    overflow = page.locator("div.scroll").first.evaluate("e => e.scrollWidth - e.clientWidth")
    assert overflow <= 0, f"the table overflows its box by {overflow} px"
    shot(page, "systems")


def test_a_system_page_shows_every_communes_reach_sortable(browser: Browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page.goto(base + "/systems")
    page.locator("tr[data-system=mot-cua] a").first.click()
    expect(page.locator("h1")).to_contain_text("Hệ thống một cửa điện tử")
    expect(page.locator("#verdict")).to_have_text("Lỗi tại một số xã")
    rows = page.locator("#reach tbody tr")
    expect(rows).to_have_count(5)
    # Worst first: those the system fails, then the line's, the slow, the fine.
    assert [rows.nth(i).get_attribute("data-commune") for i in range(5)] == [
        "tan-phu", "xuan-bac", "phu-ly", "dinh-quan", "la-nga",
    ]  # fmt: skip
    expect(page.locator("tr[data-commune=phu-ly] .badge")).to_have_text("mất đường truyền của xã")
    expect(page.locator("tr[data-commune=tan-phu] .badge")).to_have_text("hệ thống không phản hồi")
    expect(page.locator("tr[data-commune=tan-phu] td.reasons")).to_contain_text(
        "motcua.dongnai.gov.vn refused"
    )
    expect(page.locator("tr[data-commune=xuan-bac]")).to_contain_text("not in the page")
    shot(page, "system")
    # By response time: the slowest first.
    page.locator("#reach th a", has_text="Thời gian phản hồi").click()
    expect(rows.first).to_have_attribute("data-commune", "dinh-quan")
    expect(rows.first).to_contain_text("4500 ms")
    expect(page.locator("#reach th a[aria-sort]")).to_contain_text("Thời gian phản hồi")
    # lis: its own alert in the incidents, the line's outage left out of its figures.
    page.goto(base + "/systems/dong-nai/lis")
    expect(page.locator("#verdict")).to_have_text("Lỗi tại một số xã")
    expect(page.locator("#incidents")).to_contain_text("Xã không truy cập được hệ thống dùng chung")
    expect(page.locator("#incidents")).to_contain_text("đang diễn ra")
    expect(page.locator("main")).to_contain_text(
        "không tính lúc xã mất đường truyền (cộng dồn các xã): 1 h 00 min"
    )
    assert page.goto(base + "/systems/dong-nai/nowhere").status == 404  # type: ignore[union-attr]


def test_a_communes_section_tells_its_line_from_the_system(browser: Browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    # Phú Lý: its line is down; the systems it cannot reach are the line's problem.
    page.goto(base + "/communes/phu-ly?province=dong-nai")
    section = page.locator("#commune-systems")
    expect(page.locator("#systems")).to_have_text("Hệ thống thông tin dùng chung")
    expect(page.locator("#systems-summary")).to_have_text(
        "Truy cập được 1/3 hệ thống · không truy cập được 2"
    )
    expect(page.locator("#systems-line")).to_contain_text("do đường truyền của xã")
    for system in ("mot-cua", "lis"):
        expect(section.locator(f"tr[data-system={system}]")).to_have_attribute(
            "data-state", "line_down"
        )
        expect(section.locator(f"tr[data-system={system}] td").nth(1)).to_have_text(
            "mất đường truyền của xã"
        )
    expect(section.locator("tr[data-system=website]")).to_contain_text(
        "Trang thông tin điện tử Xã Phú Lý"
    )
    page.locator("#systems").scroll_into_view_if_needed()
    shot(page, "commune-systems-line-down")
    # Tân Phú: its line is up; the one-stop shop does not answer it: the system's.
    page.goto(base + "/communes/tan-phu?province=dong-nai")
    expect(page.locator("#systems-line")).to_have_count(0)
    row = page.locator("#commune-systems tr[data-system=mot-cua]")
    expect(row.locator("td").nth(1)).to_have_text("hệ thống không phản hồi")
    expect(row).to_contain_text("Lỗi tại một số xã 2/5")  # the others' view beside it
    shot(page, "commune-systems-unreachable")


def test_a_communes_technician_sees_its_commune_alone(browser: Browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page.goto(base + "/login")
    page.locator("input[name=token]").fill(token("tan-phu"))
    page.locator("button[type=submit]").click()
    page.goto(base + "/systems")
    rows = page.locator("#systems tbody tr")
    expect(rows).to_have_count(1)  # neither lis nor a website of its own
    expect(rows.first.locator("td.reaching")).to_have_text("0/1")
    expect(rows.first.locator("td.cannot")).to_have_text("Xã Tân Phú: hệ thống không phản hồi")
    assert "Phú Lý" not in page.locator("main").inner_text()
    assert page.goto(base + "/systems/dong-nai/lis").status == 404  # type: ignore[union-attr]


def test_the_systems_screens_in_english(browser: Browser, base: str) -> None:
    page = browser.new_page(viewport={"width": 1366, "height": 900}, locale="vi-VN")
    page.goto(base + "/lang/en?next=/systems")
    expect(page.locator("h1")).to_have_text("Shared systems — Đồng Nai")
    cannot = page.locator("tr[data-system=mot-cua] td.cannot")
    expect(cannot.locator("[data-commune=phu-ly]")).to_have_text(
        "Xã Phú Lý: the commune's line is down"
    )
    expect(cannot.locator("[data-commune=xuan-bac]")).to_have_text(
        "Xã Xuân Bắc: answers the wrong page"
    )
    page.goto(base + "/communes/tan-phu?province=dong-nai")
    expect(page.locator("#systems")).to_have_text("Shared information systems")
    text = page.locator("#commune-systems").inner_text()
    assert "the system does not answer" in text and "hệ thống" not in text
