"""Alert texts in zh-CN from the Jinja2 templates of `templates.yaml`; rendering is pure.

Least personal data: `alert_facts` is the only place that reads the obligation, and it masks
subject names and ID numbers and leaves offence details out; every form is rendered from those
facts. The templates are read once; `AlertTexts.render` does no I/O.

Times are shown in the county's time zone (the setting COUNTY_TIME_ZONE), which the texts carry
(`AlertTexts.zone`) and every function that words a time is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import jinja2
import yaml

from shared.domain.privacy import masked_name, masked_text
from shared.domain.vocabulary import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    COUNTY_TIME,
    PHASE_NAMES_ZH,
    STATUS_NAMES_ZH,
    county_time,
    deadline_words_zh,
    party_kind_of,
    party_name_zh,
    time_zone_label,
)
from shared.events.models import (
    AccountabilityRecorded,
    ActionRejected,
    IncidentUpdated,
    IncidentWentQuiet,
    ObligationCreated,
)

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")
UNKNOWN = "不详"
# An alert names this many subjects and counts the rest: fifty names help nobody act.
SUBJECTS_NAMED = 3


class Form(StrEnum):
    """How much a channel can carry: the full text, one SMS, a few spoken sentences, or what a
    whole group chat may read."""

    FULL = "full"
    SMS = "sms"
    VOICE = "voice"
    # Group-chat robots (`@all`): everyone in the chat reads it, so no free text, no names and
    # no acknowledgement link, only category, phase, township, time and the record link.
    GROUP = "group"


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A time as people in the county read it, or 不详."""
    return UNKNOWN if moment is None else county_time(moment, zone)


def spoken_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """Read aloud: 11月30日14时05分, not digits and colons."""
    return UNKNOWN if moment is None else moment.astimezone(zone).strftime("%-m月%-d日%-H时%M分")


def _free_text(text: str | None, names: tuple[str, ...]) -> str:
    return masked_text(text or UNKNOWN, names)


def subjects_text(names: tuple[str, ...]) -> str:
    """王**、李**、张**等50人: the first few masked names, and how many there are in all."""
    if not names:
        return UNKNOWN
    named = "、".join(masked_name(name) for name in names[:SUBJECTS_NAMED])
    return named if len(names) <= SUBJECTS_NAMED else f"{named}等{len(names)}人"


def alert_facts(obligation: ObligationCreated, party_name: str, zone: ZoneInfo) -> dict[str, Any]:
    """What any form of the alert may say, already minimised; JSON, so it can be stored."""
    incident = obligation.incident
    names = incident.subject_names
    return {
        "incident_id": str(obligation.incident_id),
        "party": obligation.party,
        "party_kind": str(party_kind_of(obligation.party)),
        "party_name": party_name,
        "rule_id": obligation.rule_id,
        "plan_section": obligation.plan_section,
        "action_text": obligation.action_text,
        "deadline_name": obligation.deadline_name,
        "deadline_text": obligation.deadline_text or deadline_words_zh(obligation.deadline_name),
        "due_local": local_time(obligation.due_at, zone),
        "due_time": obligation.due_at.astimezone(zone).strftime("%H:%M"),
        "category": str(incident.category),
        "category_name": CATEGORY_NAMES_ZH[incident.category],
        "phase": str(incident.phase),
        "phase_name": PHASE_NAMES_ZH[incident.phase],
        "township": incident.township_name,
        "occurred_local": local_time(incident.occurred_at, zone),
        "location": _free_text(incident.location, names),
        "subjects": subjects_text(names),
        "subject_count": len(names),
        "summary": _free_text(incident.summary, names),
        "drill": incident.drill,
    }


