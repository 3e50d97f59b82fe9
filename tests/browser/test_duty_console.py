"""The duty console as people use it, in Chromium: a 司法所 reports on the form; its township's
command group sees the incident and its duties change on the open board without a reload; the
police acknowledge their alert on a phone from the link it carried and then reach the full
record through the login; a 司法所 of another township sees none of it.

"Without a reload" is checked by a marker set in the page's window before the change: a
navigation would clear it. Every wait is for what the page should show, never for time.
"""

from __future__ import annotations

import re

from shared.domain.vocabulary import CATEGORY_NAMES_ZH, Category
from tests.browser.pages import (
    INCIDENT_PAGE,
    OTHER_SFS,
    PHONE,
    PPS,
    SFS,
    TCG,
    TUKE,
    Browsing,
    expect,
    heard,
    hearing,
    live_and_marked,
    log_in,
    police_alert,
    record_on_the_form,
    report_in_galutu,
    report_on_the_form,
    sfs_duty_met_by_first_response,
    still_unreloaded,
)
from tests.integration.helpers import eventually, subject_id


async def test_a_sfs_logs_in_and_reports_on_the_form(browsing: Browsing) -> None:
    sfs = await browsing.as_party(SFS, "李明")
    await expect(sfs.locator("header .party")).to_have_attribute("data-party", SFS)
    await expect(sfs.locator("header .name")).to_have_text("李明")

    incident_id = await report_on_the_form(sfs, subject_id())

    await expect(sfs.locator("p.said")).to_have_text("首报已提交")
    await expect(sfs.locator("h1")).to_contain_text(CATEGORY_NAMES_ZH[Category.VIOLENCE])
    await expect(sfs.locator("h1")).to_contain_text("正在实施")
    facts = sfs.locator("section.facts")
    await expect(facts).to_contain_text("图克镇中心街农贸市场东门")
    await expect(facts).to_contain_text("李明")
    # What the form sent is what intake keeps.
    stored = await browsing.system.clients["intake"].get(f"/v1/incidents/{incident_id}")
    assert stored.status_code == 200, stored.text
    assert stored.json()["reporter"]["party"] == SFS
    assert stored.json()["facts"]["township_code"] == TUKE


async def test_the_command_groups_open_board_shows_the_report_without_reload(
    browsing: Browsing,
) -> None:
    tcg = await browsing.as_party(TCG, "赵刚")
    await expect(tcg.locator("h1")).to_have_text("值班看板")
    await live_and_marked(tcg)
    sfs = await browsing.as_party(SFS, "李明")

    incident_id = await report_on_the_form(sfs, subject_id())

    shown = tcg.locator(f'[data-live-region="board"] li.incident[data-incident="{incident_id}"]')
    await expect(shown).to_be_visible()
    await expect(shown).to_contain_text(CATEGORY_NAMES_ZH[Category.VIOLENCE])
    await expect(tcg.locator(f'[data-township="{TUKE}"]')).to_contain_text("图克镇")
    await still_unreloaded(tcg)


async def test_the_police_acknowledge_on_a_phone_and_then_reach_the_record_through_login(
    browsing: Browsing,
) -> None:
    _, incident_id = await browsing.report_as_the_sfs()
    alert = await police_alert(browsing.system, incident_id)

    phone = await browsing.page(**PHONE)
    await phone.goto(alert["ack_url"])  # the link as the police's phone received it

    await expect(phone.locator("#alert-title")).to_have_text(alert["title"])
    await expect(phone.locator("#alert-text")).to_contain_text("请立即出警")
    await expect(phone.locator("#ack-state")).to_have_attribute("data-acknowledged", "false")
    button = phone.get_by_role("button", name="确认收悉")
    await expect(button).to_be_visible()
    # Sized for the phone: nothing wider than its screen, the button wide enough for a thumb.
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    box = await button.bounding_box()
    assert box is not None and box["width"] >= 300 and box["height"] >= 44

    await button.click()
    await expect(phone.locator("#ack-state")).to_have_attribute("data-acknowledged", "true")
    await expect(phone.locator("body")).to_contain_text("确认已记录")
    record = phone.get_by_role("link", name="查看完整记录（须登录）")
    await expect(record).to_have_attribute(
        "href", f"{browsing.system.console_url}/incidents/{incident_id}"
    )
    notification = await browsing.system.clients["notification"].get(
        f"/v1/notifications/{alert['notification_id']}"
    )
    assert notification.json()["status"] == "ACKNOWLEDGED", notification.text

    await record.click()  # no session on this phone: the console asks for a login first
    await phone.wait_for_url(re.compile(r"/login\?next="))
    await log_in(phone, PPS, "张警官")
    await phone.wait_for_url(INCIDENT_PAGE)
    assert incident_id in phone.url
    await expect(phone.locator("h1")).to_contain_text(CATEGORY_NAMES_ZH[Category.VIOLENCE])
    acknowledged = phone.locator(f'li.alert[data-notification="{alert["notification_id"]}"]')
    await expect(acknowledged).to_have_attribute("data-status", "ACKNOWLEDGED")


