"""Every form of every alert (services/notification/templates.py, templates.yaml): pure, zh-CN,
least personal data, the right wording for each kind of recipient, drills marked."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notification.templates import (
    AlertTexts,
    Form,
    alert_facts,
    default_texts,
    render_message,
    stored_alert,
)
from shared.domain.privacy import mask_names_in_text
from shared.domain.vocabulary import COUNTY_TIME, Category, PartyKind, Phase
from shared.events.models import ObligationCreated
from tests.notification.builders import ID_NUMBER
from tests.notification.builders import obligation as build_obligation

ACK = "https://sqjz.example/v1/notifications/n-1/ack?token=1.0.1.sig"
RECORD = "https://sqjz.example/incidents/i-1"
PARTIES = {
    "PPS:150626102": "图克镇派出所",
    "SFS:150626102": "图克镇司法所",
    "TCG:150626102": "图克镇社区矫正突发事件应急处置指挥小组",
    "BLO": "旗社区矫正工作领导小组办公室",
    "BJO": "旗司法局办公室",
    "CEO": "市司法局应急办公室",
}


def obligation(party: str = "PPS:150626102", **details: Any) -> ObligationCreated:
    """Free text naming the subject twice and carrying an ID number, to see both masked."""
    details.setdefault("summary", f"王某某（身份证{ID_NUMBER}）持刀威胁邻居，王某某已被劝离")
    details.setdefault("location", "图克镇某村王某某家门口")
    return build_obligation(party, **details)


def text(form: Form, **kwargs: Any) -> str:
    ob = obligation(**kwargs)
    alert = stored_alert("n-1", ob, PARTIES[ob.party])
    return render_message(alert, form, ack_url=ACK, record_url=RECORD)["text"]


ALL_CASES = [
    (party, category, phase, form)
    for party in PARTIES
    for category in Category
    for phase in Phase
    for form in Form
]


@pytest.mark.parametrize(("party", "category", "phase", "form"), ALL_CASES)
def test_every_form_renders_without_personal_data(party, category, phase, form):
    rendered = text(form, party=party, category=category, phase=phase)
    assert "图克镇" in rendered
    assert ID_NUMBER not in rendered and not re.search(r"\d{17}[\dXx]", rendered)
    assert "王某某" not in rendered
    assert "{{" not in rendered and "{%" not in rendered
    if form is Form.FULL:
        assert "王**" in rendered and "持刀" in rendered
        assert f"完整记录（须登录）：{RECORD}" in rendered and f"收悉请确认：{ACK}" in rendered
    else:  # short forms: no names, places or summary, not even masked
        assert "王" not in rendered and "持刀" not in rendered and "某村" not in rendered
    if form is Form.SMS:
        assert ACK in rendered and len(rendered) <= 70 + len(ACK) + 40
    if form is Form.VOICE:
        assert "http" not in rendered and len(rendered) <= 120


@pytest.mark.parametrize(
    ("party", "words"),
    [
        ("PPS:150626102", "立即出警制止"),
        ("SFS:150626102", "先期处置"),
        ("TCG:150626102", "启动本苏木（镇）应急处置预案"),
        ("BLO", "组织指导处置"),
        ("BJO", "调查报告"),
        ("CEO", "请知悉"),
    ],
)
def test_full_text_asks_each_kind_of_recipient_for_its_part(party, words):
    assert words in text(Form.FULL, party=party)


def test_category_and_phase_choose_the_most_specific_template():
    assert "立即出警制止" in text(Form.FULL, category=Category.VIOLENCE, phase=Phase.IN_PROGRESS)
    assert "立即出警制止" not in text(Form.FULL, category=Category.VIOLENCE, phase=Phase.SIGNS)
    assert "协助查找" in text(Form.FULL, category=Category.ABSCONDED, phase=Phase.OCCURRED)
    assert "社区矫正法第三十条" in text(
        Form.FULL, party="SFS:150626102", category=Category.ABSCONDED, phase=Phase.OCCURRED
    )
    assert text(Form.SMS).count("【紧急】") == 1
    assert "【紧急】" not in text(Form.SMS, phase=Phase.SIGNS)


def test_template_lookup_order():
    facts = alert_facts(obligation(), "图克镇派出所", COUNTY_TIME)
    assert default_texts().template_names(Form.SMS, facts) == [
        "sms.PPS.VIOLENCE.IN_PROGRESS",
        "sms.PPS.VIOLENCE",
        "sms.VIOLENCE.IN_PROGRESS",
        "sms.PPS",
        "sms",
    ]


@given(
    st.sampled_from(list(Form)),
    st.sampled_from([str(kind) for kind in PartyKind]),
    st.sampled_from(list(Category)),
    st.sampled_from(list(Phase)),
)
def test_the_template_chosen_once_is_the_one_the_lookup_order_finds(form, kind, category, phase):
    """Each combination's template is chosen once and kept: the same as looking it up again."""
    texts = default_texts()
    facts = {"party_kind": kind, "category": str(category), "phase": str(phase)}
    expected = texts.environment.select_template(texts.template_names(form, facts))
    assert texts.template(form, facts) is texts.template(form, facts)
    assert texts.template(form, facts).name == expected.name


@pytest.mark.parametrize("form", list(Form))
def test_drill_is_said_in_every_form(form):
    assert "演练" in text(form, drill=True)
    assert "演练" not in text(form, drill=False)


def test_links_are_left_out_when_there_are_none():
    alert = stored_alert("n-1", obligation(), "图克镇派出所")
    full = render_message(alert, Form.FULL, ack_url=None, record_url=None)["text"]
    assert "http" not in full and "收悉请确认" not in full and "\n\n" not in full


