"""The phone page of an acknowledgement link (services/notification/ack_page.py): the alert as
that contact was sent it, a button, and the way to the full record; nothing loaded from
elsewhere."""

from __future__ import annotations

import re

from services.notification.ack_page import (
    HEADERS,
    RECORD_LINK_TEXT,
    AlertShown,
    acknowledged_page,
    confirm_page,
    sent_text,
)

ACK = "https://sqjz.example/v1/notifications/n-1/ack?token=1.0.9.sig"
RECORD = "https://console.example/incidents/i-1"
MESSAGE = {
    "title": "【社区矫正突发事件】图克镇 暴力或自伤自残（正在发生）",
    "text": "【社区矫正突发事件】图克镇 暴力或自伤自残（正在发生）\n"
    "涉及对象：王**\n"
    "对象正在实施，请立即出警制止。\n"
    f"完整记录（须登录）：{RECORD}\n"
    f"收悉请确认：{ACK}",
    "ack_url": ACK,
    "record_url": RECORD,
}


def shown(**changes: object) -> AlertShown:
    alert = {
        "title": MESSAGE["title"],
        "text": sent_text(MESSAGE),
        "drill": False,
        "record_url": RECORD,
        "acknowledged_at": None,
        "ack_due_at": "2026-11-30 12:25",
        "withdrawn_reason": None,
    }
    return AlertShown(**{**alert, **changes})


def test_the_text_shown_is_the_text_sent_without_what_the_page_shows_otherwise() -> None:
    text = sent_text(MESSAGE)
    assert text is not None
    assert text.splitlines() == [  # the title is the page's heading
        "涉及对象：王**",
        "对象正在实施，请立即出警制止。",
    ]
    assert sent_text(None) is None  # past its retention
    assert sent_text({**MESSAGE, "text": f"收悉请确认：{ACK}"}) is None


def test_the_page_opened_shows_the_alert_and_a_button_that_posts_to_the_link() -> None:
    page = confirm_page(shown(), "?token=1.0.9.sig")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "涉及对象：王**" in page and MESSAGE["title"] in page
    assert '<form method="post" action="?token=1.0.9.sig" id="ack-form">' in page
    assert "确认收悉</button>" in page
    assert 'data-acknowledged="false"' in page and "2026-11-30 12:25" in page
    assert f'href="{RECORD}"' in page and RECORD_LINK_TEXT in page
    assert ACK not in page  # the button is the way to acknowledge, not a link to follow


def test_nothing_is_loaded_from_elsewhere_and_the_token_is_never_sent_on() -> None:
    page = confirm_page(shown(), "?token=1.0.9.sig")
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "src=" not in page
    assert HEADERS["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in HEADERS["Content-Security-Policy"]


def test_what_the_page_shows_is_escaped() -> None:
    page = confirm_page(
        shown(title="<b>标题</b>", text='<script>alert("x")</script>'), '?token="><x'
    )
    assert "<script>" not in page and "<b>标题</b>" not in page
    assert "&lt;script&gt;" in page
    assert 'action="?token=&quot;&gt;&lt;x"' in page


def test_an_acknowledged_alert_offers_no_button_and_says_when() -> None:
    again = confirm_page(shown(acknowledged_at="2026-11-30 12:16"), "?token=t")
    assert "<form" not in again and "已确认收悉（2026-11-30 12:16）" in again
    done = acknowledged_page(shown(acknowledged_at="2026-11-30 12:16"))
    assert 'data-acknowledged="true"' in done and "确认已记录" in done
    assert f'<a class="record" id="record-link" href="{RECORD}">{RECORD_LINK_TEXT}</a>' in done


def test_a_message_past_its_retention_still_shows_the_title_and_the_record() -> None:
    page = confirm_page(shown(text=None), "?token=t")
    assert MESSAGE["title"] in page and "已超过保存期限" in page and RECORD in page


def test_a_drill_says_so_at_the_top() -> None:
    assert "应急演练通知" in confirm_page(shown(drill=True), "?token=t")
    assert "应急演练通知" not in confirm_page(shown(), "?token=t")
