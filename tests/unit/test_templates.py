"""Alert texts (services/notification/templates.py): zh-CN, least personal data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from services.notification.templates import (
    AlertTexts,
    Form,
    local_time,
    render_alert,
    render_message,
    stored_alert,
)
from shared.domain.privacy import masked_name
from shared.domain.vocabulary import COUNTY_TIME, Category, Phase
from shared.events.models import IncidentBrief, ObligationCreated
from shared.settings import Settings

INCIDENT_ID = UUID("0b7d3c6e-7a53-4cc0-9b5e-3e7f4f0a1c01")
OBLIGATION_ID = UUID("5f1d2a3b-0000-4000-8000-000000000001")
REPORTED_AT = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in 乌审旗
ID_NUMBER = "150626199001011234"
ID_NUMBER_LIKE = re.compile(r"\d{17}[\dXx]")


def obligation(
    *,
    drill: bool = False,
    summary: str | None = "持刀威胁邻居",
    deadline_text: str | None = "立即（15分钟）",
    **brief,
) -> ObligationCreated:
    return ObligationCreated(
        incident_id=INCIDENT_ID,
        obligation_id=OBLIGATION_ID,
        party="PPS:150626102",
        action="CALL_POLICE",
        action_text="接报警：社区矫正对象突发事件",
        deadline_name="IMMEDIATE",
        deadline_text=deadline_text,
        due_at=REPORTED_AT + timedelta(minutes=15),
        rule_id="R6",
        plan_section="四(三)",
        explanation="依据 R6（预案四(三)）……",
        notify=True,
        incident=IncidentBrief(
            **{
                "category": Category.VIOLENCE,
                "phase": Phase.IN_PROGRESS,
                "township_code": "150626102",
                "township_name": "图克镇",
                "location": "图克镇某村",
                "occurred_at": REPORTED_AT - timedelta(minutes=5),
                "summary": summary,
                "subject_names": ("王某某", "李四"),
                "drill": drill,
                **brief,
            }
        ),
    )


def render(**kwargs) -> dict:
    return render_alert("n-1", obligation(**kwargs), "图克镇派出所")


def test_alert_text_states_township_rule_section_and_action():
    """R6 alerts cite the rule and the plan's section."""
    alert = render()
    text = alert["text"]
    assert alert["title"] == (
        "【社区矫正突发事件】图克镇 暴力犯罪或以要挟为目的的自杀、自焚、自残（正在实施）"
    )
    assert text.splitlines()[0] == alert["title"]
    assert "致：图克镇派出所" in text
    assert "事项：接报警：社区矫正对象突发事件" in text
    assert "依据：R6，预案四(三)" in text
    assert "地点：图克镇某村" in text
    assert "事态：持刀威胁邻居" in text
    assert f"事件编号：{INCIDENT_ID}" in text


def test_due_time_and_occurrence_are_in_asia_shanghai_local_time():
    text = render()["text"]
    assert "时限：立即（15分钟），2025-03-01 10:15 前" in text
    assert "时间：2025-03-01 09:55" in text


def test_the_deadline_is_said_in_words_even_by_a_decision_that_did_not_word_it():
    text = render(deadline_text=None)["text"]
    assert "时限：立即，2025-03-01 10:15 前" in text and "IMMEDIATE" not in text


def test_subject_names_are_masked():
    text = render()["text"]
    assert "涉及对象：王**、李*" in text
    assert "王某某" not in text
    assert "李四" not in text


def test_unknown_facts_read_as_bu_xiang():
    text = render(summary=None, location=None, occurred_at=None, subject_names=())["text"]
    for line in ("时间：不详", "地点：不详", "涉及对象：不详", "事态：不详"):
        assert line in text


def test_drill_is_marked_in_title_and_payload():
    """R16: drills run through the same pipeline, marked drill."""
    alert = render(drill=True)
    assert alert["title"].startswith("【演练】【社区矫正突发事件】")
    assert alert["text"].startswith("【演练】")
    assert alert["drill"] is True
    real = render(drill=False)
    assert "演练" not in real["text"]
    assert real["drill"] is False


def test_alert_payload_fields():
    alert = render()
    assert alert == {
        "notification_id": "n-1",
        "incident_id": str(INCIDENT_ID),
        "obligation_id": str(OBLIGATION_ID),
        "party": "PPS:150626102",
        "party_name": "图克镇派出所",
        "rule_id": "R6",
        "plan_section": "四(三)",
        "action": "CALL_POLICE",
        "due_at": "2025-03-01T02:15:00+00:00",
        "drill": False,
        "title": alert["title"],
        "text": alert["text"],
    }


def test_alert_never_carries_an_id_number_from_structured_data():
    alert = render()
    assert not any(ID_NUMBER_LIKE.search(str(value)) for value in alert.values())


def test_alert_never_carries_an_id_number_even_from_free_text():
    alert = render(summary=f"王某某（身份证{ID_NUMBER}）持刀威胁邻居")
    assert ID_NUMBER not in alert["text"]


@pytest.mark.parametrize(
    ("name", "masked"),
    [("王某某", "王**"), ("张三丰", "张**"), ("李四", "李*"), ("王", "王*"), ("欧阳娜娜", "欧***")],
)
def test_masked_name(name, masked):
    assert masked_name(name) == masked


def test_local_time_is_in_the_zone_it_is_given():
    assert local_time(None, COUNTY_TIME) == "不详"
    assert local_time(datetime(2025, 12, 31, 16, 30, tzinfo=UTC), COUNTY_TIME) == "2026-01-01 00:30"
    assert local_time(datetime(2025, 12, 31, 16, 30, tzinfo=UTC), ZoneInfo("UTC")) == (
        "2025-12-31 16:30"
    )


def test_alert_times_follow_the_county_time_zone_setting():
    """Issue 12 point 8: the zone is the setting COUNTY_TIME_ZONE, not a constant of the code."""
    zone = Settings(county_time_zone="Asia/Urumqi").county_zone
    texts = AlertTexts.load(zone=zone)
    alert = render_alert("n-1", obligation(), "图克镇派出所", texts)
    assert "时限：立即（15分钟），2025-03-01 08:15 前" in alert["text"]
    assert "时间：2025-03-01 07:55" in alert["text"]
    sms = render_message(
        stored_alert("n-1", obligation(phase=Phase.SIGNS), "图克镇派出所", texts),
        Form.SMS,
        ack_url=None,
        record_url=None,
        texts=texts,
    )["text"]
    assert "08:15前" in sms
