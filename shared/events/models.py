"""Typed data of every event type, per topic (`incidents.v1`, `escalations.v1`, ...).

Within a topic version, fields may be added (optional) but never removed or retyped.

Strict writers, tolerant readers: building an event refuses a field its model does not declare,
so a service publishes only what its schema says; reading one (`EventData.read`, as `decode`
does) ignores fields this version does not know, so a subscriber upgraded after its producer
applies the record instead of dead-lettering a new optional field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain.vocabulary import ActionCode, Category, LifecycleStatus, Phase

READING = "reading"  # validation context key: the data is a record read, not an event built


class EventData(BaseModel):
    """Base of every event payload: frozen once built; unknown fields are refused when an event
    is built and ignored when one is read (`read`). The published schemas say
    `additionalProperties: true`: a reader must accept what a later version adds."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_extra={"additionalProperties": True}
    )
    ce_type: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _only_declared_fields_when_built(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and not (info.context or {}).get(READING):
            undeclared = sorted(map(str, data.keys() - cls.model_fields.keys()))
            if undeclared:
                raise PydanticCustomError(
                    "undeclared_fields",
                    "{model} does not declare {fields}: an event carries only the fields its "
                    "schema declares",
                    {"model": cls.__name__, "fields": ", ".join(undeclared)},
                )
        return data

    @classmethod
    def read(cls, data: Any) -> Self:
        """The data of a record as this version understands it: fields it does not declare
        (added by a later version of the producer) are ignored, everything else validated."""
        return cls.model_validate(data, context={READING: True})


# --- incidents.v1 -----------------------------------------------------------------------------


class Subject(EventData):
    id: str = Field(min_length=1, max_length=64, description="社区矫正对象编号")
    name: str = Field(min_length=1, max_length=64)
    id_number_masked: str | None = Field(default=None, description="身份证号, masked")
    deciding_authority: str | None = Field(
        default=None,
        max_length=35,
        description="决定机关: the court or authority that decided the correction (R18)",
    )


class Reporter(EventData):
    party: str = Field(description="e.g. `SFS:150626102` or `PLATFORM`")
    name: str
    phone: str | None = None


class Sealed(EventData):
    """Personal data sealed with AES-GCM (shared/pii.py), as intake stores it at rest: only a
    service holding key `kid` opens it, and only for a caller who may read personal data."""

    kid: str = Field(min_length=1, max_length=64, description="id of the key that sealed it")
    nonce: str = Field(description="base64 of the 12-byte nonce")
    ct: str = Field(description="base64 of the ciphertext and its tag")


SUBJECTS_SEALED = (
    "the subjects in clear (id, name, full ID number), sealed with the personal-data key "
    "`kid`; the log keeps the ciphertext, and a report opens it only for a reader holding "
    "pii:read, every such read published as incident.personal_data_read"
)


class IncidentFacts(EventData):
    """The facts R7 asks a report to state: 种类、时间、地点、涉及人员、事态发展、已采取的措施."""

    category: Category
    phase: Phase
    township_code: str
    township_name: str
    subjects: tuple[Subject, ...]
    occurred_at: AwareDatetime | None = None
    discovered_at: AwareDatetime | None = None
    location: str | None = None
    summary: str | None = Field(default=None, description="事态发展情况")
    measures_taken: str | None = Field(default=None, description="已采取的措施")
    persons_involved: str | None = Field(default=None, description="涉及人员基本情况")
    drill: bool = False
    offence: bool = Field(
        default=False, description="涉嫌违法犯罪: the facts suggest an offence (R6, any category)"
    )


class IncidentReported(EventData):
    ce_type: ClassVar[str] = "incident.reported"
    incident_id: UUID
    facts: IncidentFacts
    reporter: Reporter
    reported_at: AwareDatetime
    sealed_subjects: Sealed | None = Field(default=None, description=SUBJECTS_SEALED)
    external_ref: str | None = Field(
        default=None, description="the source's own reference (the platform's 警情编号)"
    )


class ActionRecorded(EventData):
    ce_type: ClassVar[str] = "incident.action_recorded"
    incident_id: UUID
    action_id: UUID
    action: ActionCode
    party: str
    actor_name: str
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    note: str | None = None
    on_behalf_of: str | None = Field(
        default=None, description="the owner it was recorded for, one rung down the ladder"
    )
    reason: str | None = Field(
        default=None,
        description="why it was recorded on the owner's behalf, or why the BLO closes an "
        "absconding before the subject is found",
    )
    to: str | None = Field(default=None, description="for REPORTED: the party reported to")


class ReportFiled(EventData):
    """A follow-up report (续报) or a correction of facts already reported."""

    ce_type: ClassVar[str] = "incident.report_filed"
    incident_id: UUID
    report_id: UUID
    kind: Literal["FOLLOW_UP", "CORRECTION"]
    reporter: Reporter
    filed_at: AwareDatetime
    changes: dict[str, Any] = Field(default_factory=dict, description="facts as now stated")
    previous: dict[str, Any] = Field(default_factory=dict, description="facts they replace")
    text: str | None = None
    sealed_subjects: Sealed | None = Field(
        default=None, description=f"present when the report changes the subjects: {SUBJECTS_SEALED}"
    )
    reason: str | None = Field(
        default=None, description="why the facts were corrected (required to move the township)"
    )


LinkedBy = Literal["SUBJECT_ID", "EXTERNAL_REF", "PEOPLE"]
FACT_CHANGES = "the incident's facts the change set (personal data masked)"
FACT_PREVIOUS = "the facts those replace"


class LinkedReport(EventData):
    """A first report from another source, of an event already open as an incident (R20): kept
    as a report of that incident with its reporter and time, not as an incident of its own."""

    report_id: UUID
    reporter: Reporter
    reported_at: AwareDatetime = Field(description="when the system received the report")
    facts: IncidentFacts = Field(description="the facts as this source stated them")
    external_ref: str | None = Field(default=None, description="the source's own reference")
    sealed_subjects: Sealed | None = Field(default=None, description=SUBJECTS_SEALED)


class IncidentLinked(EventData):
    """Two reports of one event (R20): a report from another source linked on arrival
    (`report`, matched by subject id or reference), or an incident linked by people
    (`linked_incident_id`, with `party` and `reason`). The incident's facts take the more
    severe of the two (`changes`)."""

    ce_type: ClassVar[str] = "incident.linked"
    incident_id: UUID = Field(description="the incident the report or incident is linked to")
    link_id: UUID
    linked_by: LinkedBy = Field(description="what matched, or PEOPLE")
    linked_at: AwareDatetime
    report: LinkedReport | None = Field(default=None, description="a report linked on arrival")
    linked_incident_id: UUID | None = Field(
        default=None, description="an incident linked by people"
    )
    party: str | None = Field(default=None, description="who linked it (TCG or BLO); none: R20")
    actor_name: str | None = None
    reason: str | None = None
    changes: dict[str, Any] = Field(default_factory=dict, description=FACT_CHANGES)
    previous: dict[str, Any] = Field(default_factory=dict, description=FACT_PREVIOUS)
    sealed_subjects: Sealed | None = Field(
        default=None, description="the incident's subjects as now stated, when they changed"
    )
    drill: bool = False


class IncidentMerged(EventData):
    """People merged `merged_incident_id` into `incident_id` (R20): both histories are kept; the
    merged incident's open duties move to the surviving one, doubled ones are waived."""

    ce_type: ClassVar[str] = "incident.merged"
    incident_id: UUID = Field(description="the surviving incident")
    merged_incident_id: UUID
    link_id: UUID
    party: str = Field(description="who merged them (TCG or BLO)")
    actor_name: str
    reason: str
    merged_at: AwareDatetime
    changes: dict[str, Any] = Field(default_factory=dict, description=FACT_CHANGES)
    previous: dict[str, Any] = Field(default_factory=dict, description=FACT_PREVIOUS)
    sealed_subjects: Sealed | None = Field(
        default=None, description="the surviving incident's subjects, when they changed"
    )
    drill: bool = False


class IncidentUnlinked(EventData):
    """People undid a link or a merge: the incidents are separate events again, and what a
    merge moved or waived is restored (`changes`: the surviving incident's facts as before)."""

    ce_type: ClassVar[str] = "incident.unlinked"
    incident_id: UUID
    linked_incident_id: UUID
    link_id: UUID = Field(description="the link or merge undone")
    was: Literal["LINK", "MERGE"]
    party: str
    actor_name: str
    reason: str
    unlinked_at: AwareDatetime
    changes: dict[str, Any] = Field(default_factory=dict, description=FACT_CHANGES)
    previous: dict[str, Any] = Field(default_factory=dict, description=FACT_PREVIOUS)
    sealed_subjects: Sealed | None = Field(
        default=None, description="the surviving incident's subjects, when they changed"
    )
    drill: bool = False


class PersonalDataRead(EventData):
    """Someone read an incident's personal data unmasked (社区矫正法 Art. 54: every read leaves
    a trace)."""

    ce_type: ClassVar[str] = "incident.personal_data_read"
    incident_id: UUID
    party: str
    subject: str = Field(description="who, as their token names them")
    fields: tuple[str, ...]
    read_at: AwareDatetime


class PersonalDataReadInAudit(PersonalDataRead):
    """The same trace, left by the audit service when a timeline, export or investigation
    report is read in clear: on audit's own topic, since each service writes only its own."""

    ce_type: ClassVar[str] = "audit.personal_data_read"


# --- escalations.v1 ---------------------------------------------------------------------------


class IncidentBrief(EventData):
    """What an alert needs to say about the incident, and no more (least personal data)."""

    category: Category
    phase: Phase
    township_code: str
    township_name: str
    location: str | None = None
    occurred_at: datetime | None = None
    summary: str | None = None
    subject_names: tuple[str, ...] = ()
    drill: bool = False


class ObligationCreated(EventData):
    """A routing decision: who must do what, by when, under which rule of the plan."""

    ce_type: ClassVar[str] = "obligation.created"
    incident_id: UUID
    obligation_id: UUID
    party: str
    action: str
    action_text: str
    deadline_name: str
    due_at: AwareDatetime
    rule_id: str
    plan_section: str
    explanation: str
    notify: bool = Field(description="the party must be alerted now")
    deadline_text: str | None = Field(
        default=None, description="the deadline as people read it, e.g. 立即（15分钟）"
    )
    incident: IncidentBrief
    trigger: str = Field(default="incident.reported", description="what made the rule fire")
    escalated_from: UUID | None = Field(
        default=None, description="the overdue or unacknowledged obligation this one escalates"
    )
    policy_version: str | None = None
    owner: str | None = Field(
        default=None,
        description="who must act: the party itself, or the party that must inform it (the "
        "司法所 that reports to the TCG, the BLO that notifies the procuratorate)",
    )
    ack_seconds: float | None = Field(
        default=None, description="the policy's ACK deadline: unacknowledged this long, re-sent"
    )
    moved_from: UUID | None = Field(
        default=None,
        description="the same duty of another incident, moved here by a merge or its undoing "
        "(R20): its alert carries on, none is sent again",
    )


class AboutObligation(EventData):
    """Fields every event about one obligation of one incident carries."""

    incident_id: UUID
    obligation_id: UUID
    party: str


class ObligationMet(AboutObligation):
    ce_type: ClassVar[str] = "obligation.met"
    rule_id: str
    status: Literal["MET", "MET_LATE"]
    met_at: AwareDatetime
    met_by_event_id: UUID
    drill: bool = False
    recorded_by: str | None = Field(
        default=None, description="the party whose record or acknowledgement met it"
    )
    on_behalf_of: str | None = Field(
        default=None, description="set when recorded one rung up, on the owner's behalf"
    )
    asserted_at: AwareDatetime | None = Field(
        default=None,
        description="when the recorder says it was done; evidence only: `met_at` is the "
        "system's receipt, from which lateness is measured",
    )


class ObligationWaived(AboutObligation):
    """No longer required (the incident closed, the subject was found ...), with the reason."""

    ce_type: ClassVar[str] = "obligation.waived"
    rule_id: str
    reason: str
    waived_at: AwareDatetime
    drill: bool = False
    moved_to: UUID | None = Field(
        default=None,
        description="the duty lives on as this obligation of another incident (R20): its "
        "alert is not withdrawn",
    )


class DeadlineMissed(AboutObligation):
    """An obligation's due time passed with nothing recorded; `escalated_to` took it up."""

    ce_type: ClassVar[str] = "deadline.missed"
    action: str
    rule_id: str
    due_at: AwareDatetime
    missed_at: AwareDatetime
    escalated_to: str | None = None
    drill: bool = False


class ObligationOmitted(AboutObligation):
    """R11: a missed duty still undone this long after its deadline (the policy's
    `omitted_after`); done later, it becomes MET_LATE and R10."""

    ce_type: ClassVar[str] = "obligation.omitted"
    rule_id: str
    action: str
    due_at: AwareDatetime
    omitted_at: AwareDatetime
    drill: bool = False


class IncidentWentQuiet(EventData):
    """R9: an open incident with nothing new for the policy's `quiet_after`: the daily
    follow-up duty stops recurring and escalating, and `party` (the BLO) is told once."""

    ce_type: ClassVar[str] = "incident.went_quiet"
    incident_id: UUID
    party: str
    rule_id: str
    last_news_at: AwareDatetime
    noticed_at: AwareDatetime
    township_code: str
    drill: bool = False


class IncidentUpdated(EventData):
    """R19: the incident's facts or status changed; every party already alerted about it is
    told, in a short update that asks nothing of it."""

    ce_type: ClassVar[str] = "incident.updated"
    incident_id: UUID
    rule_id: str
    about: str = Field(description="FOLLOW_UP, CORRECTION, or the action (FOUND, CLOSED …)")
    summary: str = Field(description="what changed, in words, personal data masked")
    recipients: tuple[str, ...]
    changed_by: str
    changed_at: AwareDatetime
    incident: IncidentBrief
    status: LifecycleStatus
    update_id: UUID = Field(description="one per change: notices are keyed on it")


class IncidentStatusChanged(EventData):
    ce_type: ClassVar[str] = "incident.status_changed"
    incident_id: UUID
    status: LifecycleStatus
    previous_status: LifecycleStatus | None
    changed_at: AwareDatetime
    reason: str
    drill: bool = False


class ActionRejected(EventData):
    """An action that makes no sense in the incident's current state: shown, never dropped."""

    ce_type: ClassVar[str] = "action.rejected"
    incident_id: UUID
    action_id: UUID
    action: ActionCode
    status: LifecycleStatus
    reason: str
    drill: bool = False
    party: str | None = Field(
        default=None, description="the party that recorded the action, to be told it was refused"
    )
    recorded_at: AwareDatetime | None = Field(
        default=None, description="when the refused action was recorded"
    )


# --- notifications.v1 -------------------------------------------------------------------------


class NotificationAttempt(EventData):
    """One delivery attempt of an alert to one contact of a party."""

    notification_id: UUID
    incident_id: UUID
    obligation_id: UUID
    party: str
    channel: str
    contact: str
    attempt: int
    outcome: Literal["DELIVERED", "FAILED"]
    status_code: int | None = None
    latency_ms: float
    error: str | None = None
    attempted_at: AwareDatetime


# --- audit.v1 ---------------------------------------------------------------------------------


class NotificationDelivered(NotificationAttempt):
    ce_type: ClassVar[str] = "notification.delivered"


class NotificationFailed(NotificationAttempt):
    ce_type: ClassVar[str] = "notification.failed"


class NoticeAttempted(EventData):
    """One delivery attempt of a notice: a party told something that asks nothing of it (that
    an action it recorded was refused), about no obligation."""

    ce_type: ClassVar[str] = "notification.notice_attempted"
    notification_id: UUID
    incident_id: UUID
    party: str
    about: str = Field(description="the type of the event the notice tells of")
    channel: str
    contact: str
    attempt: int
    outcome: Literal["DELIVERED", "FAILED"]
    status_code: int | None = None
    latency_ms: float
    error: str | None = None
    attempted_at: AwareDatetime
    drill: bool = False


class NotificationAcknowledged(AboutObligation):
    """The recipient confirmed reading the alert; a "report to X" obligation is then met."""

    ce_type: ClassVar[str] = "notification.acknowledged"
    notification_id: UUID
    channel: str
    contact: str
    acknowledged_at: AwareDatetime
    drill: bool = False


class NotificationUnacknowledged(AboutObligation):
    """Every contact of the party was tried and nobody acknowledged within ACK."""

    ce_type: ClassVar[str] = "notification.unacknowledged"
    notification_id: UUID
    contacts_tried: int
    given_up_at: AwareDatetime
    drill: bool = False


class NotificationWithdrawn(AboutObligation):
    """The obligation was met or waived before its alert was acknowledged: the walk down the
    contact list stopped, deliveries not yet sent were cancelled (a send already in flight may
    still land), and the alert will not be reported unacknowledged."""

    ce_type: ClassVar[str] = "notification.withdrawn"
    notification_id: UUID
    reason: str
    withdrawn_at: AwareDatetime
    deliveries_cancelled: int
    drill: bool = False


class LogCheckpoint(EventData):
    ce_type: ClassVar[str] = "audit.checkpoint"
    origin: str
    size: int
    root_hash: str = Field(description="base64 of the Merkle root, as in the checkpoint")
    published_at: AwareDatetime
    note: str | None = Field(
        default=None, description="the checkpoint as a C2SP signed note, signed by the log"
    )


class FactVersions(EventData):
    """One reported fact as first stated and as a later correction states it (R13)."""

    field: str
    label: str = Field(description="the fact's name in the plan, e.g. 种类")
    previous: Any = None
    current: Any = None
    stated_by: str | None = Field(default=None, description="party that stated `previous`")


class AccountabilityFinding(EventData):
    """A suspicion of 迟报、漏报、瞒报 or 谎报 (R10–R13), R17's advice, or R9's staleness, for
    people to judge."""

    ce_type: ClassVar[str] = "audit.finding"
    finding_id: UUID
    incident_id: UUID
    rule_id: str
    party: str
    kind: Literal["LATE", "OMITTED", "CONCEALED", "FALSE", "KEY_MONITORING_SUGGESTED", "STALE"]
    detail: str
    evidence_log_indexes: tuple[int, ...] = ()
    title: str | None = Field(default=None, description="e.g. 疑似迟报，供核查")
    obligation_id: UUID | None = None
    obligation_rule_id: str | None = Field(default=None, description="rule of the obligation")
    action: str | None = None
    deadline_name: str | None = None
    due_at: AwareDatetime | None = None
    happened_at: AwareDatetime | None = Field(
        default=None, description="when what the finding is about happened (or was seen missing)"
    )
    versions: tuple[FactVersions, ...] = ()
    drill: bool = False
    asserted: tuple[str, ...] = Field(
        default=(), description="times callers asserted, shown as evidence with who asserted them"
    )


class FindingReviewed(EventData):
    """A finding confirmed or dismissed by the BJO or the CEO, with the reason: the suspicion
    judged by people. A dismissed finding stays on record, shown as dismissed."""

    ce_type: ClassVar[str] = "finding.reviewed"
    review_id: UUID
    finding_id: UUID
    incident_id: UUID
    rule_id: str
    decision: Literal["CONFIRMED", "DISMISSED"]
    reason: str
    reviewer_party: str
    reviewer: str = Field(description="who, as their token names them")
    reviewed_at: AwareDatetime
    drill: bool = False


class AccountabilityRecorded(EventData):
    """R15: a commendation (表彰) or discipline (处分) recorded by the BJO against a filed
    investigation report, with the findings it rests on; the CEO is informed."""

    ce_type: ClassVar[str] = "accountability.recorded"
    record_id: UUID
    incident_id: UUID
    rule_id: str
    kind: Literal["COMMENDATION", "DISCIPLINE"]
    person: str
    role: str
    party: str
    decision: str
    document_number: str = Field(description="文号")
    finding_ids: tuple[UUID, ...] = ()
    recorded_by: str
    recorded_at: AwareDatetime
    drill: bool = False


class PersonalDataErased(EventData):
    """The personal data an incident's leaves held (names, phones, ID numbers, free text) was
    erased after the retention period: its data key is gone, the leaves and every proof stay.
    Names no person: who, what and when under which rule stay readable."""

    ce_type: ClassVar[str] = "audit.personal_data_erased"
    incident_id: UUID
    closed_at: AwareDatetime
    erased_at: AwareDatetime
    retention_years: int = Field(
        description="the policy's retention.personal_data_years_after_closure"
    )