def with_later_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts of an alert stored before some facts existed, completed from what it has."""
    return {
        "subject_count": 1,
        "deadline_text": deadline_words_zh(facts["deadline_name"]),
        **facts,
    }


@dataclass(frozen=True)
class AlertTexts:
    """The templates of one file, compiled once."""

    environment: jinja2.Environment
    title_template: jinja2.Template
    zone: ZoneInfo
    # 类别简称 by category code, for the short forms (SMS, robots).
    category_short: Mapping[str, str]
    # The template each form, party kind, category and phase came to: choosing looks for the
    # more particular names first, and a name not found costs an exception every time.
    _chosen: dict[tuple[str, str, str, str], jinja2.Template] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def load(cls, path: Path = TEMPLATES_FILE, zone: ZoneInfo = COUNTY_TIME) -> AlertTexts:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        environment = jinja2.Environment(
            loader=jinja2.DictLoader(data["templates"]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text for SMS, mail and robots; HTML is never built here
            keep_trailing_newline=False,
        )
        return cls(
            environment, environment.from_string(data["title"]), zone, data["category_short"]
        )

    def title(self, facts: dict[str, Any]) -> str:
        return self.title_template.render(facts).strip()

    def template_names(self, form: Form, facts: dict[str, Any]) -> list[str]:
        kind, category, phase = facts["party_kind"], facts["category"], facts["phase"]
        return [
            f"{form}.{kind}.{category}.{phase}",
            f"{form}.{kind}.{category}",
            f"{form}.{category}.{phase}",
            f"{form}.{kind}",
            str(form),
        ]

    def template(self, form: Form, facts: dict[str, Any]) -> jinja2.Template:
        """The most particular template there is for the form and the facts' party kind,
        category and phase."""
        key = (str(form), facts["party_kind"], facts["category"], facts["phase"])
        chosen = self._chosen.get(key)
        if chosen is None:
            names = self.template_names(form, facts)
            chosen = self._chosen[key] = self.environment.select_template(names)
        return chosen

    def render(
        self,
        facts: dict[str, Any],
        form: Form,
        ack_url: str | None = None,
        record_url: str | None = None,
        title: str | None = None,
    ) -> str:
        """The text of `form`; `title` is the facts' title when the caller has it already."""
        template = self.template(form, facts)
        short = self.category_short
        text = template.render(
            with_later_facts(facts),
            title=self.title(facts) if title is None else title,
            category_short=short.get(facts["category"], facts["category_name"]),
            ack_url=ack_url,
            record_url=record_url,
        )
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def notice_facts(rejected: ActionRejected, party_name: str, zone: ZoneInfo) -> dict[str, Any]:
    """What a notice of a refused action may say: no personal data is in it at all."""
    recorded = rejected.recorded_at
    return {
        "incident_id": str(rejected.incident_id),
        "party": rejected.party,
        "party_name": party_name,
        "action_name": ACTION_NAMES_ZH.get(rejected.action, UNKNOWN),
        "status_name": STATUS_NAMES_ZH.get(rejected.status, UNKNOWN),
        "reason": rejected.reason,
        "recorded_local": local_time(recorded, zone),
        "recorded_spoken": spoken_time(recorded, zone),
        "drill": rejected.drill,
    }


def _stored_notice(
    notification_id: str,
    *,
    about: str,
    incident_id: UUID,
    party: str | None,
    party_name: str,
    drill: bool,
    title: str,
    facts: dict[str, Any],
    texts: AlertTexts,
    **identifiers: str | None,
) -> dict[str, Any]:
    """A notice as stored: identifiers, its full text, and the facts each form is rendered from
    (a notice carries no acknowledgement link: there is nothing to acknowledge). `about` is the
    type of the event it tells of; `facts["template"]` names its templates (`notice` when
    absent: refusals, stored before notices had others)."""
    return {
        "notification_id": notification_id,
        "incident_id": str(incident_id),
        "obligation_id": None,
        "party": party,
        "party_name": party_name,
        "about": about,
        **identifiers,
        "drill": drill,
        "title": title,
        "text": render_notice(facts, Form.FULL, texts),
        "notice": facts,
    }


