"""Alert texts in zh-CN from the Jinja2 templates of `templates.yaml`; rendering is pure.

Least personal data: `alert_facts` is the only place that reads the obligation, and it masks
subject names and ID numbers and leaves offence details out; every form is rendered from those
facts. The templates are read once; `AlertTexts.render` does no I/O.

Times are shown in the county's time zone (the setting COUNTY_TIME_ZONE), which the texts carry
(`AlertTexts.zone`) and every function that words a time is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml

from shared.domain import (
    ACTION_NAMES_ZH,
    CATEGORY_NAMES_ZH,
    COUNTY_TIME,
    PHASE_NAMES_ZH,
    STATUS_NAMES_ZH,
    county_time,
    deadline_words_zh,
    party_kind_of,
)
from shared.events.models import ActionRejected, ObligationCreated
from shared.privacy import mask_id_numbers_in_text, masked_name

TEMPLATES_FILE = Path(__file__).with_name("templates.yaml")
UNKNOWN = "不详"
# An alert names this many subjects and counts the rest: fifty names help nobody act.
SUBJECTS_NAMED = 3


class Form(StrEnum):
    """How much a channel can carry: the full text, one SMS, or a few spoken sentences."""

    FULL = "full"
    SMS = "sms"
    VOICE = "voice"


def local_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """A time as people in the county read it, or 不详."""
    return UNKNOWN if moment is None else county_time(moment, zone)


def spoken_time(moment: datetime | None, zone: ZoneInfo) -> str:
    """Read aloud: 11月30日14时05分, not digits and colons."""
    return UNKNOWN if moment is None else moment.astimezone(zone).strftime("%-m月%-d日%-H时%M分")


def mask_names_in_text(text: str, names: tuple[str, ...]) -> str:
    """Reporters write subjects' names into free text too; mask those wherever they stand."""
    for name in sorted(names, key=len, reverse=True):
        if name:
            text = text.replace(name, masked_name(name))
    return text


def _free_text(text: str | None, names: tuple[str, ...]) -> str:
    return mask_names_in_text(mask_id_numbers_in_text(text or UNKNOWN), names)


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

    @classmethod
    def load(cls, path: Path = TEMPLATES_FILE, zone: ZoneInfo = COUNTY_TIME) -> AlertTexts:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        environment = jinja2.Environment(
            loader=jinja2.DictLoader(data["templates"]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text for SMS, mail and robots; HTML is never built here
            keep_trailing_newline=False,
        )
        environment.globals["category_short_names"] = data["category_short"]
        return cls(environment, environment.from_string(data["title"]), zone)

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

    def render(
        self,
        facts: dict[str, Any],
        form: Form,
        ack_url: str | None = None,
        record_url: str | None = None,
    ) -> str:
        template = self.environment.select_template(self.template_names(form, facts))
        short = self.environment.globals["category_short_names"]
        text = template.render(
            with_later_facts(facts),
            title=self.title(facts),
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


def stored_notice(
    notification_id: str,
    rejected: ActionRejected,
    party_name: str,
    texts: AlertTexts | None = None,
) -> dict[str, Any]:
    """A notice as stored: identifiers, its full text, and the facts each form is rendered from
    (a notice carries no acknowledgement link: there is nothing to acknowledge)."""
    texts = texts or default_texts()
    facts = notice_facts(rejected, party_name, texts.zone)
    return {
        "notification_id": notification_id,
        "incident_id": str(rejected.incident_id),
        "obligation_id": None,
        "party": rejected.party,
        "party_name": party_name,
        "about": ActionRejected.ce_type,
        "action": rejected.action,
        "drill": rejected.drill,
        "title": f"记录未被采纳：「{facts['action_name']}」",
        "text": render_notice(facts, Form.FULL, texts),
        "notice": facts,
    }


def render_notice(
    facts: dict[str, Any], form: Form, texts: AlertTexts, record_url: str | None = None
) -> str:
    """A notice in one form; like alerts, empty lines are dropped."""
    text = texts.environment.get_template(f"notice.{form}").render(facts, record_url=record_url)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


@cache
def default_texts(zone: ZoneInfo = COUNTY_TIME) -> AlertTexts:
    """The project's templates, showing times in `zone` (the service passes its setting)."""
    return AlertTexts.load(TEMPLATES_FILE, zone)


def alert_payload(
    notification_id: str, obligation: ObligationCreated, facts: dict[str, Any], texts: AlertTexts
) -> dict[str, Any]:
    """The alert as subscribers receive it: identifiers, rule, and the full text."""
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
        "title": texts.title(facts),
        "text": texts.render(facts, Form.FULL),
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
        text = texts.render(facts, form, ack_url=ack_url, record_url=record_url)
    return {
        **message,
        "form": str(form),
        "text": text,
        "ack_url": ack_url,
        "record_url": record_url,
    }
