"""Notices the revised rules call for (services/notification/templates.py, templates.yaml): the
update of R19, the staleness notice of R9 and the accountability record of R15. Each has its own
templates in every form, asks nothing (no acknowledgement link), carries the least personal data
and shows times in the county's time zone. Rendering is pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notification.templates import (
    AlertTexts,
    Form,
    default_texts,
    render_message,
    render_notice,
    stored_accountability,
    stored_update,
    stored_went_quiet,
)
from shared.settings import Settings
from tests.notification.builders import (
    accountability_recorded,
    incident_updated,
    incident_went_quiet,
)

ID_NUMBER_LIKE = re.compile(r"\d{17}[\dXx]")
CHANGED_AT = datetime(2026, 11, 30, 6, 5, tzinfo=UTC)  # 14:05 in the county
RECORD = "https://sqjz.example/incidents/i-1"
PARTY_NAMES = {
    "PPS:150626102": "图克镇派出所",
    "SFS:150626102": "图克镇司法所",
    "BJO": "旗司法局办公室",
    "BLO": "旗社区矫正工作领导小组办公室",
    "CEO": "市司法局应急办公室",
}


def update_text(form: Form, texts: AlertTexts | None = None, **kwargs: Any) -> str:
    updated = incident_updated(changed_at=CHANGED_AT, **kwargs)
    stored = stored_update("n-1", updated, "PPS:150626102", "图克镇派出所", "图克镇司法所", texts)
    return render_message(stored, form, ack_url=None, record_url=RECORD, texts=texts)["text"]


def quiet_text(form: Form, **kwargs: Any) -> str:
    quiet = incident_went_quiet(CHANGED_AT - timedelta(days=7, hours=2), **kwargs)
    stored = stored_went_quiet("n-2", quiet, PARTY_NAMES["BLO"], "图克镇")
    return render_message(stored, form, ack_url=None, record_url=RECORD)["text"]


def accountability_text(form: Form, **kwargs: Any) -> str:
    record = accountability_recorded(recorded_at=CHANGED_AT, **kwargs)
    stored = stored_accountability("n-3", record, "CEO", PARTY_NAMES)
    return render_message(stored, form, ack_url=None, record_url=RECORD)["text"]


ALL_TEXTS = {"update": update_text, "went_quiet": quiet_text, "accountability": accountability_text}


# --- R19 ---------------------------------------------------------------------------------------


def test_r19_full_update_says_what_changed_who_said_so_and_when_in_county_time() -> None:
    text = update_text(Form.FULL)
    assert text.splitlines()[0] == "【社区矫正突发事件】事件更新：续报"
    assert "致：图克镇派出所" in text
    assert "事件：图克镇 暴力犯罪或以要挟为目的的自杀、自焚、自残（正在实施）" in text
    assert "更新：王**（身份证150626********1234）由扬言报复转为持刀伤人" in text
    assert "来源：图克镇司法所，2026-11-30 14:05（北京时间）" in text
    assert "当前状态：处置中" in text and "依据：R19" in text
    assert "无需确认" in text and f"完整记录（须登录）：{RECORD}" in text


@pytest.mark.parametrize("form", list(Form))
def test_r19_update_carries_no_unmasked_personal_data_in_any_form(form: Form) -> None:
    text = update_text(form)
    assert "王某某" not in text and "张三丰" not in text
    assert not ID_NUMBER_LIKE.search(text)
    assert "VIOLENCE" not in text and "FOLLOW_UP" not in text  # words, not codes


@pytest.mark.parametrize("form", [Form.SMS, Form.VOICE])
def test_r19_short_forms_carry_no_summary_place_or_link(form: Form) -> None:
    """The summary is free text: the short forms leave it out, as the alerts' short forms do."""
    text = update_text(form)
    assert "持刀伤人" not in text and "某村" not in text and "王**" not in text
    assert "http" not in text and "\n" not in text


def test_r19_sms_update_is_one_short_message() -> None:
    assert update_text(Form.SMS) == (
        "事件更新：图克镇社区矫正对象暴力或自伤自残事件（正在实施），续报，2026-11-30 14:05。"
        "当前状态「处置中」。详情请登录系统查看。"
    )


@pytest.mark.parametrize(
    ("about", "words"),
    [
        ("FOLLOW_UP", "续报"),
        ("CORRECTION", "事实更正"),
        ("FOUND", "已找到"),
        ("CONTROLLED", "事态已控制"),
        ("CLOSED", "处置结束"),
        ("SOMETHING_NEW", "情况变化"),
    ],
)
@pytest.mark.parametrize("form", list(Form))
def test_r19_each_kind_of_change_is_named_in_words(about: str, words: str, form: Form) -> None:
    assert words in update_text(form, about=about)


