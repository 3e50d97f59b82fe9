"""A notice tells the party that recorded an action that it was refused (issue: a refusal that
can only happen later, in a race, must not pass out of sight). Rendering is pure."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from services.notification.templates import (
    Form,
    default_texts,
    notice_facts,
    render_message,
    render_notice,
    stored_notice,
)
from shared.domain.vocabulary import COUNTY_TIME
from shared.events.models import ActionRejected


def refused(*, drill: bool = False) -> ActionRejected:
    return ActionRejected(
        incident_id=uuid4(),
        action_id=uuid4(),
        action="ON_SCENE",
        status="CLOSED",
        reason="「处置结束」的事件不再接受「已到现场」",
        drill=drill,
        party="SFS:150626102",
        recorded_at=datetime(2026, 11, 30, 6, 5, tzinfo=UTC),
    )


def test_the_full_notice_names_the_action_the_status_and_the_time_in_county_time() -> None:
    rejected = refused()
    text = render_notice(
        notice_facts(rejected, "图克镇司法所", COUNTY_TIME),
        Form.FULL,
        default_texts(),
        record_url="https://example.test/incidents/1",
    )
    assert "致：图克镇司法所" in text
    assert "您于2026-11-30 14:05记录的「已到现场」未被采纳：事件当前状态「处置结束」。" in text
    assert "原因：「处置结束」的事件不再接受「已到现场」" in text
    assert str(rejected.incident_id) in text
    assert "完整记录（须登录）：https://example.test/incidents/1" in text
    assert "ON_SCENE" not in text and "CLOSED" not in text  # people read words, not codes


def test_the_sms_notice_is_one_short_message_without_links() -> None:
    text = render_notice(
        notice_facts(refused(), "图克镇司法所", COUNTY_TIME), Form.SMS, default_texts()
    )
    assert text == (
        "您于2026-11-30 14:05记录的「已到现场」未被采纳：事件当前状态「处置结束」。"
        "请核对后重新记录。"
    )
    assert "http" not in text


def test_the_voice_notice_reads_the_time_aloud() -> None:
    text = render_notice(
        notice_facts(refused(), "图克镇司法所", COUNTY_TIME), Form.VOICE, default_texts()
    )
    assert (
        "图克镇司法所，您于11月30日14时05分记录的已到现场未被采纳，事件当前状态为处置结束。" in text
    )


@pytest.mark.parametrize("form", list(Form))
def test_a_drill_notice_says_so_in_every_form(form: Form) -> None:
    text = render_notice(
        notice_facts(refused(drill=True), "图克镇司法所", COUNTY_TIME), form, default_texts()
    )
    assert "演练" in text


@pytest.mark.parametrize("form", list(Form))
def test_a_stored_notice_is_sent_in_each_form_without_an_acknowledgement_link(form: Form) -> None:
    rejected = refused()
    stored = stored_notice("n-1", rejected, "图克镇司法所")
    message = render_message(stored, form, ack_url=None, record_url=None)
    assert message["text"] == render_notice(stored["notice"], form, default_texts())
    assert message["ack_url"] is None and message["obligation_id"] is None
    assert message["about"] == "action.rejected"
    assert "notice" not in message and "facts" not in message