def stored_notice(
    notification_id: str,
    rejected: ActionRejected,
    party_name: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """The notice of a refused action, to the party that recorded it."""
    texts = texts or default_texts()
    facts = notice_facts(rejected, party_name, texts.zone)
    return _stored_notice(
        notification_id,
        about=ActionRejected.ce_type,
        incident_id=rejected.incident_id,
        party=rejected.party,
        party_name=party_name,
        drill=rejected.drill,
        title=f"记录未被采纳：「{facts['action_name']}」",
        facts=facts,
        texts=texts,
        action=rejected.action,
    )


# R19: what changed, as its reader names it; an action by the name the vocabulary gives it.
CHANGE_NAMES_ZH = {
    "FOLLOW_UP": "续报",
    "CORRECTION": "事实更正",
    # R20: another report of the same event, two incidents merged, a merge undone.
    "LINKED": "同一事件另有报告",
    "MERGED": "事件合并",
    "UNLINKED": "撤销关联",
}


def change_name_zh(about: str) -> str:
    return CHANGE_NAMES_ZH.get(about) or ACTION_NAMES_ZH.get(about) or "情况变化"


def update_facts(
    updated: IncidentUpdated, party: str, party_name: str, changed_by_name: str, zone: ZoneInfo
) -> dict[str, Any]:
    """What an update (R19) may say: the change in the words escalation gave it, masked again
    here (names of the subjects, ID numbers) for the case it was not, and the incident's brief
    without place or names."""
    incident = updated.incident
    return {
        "template": "update",
        "incident_id": str(updated.incident_id),
        "party": party,
        "party_name": party_name,
        "rule_id": updated.rule_id,
        "about": updated.about,
        "change_name": change_name_zh(updated.about),
        "summary": _free_text(updated.summary, incident.subject_names),
        "changed_by_name": changed_by_name,
        "changed_local": local_time(updated.changed_at, zone),
        "changed_spoken": spoken_time(updated.changed_at, zone),
        "zone_label": time_zone_label(zone),
        "status_name": STATUS_NAMES_ZH.get(updated.status, UNKNOWN),
        "township_code": incident.township_code,
        "township": incident.township_name,
        "category": str(incident.category),
        "category_name": CATEGORY_NAMES_ZH[incident.category],
        "phase_name": PHASE_NAMES_ZH[incident.phase],
        "drill": incident.drill,
    }


def stored_update(
    notification_id: str,
    updated: IncidentUpdated,
    party: str,
    party_name: str,
    changed_by_name: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """R19: the update told to one party already alerted about the incident."""
    texts = texts or default_texts()
    facts = update_facts(updated, party, party_name, changed_by_name, texts.zone)
    return _stored_notice(
        notification_id,
        about=IncidentUpdated.ce_type,
        incident_id=updated.incident_id,
        party=party,
        party_name=party_name,
        drill=updated.incident.drill,
        title=f"事件更新：{facts['township']} {facts['change_name']}",
        facts=facts,
        texts=texts,
        update_id=str(updated.update_id),
    )


def went_quiet_facts(
    quiet: IncidentWentQuiet, party_name: str, township: str, zone: ZoneInfo
) -> dict[str, Any]:
    """What the staleness notice (R9) may say: no personal data at all."""
    return {
        "template": "went_quiet",
        "incident_id": str(quiet.incident_id),
        "party": quiet.party,
        "party_name": party_name,
        "rule_id": quiet.rule_id,
        "township_code": quiet.township_code,
        "township": township,
        "last_news_local": local_time(quiet.last_news_at, zone),
        "last_news_spoken": spoken_time(quiet.last_news_at, zone),
        "quiet_days": (quiet.noticed_at - quiet.last_news_at).days,
        "zone_label": time_zone_label(zone),
        "drill": quiet.drill,
    }


def stored_went_quiet(
    notification_id: str,
    quiet: IncidentWentQuiet,
    party_name: str,
    township: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """R9: the BLO told once that an open incident has had nothing new for days."""
    texts = texts or default_texts()
    facts = went_quiet_facts(quiet, party_name, township, texts.zone)
    return _stored_notice(
        notification_id,
        about=IncidentWentQuiet.ce_type,
        incident_id=quiet.incident_id,
        party=quiet.party,
        party_name=party_name,
        drill=quiet.drill,
        title=f"事件久无续报：{township}",
        facts=facts,
        texts=texts,
        last_news_at=quiet.last_news_at.isoformat(),
    )


ACCOUNTABILITY_KINDS_ZH = {"COMMENDATION": "表彰", "DISCIPLINE": "处分"}


def accountability_facts(
    record: AccountabilityRecorded, party: str, party_names: Mapping[str, str], zone: ZoneInfo
) -> dict[str, Any]:
    """What the CEO is told of a commendation or discipline (R15): the unit, the role, the
    decision and its 文号; the person only masked (the record in full is behind the link),
    and the person's name masked wherever the free text repeats it."""
    person = (record.person,)
    return {
        "template": "accountability",
        "incident_id": str(record.incident_id),
        "party": party,
        "party_name": party_name_zh(party, dict(party_names)),
        "rule_id": record.rule_id,
        "kind_name": ACCOUNTABILITY_KINDS_ZH[record.kind],
        "person": masked_name(record.person),
        "role": _free_text(record.role, person),
        "unit_name": party_name_zh(record.party, dict(party_names)),
        "decision": _free_text(record.decision, person),
        "document_number": record.document_number,
        "findings_count": len(record.finding_ids),
        "recorded_by_name": party_name_zh(record.recorded_by, dict(party_names)),
        "recorded_local": local_time(record.recorded_at, zone),
        "zone_label": time_zone_label(zone),
        "drill": record.drill,
    }


def stored_accountability(
    notification_id: str,
    record: AccountabilityRecorded,
    party: str,
    party_names: Mapping[str, str],
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """R15: a commendation or discipline told to `party` (the CEO)."""
    texts = texts or default_texts()
    facts = accountability_facts(record, party, party_names, texts.zone)
    return _stored_notice(
        notification_id,
        about=AccountabilityRecorded.ce_type,
        incident_id=record.incident_id,
        party=party,
        party_name=facts["party_name"],
        drill=record.drill,
        title=f"{facts['kind_name']}记录：{facts['unit_name']}（{record.document_number}）",
        facts=facts,
        texts=texts,
        record_id=str(record.record_id),
    )


def render_notice(
    facts: dict[str, Any], form: Form, texts: AlertTexts, record_url: str | None = None
) -> str:
    """A notice in one form, from the templates its facts name; like alerts, empty lines are
    dropped."""
    template = texts.environment.get_template(f"{facts.get('template', 'notice')}.{form}")
    short = texts.category_short
    category = facts.get("category")
    text = template.render(
        facts,
        record_url=record_url,
        category_short=short.get(category, facts.get("category_name")) if category else None,
    )
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


@cache
def default_texts(zone: ZoneInfo = COUNTY_TIME) -> AlertTexts:
    """The project's templates, showing times in `zone` (the service passes its setting)."""
    return AlertTexts.load(TEMPLATES_FILE, zone)


def alert_payload(
    notification_id: str, obligation: ObligationCreated, facts: dict[str, Any], texts: AlertTexts
) -> dict[str, Any]:
    """The alert as subscribers receive it: identifiers, rule, and the full text."""
    title = texts.title(facts)
    return {
        "notification_id": notification_id,
        "incident_id": str(obligation.incident_id),
        "obligation_id": str(obligation.obligation_id),
        "party": obligation.party,
        "party_name": facts["party_name"],
        "rule_id": obligation.rule_id,
        "plan_section": obligation.plan_section,
        "action": obligation.action,
        "due_at": obligation.due_at.isoformat(),
        "drill": obligation.incident.drill,
        "title": title,
        "text": texts.render(facts, Form.FULL, title=title),
    }


def stored_alert(
    notification_id: str,
    obligation: ObligationCreated,
    party_name: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """The alert plus its facts, kept so each contact's form can be rendered later."""
    texts = texts or default_texts()
    facts = alert_facts(obligation, party_name, texts.zone)
    return {**alert_payload(notification_id, obligation, facts, texts), "facts": facts}


def render_alert(
    notification_id: str,
    obligation: ObligationCreated,
    party_name: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    alert = stored_alert(notification_id, obligation, party_name, texts)
    del alert["facts"]
    return alert


def render_message(
    alert: dict[str, Any],
    form: Form,
    *,
    ack_url: str | None,
    record_url: str | None,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """What one contact is sent: the alert with `text` in the channel's form, and the links."""
    texts = texts or default_texts()
    facts = alert.get("facts")
    message = {key: value for key, value in alert.items() if key not in ("facts", "notice")}
    if "notice" in alert:
        text = render_notice(alert["notice"], form, texts, record_url)
    elif facts is None:
        # Alerts stored before the templates existed keep the full text they were rendered with.
        text = alert["text"] + (f"\n收悉请确认：{ack_url}" if ack_url else "")
    else:
        # The title the alert was stored with, as its message's `title` says.
        text = texts.render(
            facts, form, ack_url=ack_url, record_url=record_url, title=alert.get("title")
        )
    return {
        **message,
        "form": str(form),
        "text": text,
        "ack_url": ack_url,
        "record_url": record_url,
    }
