"""Screenshots of the console with real data, for the README: `make screenshots` writes them to
docs/screenshots/ (SCREENSHOTS_DIR); the suite takes them too, into its temporary folder, so a
screen that stops showing its data fails here first."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tests.browser.pages import (
    PHONE,
    SFS,
    TCG,
    Browsing,
    ConsoleSystem,
    expect,
    police_alert,
    record_on_the_form,
)
from tests.integration.helpers import act, obligations_when, report, subject_id, violence_report

if TYPE_CHECKING:
    from playwright.async_api import Page

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def shot(page: Page, folder: Path, name: str) -> Path:
    """What the screen shows (its first screenful: a README shows no more)."""
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    published = os.environ.get("SCREENSHOTS_DIR")
    if published:
        Path(published).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(published) / path.name)
    return path


# Elsewhere in the banner: an absconded subject, and signs of disruption already counselled.
OTHER_TOWNSHIPS = (
    {
        "category": "ABSCONDED",
        "phase": "OCCURRED",
        "township": "乌审召镇",
        "summary": "社区矫正对象未按时报到，电话无法接通，手机定位信号消失。",
        "reporter": {"party": "SFS:150626101", "name": "高娜", "phone": "13900000002"},
    },
    {
        "category": "DISRUPTION",
        "phase": "SIGNS",
        "township": "嘎鲁图镇",
        "summary": "集中教育时社区矫正对象情绪激动，出现滋扰苗头。",
        "reporter": {"party": "SFS:150626100", "name": "王芳", "phone": "13900000001"},
    },
)


async def some_incidents(system: ConsoleSystem) -> str:
    """A few incidents of several townships in several states; the id of 图克镇's violence."""
    for facts in OTHER_TOWNSHIPS:
        incident_id = await report(system.clients, location=facts["township"], **facts)
        await act(system.clients, incident_id, "COUNSELLING_DONE", party=facts["reporter"]["party"])
    response = await system.clients["intake"].post(
        "/v1/incidents", json=violence_report(subjects=[{"id": subject_id(), "name": "王某某"}])
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_screenshots_of_the_board_the_incident_and_the_phone_page(
    browsing: Browsing, tmp_path: Path
) -> None:
    violence = await some_incidents(browsing.system)
    await obligations_when(browsing.system.clients, violence, lambda body: body["obligations"])
    alert = await police_alert(browsing.system, violence)
    sfs = await browsing.as_party(SFS, "李明")
    await record_on_the_form(sfs, violence, "ON_SCENE", "司法所两名工作人员已到现场劝阻。")

    tcg = await browsing.as_party(TCG, "赵刚")
    await tcg.goto(f"/incidents/{violence}")
    await expect(tcg.locator('[data-obligation][data-status="MET"]').first).to_be_visible()
    await expect(tcg.locator("li.alert").first).to_be_visible()
    await expect(tcg.locator("tr.entry").first).to_be_visible()
    await shot(tcg, tmp_path, "incident")

    phone = await browsing.page(**PHONE)
    await phone.goto(alert["ack_url"])
    await expect(phone.locator("#alert-title")).to_have_text(alert["title"])
    await shot(phone, tmp_path, "acknowledgement")

    blo = await browsing.as_party("BLO", "刘主任")
    board = blo.locator('[data-live-region="board"]')
    await expect(board.locator(f'li.incident[data-incident="{violence}"]')).to_be_visible()
    await expect(board.locator("[data-township]")).to_have_count(3)
    await shot(blo, tmp_path, "board")