async def test_an_action_of_the_sfs_turns_its_duty_met_on_the_open_incident_page(
    browsing: Browsing,
) -> None:
    sfs, incident_id = await browsing.report_as_the_sfs()
    duty = await sfs_duty_met_by_first_response(browsing.system, incident_id)
    tcg = await browsing.as_party(TCG, "赵刚")
    await tcg.goto(f"/incidents/{incident_id}")
    row = tcg.locator(f'[data-live-region="incident"] [data-obligation="{duty}"]')
    await expect(row).to_have_attribute("data-status", "PENDING")
    await live_and_marked(tcg)

    await record_on_the_form(sfs, incident_id, "FIRST_RESPONSE_STARTED", "已到场劝阻")

    await expect(row).to_have_attribute("data-status", "MET")
    await expect(row).to_contain_text("已履行")
    await expect(tcg.locator("ul.actions")).to_contain_text("已到场劝阻")
    await still_unreloaded(tcg)


async def test_an_action_of_the_sfs_turns_its_duty_met_on_the_command_groups_open_board(
    browsing: Browsing,
) -> None:
    sfs, incident_id = await browsing.report_as_the_sfs()
    duty = await sfs_duty_met_by_first_response(browsing.system, incident_id)
    tcg = await browsing.as_party(TCG, "赵刚")
    on_board = tcg.locator(f'[data-live-region="board"] [data-obligation="{duty}"]')
    await expect(on_board).to_have_attribute("data-status", "PENDING")
    await live_and_marked(tcg)

    await record_on_the_form(sfs, incident_id, "FIRST_RESPONSE_STARTED", "已到场劝阻")

    await expect(on_board).to_have_attribute("data-status", "MET")
    await still_unreloaded(tcg)


async def test_a_sfs_of_another_township_hears_nothing_of_it_and_may_not_open_it(
    browsing: Browsing,
) -> None:
    other = await browsing.as_party(OTHER_SFS, "王芳")
    await live_and_marked(other)
    await hearing(other)
    tcg = await browsing.as_party(TCG, "赵刚")
    await hearing(tcg)
    sfs = await browsing.as_party(SFS, "李明")

    incident_id = await report_on_the_form(sfs, subject_id())
    await record_on_the_form(sfs, incident_id, "FIRST_RESPONSE_STARTED", "已到场劝阻")
    # Once 图克镇's command group has heard of the action, the console has told every page
    # whatever it would tell it; a report of 嘎鲁图镇 after that reaches the other 司法所's
    # page after anything of 图克镇 would have.
    await eventually(
        lambda: heard(tcg),
        lambda changes: any(
            c["incident_id"] == incident_id and c["type"] == "incident.action_recorded"
            for c in changes
        ),
    )
    own = await report_in_galutu(browsing.system)
    changes = await eventually(
        lambda: heard(other), lambda changes: any(c["incident_id"] == own for c in changes)
    )

    assert {c["incident_id"] for c in changes} == {own}
    await expect(other.locator(f'[data-incident="{incident_id}"]')).to_have_count(0)
    await expect(other.locator(f'[data-township="{TUKE}"]')).to_have_count(0)
    await still_unreloaded(other)

    refused = await other.goto(f"/incidents/{incident_id}")
    assert refused is not None and refused.status == 403
    await expect(other.locator("h1")).to_have_text("无法查看此事件")
    await expect(other.locator("body")).not_to_contain_text("王某某")


async def test_a_sfs_of_another_township_sees_its_own_incident_on_its_board_and_none_of_tuke(
    browsing: Browsing,
) -> None:
    _, tuke_incident = await browsing.report_as_the_sfs()
    other = await browsing.as_party(OTHER_SFS, "王芳")
    await live_and_marked(other)

    own = await report_in_galutu(browsing.system)

    board = other.locator('[data-live-region="board"]')
    await expect(board.locator(f'li.incident[data-incident="{own}"]')).to_be_visible()
    await expect(board.locator(f'[data-incident="{tuke_incident}"]')).to_have_count(0)
    await expect(board.locator(f'[data-township="{TUKE}"]')).to_have_count(0)
    await expect(board.locator("[data-township]")).to_have_count(1)
    await still_unreloaded(other)