def test_message_is_the_alert_with_the_form_and_links_and_no_stored_facts():
    alert = stored_alert("n-1", obligation(), "图克镇派出所")
    assert alert["facts"]["subjects"] == "王**"
    message = render_message(alert, Form.SMS, ack_url=ACK, record_url=RECORD)
    assert "facts" not in message
    assert (message["form"], message["ack_url"], message["record_url"]) == ("sms", ACK, RECORD)
    assert message["title"] == alert["title"] and message["party"] == "PPS:150626102"


def test_an_alert_s_title_is_rendered_once_and_its_messages_say_the_title_it_was_stored_with():
    texts = AlertTexts.load()
    rendered: list[dict[str, Any]] = []
    title_template = texts.title_template

    class CountedTitle:
        def render(self, facts: dict[str, Any]) -> str:
            rendered.append(facts)
            return title_template.render(facts)

    counted = dataclasses.replace(texts, title_template=CountedTitle())  # type: ignore[arg-type]
    alert = stored_alert("n-1", obligation(), "图克镇派出所", counted)
    assert len(rendered) == 1 and alert["title"] in alert["text"]
    message = render_message(
        {**alert, "title": "标题如存"}, Form.FULL, ack_url=ACK, record_url=None, texts=counted
    )
    assert len(rendered) == 1
    assert message["title"] == "标题如存" and "标题如存" in message["text"]


def test_alert_stored_before_templates_keeps_its_text_and_gains_the_link():
    legacy = {"notification_id": "n-0", "title": "T", "text": "旧的全文"}
    message = render_message(legacy, Form.SMS, ack_url=ACK, record_url=None)
    assert message["text"] == f"旧的全文\n收悉请确认：{ACK}"


def test_rendering_is_pure():
    texts = AlertTexts.load()
    decided = obligation()
    facts = alert_facts(decided, "图克镇派出所", COUNTY_TIME)
    first = texts.render(facts, Form.FULL, ACK, RECORD)
    assert texts.render(facts, Form.FULL, ACK, RECORD) == first
    assert facts == alert_facts(decided, "图克镇派出所", COUNTY_TIME)  # facts are not changed


def test_a_deployment_can_bring_its_own_texts(tmp_path):
    own = tmp_path / "texts.yaml"
    own.write_text(
        "category_short: {VIOLENCE: 暴力}\n"
        "title: '{{ township }}'\n"
        "templates:\n"
        "  full: '{{ title }}：{{ category_short }}'\n"
        "  sms: '短'\n"
        "  voice: '读'\n",
        encoding="utf-8",
    )
    texts = AlertTexts.load(own)
    facts = alert_facts(obligation(), "图克镇派出所", COUNTY_TIME)
    assert texts.render(facts, Form.FULL) == "图克镇：暴力"
    assert texts.render(facts, Form.SMS) == "短"


@given(st.text(alphabet="王某李四张三丰图克镇持刀 ，。", max_size=40))
def test_subject_names_are_masked_wherever_they_stand(free_text):
    masked = mask_names_in_text(free_text, ("王某某", "李四"))
    assert "王某某" not in masked and "李四" not in masked


@given(
    st.from_regex(r"\A[1-6]\d{16}[\dX]\Z"),
    st.text(alphabet="图克镇某村身份证号：，。 ", max_size=20),
)
def test_id_numbers_in_free_text_never_reach_any_form(id_number, around):
    for form in Form:
        rendered = text(form, summary=f"{around}{id_number}{around}", location=id_number)
        assert id_number not in rendered


FIFTY = tuple(f"王{chr(0x4E00 + n)}{chr(0x4E00 + n)}" for n in range(50))


@pytest.mark.parametrize("form", list(Form))
def test_an_alert_about_many_subjects_names_a_few_and_counts_them_all(form):
    ob = build_obligation("SFS:150626102", category=Category.ABSCONDED, subject_names=FIFTY)
    alert = stored_alert("n-1", ob, PARTIES[ob.party])
    rendered = render_message(alert, form, ack_url=ACK, record_url=RECORD)["text"]
    if form is Form.FULL:
        assert "涉及对象：王**、王**、王**等50人" in rendered
        assert rendered.count("王**") == 3
    elif form is Form.GROUP:  # a whole chat reads it: nobody named, nothing to acknowledge
        assert "王" not in rendered and ACK not in rendered and RECORD in rendered
        assert "图克镇" in rendered and "脱离监督管理" in rendered
    else:  # short forms name nobody, but say how many people it is about
        assert "50人" in rendered and "王" not in rendered
    if form is Form.SMS:
        assert len(rendered) <= 70 + len(ACK) + 40
    if form is Form.VOICE:
        assert len(rendered) <= 120


@pytest.mark.parametrize("count", [1, 2, 3])
def test_an_alert_about_a_few_subjects_names_them_all_without_a_count(count):
    ob = build_obligation("SFS:150626102", subject_names=FIFTY[:count])
    facts = stored_alert("n-1", ob, PARTIES[ob.party])["facts"]
    assert facts["subjects"] == "、".join(["王**"] * count)
    assert "等" not in facts["subjects"]
    sms = default_texts().render(facts, Form.SMS)
    assert ("社区矫正对象2人" in sms) is (count == 2)


def test_an_alert_stored_before_subjects_were_counted_still_renders_its_short_forms():
    ob = build_obligation("SFS:150626102")
    alert = stored_alert("n-1", ob, PARTIES[ob.party])
    del alert["facts"]["subject_count"]
    assert "社区矫正对象" in render_message(alert, Form.SMS, ack_url=ACK, record_url=None)["text"]
