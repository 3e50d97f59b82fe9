"""The report of an emergency as the county platform and officers send it (REST contract).

Intake accepts it; escalation's dry run evaluates the same body.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from shared.domain.privacy import ID_NUMBER_PATTERN
from shared.domain.vocabulary import PARTY_PATTERN, Category, Phase

# Clocks of phones and platforms drift; beyond this a time in the future, or an action before
# the incident it is about, is a mistake.
CLOCK_SKEW = timedelta(minutes=5)


def not_in_future(moment: datetime | None) -> datetime | None:
    if moment is not None and moment > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("lies in the future")
    return moment


# C0 control characters other than tab and line breaks: no report needs them, and what intake
# accepted must be storable by every consumer (JSONB, for one, refuses NUL). Refused at the
# door, where the reporter can still fix them.
UNSTORABLE_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def storable_text(value: str) -> str:
    if (found := UNSTORABLE_CHARACTERS.search(value)) is not None:
        raise ValueError(
            f"contains U+{ord(found.group()):04X}: control characters other than tab and "
            "line breaks cannot be stored"
        )
    return value


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _storable_strings(cls, value: Any) -> Any:
        if isinstance(value, str):
            return storable_text(value)
        return value


PastTime = Annotated[AwareDatetime, AfterValidator(not_in_future)]

# What follows `DEC:` in a party code (PARTY_PATTERN): up to 35 characters, no colon.
DECIDING_AUTHORITY_PATTERN = r"^[^\x00-\x1f\x7f:]{1,35}$"


class SubjectIn(Input):
    id: str = Field(min_length=1, max_length=64, description="社区矫正对象编号")
    name: str = Field(min_length=1, max_length=64)
    id_number: str | None = Field(default=None, pattern=ID_NUMBER_PATTERN, description="身份证号")
    # Not personal data: it is kept in the published subject, and names the `DEC:<name>` party
    # the BLO notifies of the subject's death (R18).
    deciding_authority: str | None = Field(
        default=None,
        pattern=DECIDING_AUTHORITY_PATTERN,
        description="决定机关: the court or authority that decided the correction (R18)",
        examples=["乌审旗人民法院"],
    )


def distinct_subjects(subjects: list[SubjectIn] | None) -> list[SubjectIn] | None:
    """One person once: a subject listed twice would be counted, masked and alerted twice."""
    if subjects is None:
        return None
    counts = Counter(subject.id for subject in subjects)
    repeated = [subject_id for subject_id, count in counts.items() if count > 1]
    if repeated:
        raise ValueError(f"subject ids listed more than once: {', '.join(repeated)}")
    return subjects


class ReporterIn(Input):
    party: str = Field(pattern=PARTY_PATTERN, examples=["SFS:150626102", "PLATFORM"])
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(default=None, max_length=32)


class IncidentIn(Input):
    """A first report (首报) of an emergency."""

    category: Category
    phase: Phase
    township: str = Field(
        min_length=1, max_length=32, description="division code (150626102) or name (图克镇)"
    )
    subjects: Annotated[list[SubjectIn], AfterValidator(distinct_subjects)] = Field(
        min_length=1, max_length=50
    )
    occurred_at: PastTime | None = None
    discovered_at: PastTime | None = None
    location: str | None = Field(default=None, max_length=500)
    summary: str | None = Field(default=None, max_length=5000, description="事态发展情况")
    measures_taken: str | None = Field(default=None, max_length=5000, description="已采取的措施")
    persons_involved: str | None = Field(
        default=None, max_length=5000, description="涉及人员基本情况"
    )
    reporter: ReporterIn
    drill: bool = False
    external_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="the source's own reference (the platform's 警情编号, a hotline ticket), "
        "unique per source party: reported again under it, it is the same incident (the same "
        "body: a replay; another: a follow-up)",
    )
    offence: bool = Field(
        default=False,
        description="涉嫌违法犯罪: the facts suggest an offence, whatever the category (R6)",
    )


class FactsUpdate(Input):
    """Facts a follow-up report adds or a correction replaces; omitted fields stay as they are."""

    category: Category | None = None
    phase: Phase | None = None
    subjects: Annotated[list[SubjectIn] | None, AfterValidator(distinct_subjects)] = Field(
        default=None, min_length=1, max_length=50
    )
    occurred_at: PastTime | None = None
    discovered_at: PastTime | None = None
    location: str | None = Field(default=None, max_length=500)
    summary: str | None = Field(default=None, max_length=5000)
    measures_taken: str | None = Field(default=None, max_length=5000)
    persons_involved: str | None = Field(default=None, max_length=5000)
    offence: bool | None = Field(default=None, description="涉嫌违法犯罪 (R6)")
    township: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="CORRECTION only, with a reason: the township the incident belongs to, "
        "division code or name; it moves the incident's access and contacts",
    )
    drill: bool | None = Field(
        default=None,
        description="CORRECTION only: false turns a drill real (by a 司法所 or the BLO); "
        "real → drill is refused",
    )

    @model_validator(mode="after")
    def _required_facts_stay(self) -> FactsUpdate:
        # Omitting a fact keeps it; stating it as null would erase what every report must have.
        erased = [
            name
            for name in NEVER_NULL_FACTS
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if erased:
            raise ValueError(f"{', '.join(erased)} cannot be null; omit a fact to keep it")
        return self


# Facts an incident always has: stated as null they would be erased.
NEVER_NULL_FACTS = ("category", "phase", "subjects", "offence", "township", "drill")

# Facts only a correction may change: where the incident belongs, and whether it is real.
CORRECTION_ONLY_FACTS = ("township", "drill")
