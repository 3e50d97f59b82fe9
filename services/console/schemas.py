"""The console's forms, and the request bodies they become for the services.

Forms arrive as `application/x-www-form-urlencoded` from the pages; the services validate what
they receive as they would from any caller, and their 422 comes back to the form field by field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from shared.domain.access import Principal


class Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    csrf_token: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class ReportForm(Form):
    """首报."""

    category: str | None = None
    phase: str | None = None
    township: str | None = None
    subject_id: str | None = None
    subject_name: str | None = None
    location: str | None = None
    summary: str | None = None
    measures_taken: str | None = None
    persons_involved: str | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    drill: bool = False
    offence: bool = False

    def body(self, user: Principal) -> dict[str, Any]:
        body: dict[str, Any] = {
            "category": self.category,
            "phase": self.phase,
            "township": self.township or user.township,
            "subjects": [{"id": self.subject_id, "name": self.subject_name}],
            "location": self.location,
            "summary": self.summary,
            "measures_taken": self.measures_taken,
            "persons_involved": self.persons_involved,
            "reporter": {
                "party": user.party,
                "name": self.reporter_name,
                "phone": self.reporter_phone,
            },
            "drill": self.drill,
            "offence": self.offence,
        }
        return _without_none(body)


class ActionForm(Form):
    action: str | None = None
    actor_name: str | None = None
    note: str | None = None
    to: str | None = None
    on_behalf_of: str | None = None
    reason: str | None = None

    def body(self, user: Principal) -> dict[str, Any]:
        return _without_none(
            {
                "action": self.action,
                "party": user.party,
                "actor_name": self.actor_name,
                "note": self.note,
                "to": self.to,
                "on_behalf_of": self.on_behalf_of,
                "reason": self.reason,
            }
        )


class FollowUpForm(Form):
    """续报 or correction; only the facts the form fills in change."""

    kind: str = "FOLLOW_UP"
    reporter_name: str | None = None
    text: str | None = None
    reason: str | None = None
    category: str | None = None
    phase: str | None = None
    township: str | None = None
    summary: str | None = None
    measures_taken: str | None = None

    def body(self, user: Principal) -> dict[str, Any]:
        changes = _without_none(
            {
                "category": self.category,
                "phase": self.phase,
                "township": self.township,
                "summary": self.summary,
                "measures_taken": self.measures_taken,
            }
        )
        return _without_none(
            {
                "kind": self.kind,
                "reporter": {"party": user.party, "name": self.reporter_name},
                "changes": changes,
                "text": self.text,
                "reason": self.reason,
            }
        )


class LinkForm(Form):
    action: str = "LINK"
    incident_id: str | None = None
    actor_name: str | None = None
    reason: str | None = None

    def body(self, user: Principal) -> dict[str, Any]:
        return _without_none(
            {
                "action": self.action,
                "incident_id": self.incident_id,
                "party": user.party,
                "actor_name": self.actor_name,
                "reason": self.reason,
            }
        )


class ReviewForm(Form):
    decision: str | None = None
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        return _without_none({"decision": self.decision, "reason": self.reason})


class AccountabilityForm(Form):
    kind: str | None = None
    person: str | None = None
    role: str | None = None
    party: str | None = None
    decision: str | None = None
    document_number: str | None = None

    def body(self) -> dict[str, Any]:
        return _without_none(
            {
                "kind": self.kind,
                "person": self.person,
                "role": self.role,
                "party": self.party,
                "decision": self.decision,
                "document_number": self.document_number,
            }
        )


class AcknowledgeForm(Form):
    return_to: str | None = None


class LocalLoginForm(Form):
    party: str | None = None
    name: str | None = None
    personal_data: bool = False
    next: str | None = None


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _without_none(value) if isinstance(value, dict) else value
        for key, value in values.items()
        if value is not None
    }
