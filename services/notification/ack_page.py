"""The page an acknowledgement link opens on the phone that received the alert; rendering is pure.

It shows what that contact was sent (the same text, so it reveals nothing the link's holder does
not already have), a button that acknowledges, and the link to the full record, which needs a
login. Everything the page needs is inline: a phone on a poor connection loads one response.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

# What a phone may do with the page: its own inline style, posting its own form; nothing is
# loaded from elsewhere, and the token in the address is never sent on as a Referer.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}

RECORD_LINK_TEXT = "查看完整记录（须登录）"

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:17px/1.55 system-ui,-apple-system,"PingFang SC","Noto Sans CJK SC",
"Microsoft YaHei",sans-serif;color:#1b1f24;background:#f3f4f6}
main{max-width:34rem;margin:0 auto;padding:1rem}
header{background:#9b1c1c;color:#fff;padding:.8rem 1rem;font-weight:600}
header.drill{background:#8a5a00}
h1{font-size:1.2rem;margin:.2rem 0 .8rem}
.card{background:#fff;border-radius:.6rem;padding:1rem;margin-bottom:1rem;
box-shadow:0 1px 2px rgba(0,0,0,.08)}
.text{white-space:pre-wrap;word-break:break-word;margin:0}
.state{font-weight:600}
.state.done{color:#116329}
.state.waiting{color:#9b1c1c}
.muted{color:#57606a;font-size:.9rem}
button{display:block;width:100%;min-height:3.2rem;font-size:1.2rem;font-weight:600;border:0;
border-radius:.6rem;background:#1f6feb;color:#fff}
a.record{display:block;text-align:center;padding:.9rem;border:1px solid #1f6feb;
border-radius:.6rem;color:#1f6feb;text-decoration:none;font-weight:600}
"""


@dataclass(frozen=True)
class AlertShown:
    """One alert as the contact holding its link may see it."""

    title: str
    # The text that contact was sent, without the links the page offers itself; None once the
    # message is past its retention (the title is kept with the alert).
    text: str | None
    drill: bool
    record_url: str
    acknowledged_at: str | None  # in the county's time
    ack_due_at: str | None  # in the county's time
    withdrawn_reason: str | None


def sent_text(message: dict[str, Any] | None) -> str | None:
    """The text of a sent message, without what the page shows otherwise: the title (its
    heading) and the lines of the acknowledgement and record links (its button and link)."""
    if not message or not message.get("text"):
        return None
    links = [message[key] for key in ("ack_url", "record_url") if message.get(key)]
    kept = [
        line
        for line in message["text"].splitlines()
        if line.strip() != message.get("title") and not any(url in line for url in links)
    ]
    return "\n".join(kept).strip() or None


def _document(alert: AlertShown, content: str) -> str:
    banner = "应急演练通知" if alert.drill else "社区矫正突发事件通知"
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(alert.title)}</title><style>{STYLE}</style></head><body>"
        f'<header class="{"drill" if alert.drill else ""}">{banner}</header>'
        f"<main>{content}</main></body></html>"
    )


def _alert_card(alert: AlertShown) -> str:
    text = (
        f'<p class="text" id="alert-text">{html.escape(alert.text)}</p>'
        if alert.text
        else '<p class="muted">通知正文已超过保存期限，请查看完整记录。</p>'
    )
    title = f'<h1 id="alert-title">{html.escape(alert.title)}</h1>'
    return f'<section class="card">{title}{text}</section>'


def _record_link(alert: AlertShown) -> str:
    return (
        f'<a class="record" id="record-link" href="{html.escape(alert.record_url, quote=True)}">'
        f"{RECORD_LINK_TEXT}</a>"
    )


def _state(alert: AlertShown) -> str:
    if alert.acknowledged_at:
        return (
            f'<p class="state done" id="ack-state" data-acknowledged="true">'
            f"已确认收悉（{html.escape(alert.acknowledged_at)}）</p>"
        )
    due = f"请于 {html.escape(alert.ack_due_at)} 前确认。" if alert.ack_due_at else ""
    withdrawn = (
        f'<p class="muted">此通知已无需处理：{html.escape(alert.withdrawn_reason)}</p>'
        if alert.withdrawn_reason
        else ""
    )
    return (
        f'<p class="state waiting" id="ack-state" data-acknowledged="false">尚未确认收悉。{due}</p>'
        f"{withdrawn}"
    )


def confirm_page(alert: AlertShown, action: str) -> str:
    """What the link opens: the alert and a button. Opening it acknowledges nothing (link
    previews and mail scanners fetch links); only the button's POST to `action` does."""
    ask = (
        ""
        if alert.acknowledged_at
        else f'<form method="post" action="{html.escape(action, quote=True)}" id="ack-form">'
        '<button type="submit">确认收悉</button></form>'
    )
    return _document(
        alert,
        f'{_alert_card(alert)}<section class="card">{_state(alert)}{ask}</section>'
        f'<section class="card">{_record_link(alert)}</section>',
    )


def acknowledged_page(alert: AlertShown) -> str:
    """After the button: that the acknowledgement is recorded, and the way to the full record."""
    return _document(
        alert,
        f'<section class="card">{_state(alert)}<p>谢谢，确认已记录。</p>'
        f"{_record_link(alert)}</section>{_alert_card(alert)}",
    )
