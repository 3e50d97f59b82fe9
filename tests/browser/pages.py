"""What the browser tests share: the system they run against, opening a browser as a party,
and the console's forms as a person fills them in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from shared.settings import CONSOLE
from tests.integration.helpers import find, obligations_when, report, subject_id
from tests.support import PATIENCE_SECONDS, WebhookSink
from tools.devrun import ServiceProcesses

try:  # without Playwright, the `chromium` fixture says why the tests do not run
    from playwright.async_api import expect
except ImportError:
    expect = None

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

PATIENCE_MS = PATIENCE_SECONDS * 1000
# Playwright's own browser download is not used: the system's Chromium is. Without the
# background-networking flags Chromium keeps calling Google's services, which a closed network
# refuses; there is no sandbox for a root user in a container, and no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESK = {"viewport": {"width": 1440, "height": 1000}}

TUKE = "150626102"  # 图克镇
GALUTU = "150626100"  # 嘎鲁图镇, another township
SFS, TCG, PPS = f"SFS:{TUKE}", f"TCG:{TUKE}", f"PPS:{TUKE}"
OTHER_SFS = f"SFS:{GALUTU}"
INCIDENT_PAGE = re.compile(r"/incidents/([0-9a-f-]{36})(?:\?|$)")
MARKER = "stillTheSamePage"


async def report_on_the_form(page: Page, subject: str) -> str:
    """A 首报 of violence under way in 图克镇, filed on the console's form; the new incident's
    id, from the incident page the form leads to."""
    await page.goto("/incidents/new")
    form = page.locator("form[action='/incidents']")
    await form.locator("select[name=category]").select_option("VIOLENCE")
    await form.locator("select[name=phase]").select_option("IN_PROGRESS")
    await form.locator("select[name=township]").select_option(TUKE)
    await form.locator("input[name=subject_id]").fill(subject)
    await form.locator("input[name=subject_name]").fill("王某某")
    await form.locator("input[name=location]").fill("图克镇中心街农贸市场东门")
    summary = "社区矫正对象王某某持刀与摊贩发生冲突，扬言伤人。"
    await form.locator("textarea[name=summary]").fill(summary)
    await form.locator("textarea[name=measures_taken]").fill("司法所工作人员已赶赴现场劝阻。")
    await form.locator("textarea[name=persons_involved]").fill("社区矫正对象1人，摊贩1人。")
    await form.locator("input[name=reporter_phone]").fill("13900000000")
    async with page.expect_navigation(url=INCIDENT_PAGE):
        await form.locator("button[type=submit]").click()
    found = INCIDENT_PAGE.search(page.url)
    assert found is not None, page.url
    return found.group(1)


async def record_on_the_form(page: Page, incident_id: str, action: str, note: str) -> None:
    """Record an action on the incident page's form, as its user."""
    await page.goto(f"/incidents/{incident_id}")
    form = page.locator("#action-form")
    await form.locator("select[name=action]").select_option(action)
    await form.locator("textarea[name=note]").fill(note)
    async with page.expect_navigation(url=INCIDENT_PAGE):
        await form.locator("button[type=submit]").click()
    await expect(page.locator("p.said")).to_have_text("处置情况已记录")


async def live_and_marked(page: Page) -> None:
    """Once the page hears the live stream, mark its window: a reload would lose the mark."""
    await expect(page.locator("body")).to_have_attribute("data-live-ready", "true")
    await page.evaluate(f"window.{MARKER} = true")


async def still_unreloaded(page: Page) -> None:
    assert await page.evaluate(f"window.{MARKER} === true"), "the page was reloaded"


async def hearing(page: Page) -> None:
    """A second listener on the page's live stream that keeps every change it is told of, in
    `window.heard` (what the console lets this user's pages hear)."""
    await page.evaluate(
        """() => new Promise((opened) => {
            window.heard = [];
            const stream = new EventSource("/live");
            stream.addEventListener("change", (m) => window.heard.push(JSON.parse(m.data)));
            stream.addEventListener("ready", () => opened(true));
        })"""
    )


async def heard(page: Page) -> list[dict[str, Any]]:
    return await page.evaluate("window.heard")


@dataclass
class ConsoleSystem:
    processes: ServiceProcesses
    sink: WebhookSink
    clients: dict[str, httpx.AsyncClient]

    @property
    def console_url(self) -> str:
        return self.processes.url(CONSOLE)


@dataclass
class Browsing:
    """Browsers of one test, each a context of its own (cookies, session), all closed after
    the test whatever its end."""

    browser: Browser
    system: ConsoleSystem
    contexts: list[BrowserContext] = field(default_factory=list)

    async def page(self, **device: Any) -> Page:
        """A fresh browser's page (a desk screen unless `device` says otherwise), not logged in."""
        context = await self.browser.new_context(
            base_url=self.system.console_url,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            **(device or DESK),
        )
        context.set_default_timeout(PATIENCE_MS)
        self.contexts.append(context)
        return await context.new_page()

    async def as_party(self, party: str, name: str) -> Page:
        """A fresh browser's page, logged in on the console's local login as `party`."""
        page = await self.page()
        await log_in(page, party, name)
        return page

    async def report_as_the_sfs(self) -> tuple[Page, str]:
        """图克镇's 司法所, logged in, files a 首报 on the form: its page (on the new incident)
        and the incident's id."""
        sfs = await self.as_party(SFS, "李明")
        return sfs, await report_on_the_form(sfs, subject_id())

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


async def police_alert(system: ConsoleSystem, incident_id: str) -> dict[str, Any]:
    """The alert of 图克镇's police about the incident, with its acknowledgement link, as the
    police's contact received it."""
    sink = system.sink
    await sink.wait_for(incident_id, {PPS}, lambda alert: bool(alert.get("ack_url")))
    [alert] = [a for a in sink.for_incident(incident_id) if a["party"] == PPS and a["ack_url"]]
    return alert


async def log_in(page: Page, party: str, name: str) -> None:
    """On the local login page (where the console sent the browser, or opened here)."""
    if "/login" not in page.url:
        await page.goto("/login")
    await page.select_option("select#party", party)
    await page.fill("input#name", name)
    async with page.expect_navigation():
        await page.click("form[action='/login/local'] button[type=submit]")


async def sfs_duty_met_by_first_response(console_system: ConsoleSystem, incident_id: str) -> str:
    """The 司法所's R1 duty of the incident (先期处置), which its FIRST_RESPONSE_STARTED meets
    (services/escalation/policy.yaml); its id once escalation has created it."""
    wanted = {"party": SFS, "rule_id": "R1", "action": "START_FIRST_RESPONSE"}
    body = await obligations_when(
        console_system.clients, incident_id, lambda body: find(body, **wanted)
    )
    [duty] = find(body, **wanted)
    assert duty["status"] == "PENDING"
    return duty["id"]


async def report_in_galutu(system: ConsoleSystem) -> str:
    """An incident of 嘎鲁图镇 its 司法所 reports (over REST): another township's."""
    return await report(
        system.clients,
        township="嘎鲁图镇",
        location="嘎鲁图镇",
        reporter={"party": OTHER_SFS, "name": "王芳", "phone": "13900000001"},
    )