def test_r19_update_times_follow_the_county_time_zone_setting() -> None:
    texts = AlertTexts.load(zone=Settings(county_time_zone="Asia/Urumqi").county_zone)
    assert "来源：图克镇司法所，2026-11-30 12:05（Asia/Urumqi时间）" in update_text(
        Form.FULL, texts
    )
    assert "2026-11-30 12:05" in update_text(Form.SMS, texts)


def test_r19_stored_update_is_a_notice_about_the_change_for_one_party() -> None:
    updated = incident_updated(changed_at=CHANGED_AT)
    stored = stored_update("n-1", updated, "SFS:150626102", "图克镇司法所", "图克镇司法所")
    assert stored["about"] == "incident.updated" and stored["obligation_id"] is None
    assert (stored["party"], stored["update_id"]) == ("SFS:150626102", str(updated.update_id))
    assert stored["title"] == "事件更新：图克镇 续报"
    assert stored["notice"]["template"] == "update"
    assert stored["text"] == render_notice(stored["notice"], Form.FULL, default_texts())


# --- R9 ----------------------------------------------------------------------------------------


def test_r9_went_quiet_full_text_says_since_when_and_what_to_do() -> None:
    text = quiet_text(Form.FULL)
    assert text.splitlines()[0] == "【社区矫正突发事件】事件久无续报"
    assert "致：旗社区矫正工作领导小组办公室" in text
    assert "图克镇的一起事件自2026-11-23 12:05（北京时间）起7天没有续报或新的记录" in text
    assert "依据：R9" in text and "本通知只发一次" in text


def test_r9_went_quiet_short_forms() -> None:
    assert quiet_text(Form.SMS) == (
        "图克镇一起社区矫正突发事件自2026-11-23 12:05起7天无续报（R9）。"
        "请核实现状，督促续报或依规结案。"
    )
    assert "自11月23日12时05分起7天没有续报" in quiet_text(Form.VOICE)


# --- R15 ---------------------------------------------------------------------------------------


def test_r15_ceo_is_told_the_record_with_the_person_masked() -> None:
    text = accountability_text(Form.FULL)
    assert text.splitlines()[0] == "【社区矫正突发事件】处分记录"
    assert "致：市司法局应急办公室" in text
    assert "旗司法局办公室于2026-11-30 14:05（北京时间）依据调查报告记录处分一项" in text
    assert "单位：图克镇司法所" in text
    assert "人员：张**（图克镇司法所所长）" in text
    assert "决定：张**迟报，给予警告处分" in text
    assert "文号：乌司发〔2026〕5号" in text and "所依据的核查结论：2项" in text
    assert "依据：R15，预案六(二)" in text


@pytest.mark.parametrize("form", [Form.SMS, Form.VOICE])
def test_r15_short_forms_name_the_unit_and_document_but_no_person(form: Form) -> None:
    text = accountability_text(form, kind="COMMENDATION")
    assert "表彰" in text and "图克镇司法所" in text and "乌司发〔2026〕5号" in text
    assert "张" not in text and "http" not in text


def test_r15_stored_record_names_the_ceo_and_the_record() -> None:
    record = accountability_recorded(recorded_at=CHANGED_AT)
    stored = stored_accountability("n-3", record, "CEO", PARTY_NAMES)
    assert (stored["party"], stored["party_name"]) == ("CEO", "市司法局应急办公室")
    assert stored["about"] == "accountability.recorded"
    assert stored["record_id"] == str(record.record_id)
    assert stored["title"] == "处分记录：图克镇司法所（乌司发〔2026〕5号）"


# --- all of them -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TEXTS)
@pytest.mark.parametrize("form", list(Form))
def test_every_rule_notice_carries_no_unmasked_personal_data(name: str, form: Form) -> None:
    text = ALL_TEXTS[name](form)
    assert text
    assert "王某某" not in text and "张三丰" not in text
    assert not ID_NUMBER_LIKE.search(text)


@pytest.mark.parametrize("name", ALL_TEXTS)
@pytest.mark.parametrize("form", list(Form))
def test_r16_a_drill_notice_says_so_in_every_form(name: str, form: Form) -> None:
    assert "演练" in ALL_TEXTS[name](form, drill=True)
    assert "演练" not in ALL_TEXTS[name](form, drill=False)
