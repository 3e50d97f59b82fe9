"""The states of an alert, and which of them an obligation's outcome can still stop.

    NEW ──▶ PENDING ──▶ DELIVERED ──▶ ACKNOWLEDGED
             ▲  │           │
             └──┼───────────┘ (not acknowledged in time: the next contact)
                ├──▶ UNACKNOWLEDGED  (every contact reached or tried, none acknowledged)
                └──▶ FAILED          (no contact could be reached)
    NEW, PENDING, DELIVERED ──▶ WITHDRAWN  (the obligation was met or waived meanwhile)

A notice (a refused action told to the party who recorded it, an update of the incident (R19),
an incident gone quiet (R9), a commendation or discipline told to the CEO (R15)) asks nothing of
its reader:

    NEW ──▶ PENDING ──▶ INFORMED  (delivered to a contact: finished)
                └──▶ FAILED       (no contact could be reached)

A duty a merge of incidents moves (R20) keeps its alert: the alert follows it to its new id,
whatever state it is in, unless it was withdrawn.

A withdrawn alert walks no further: nobody is asked to acknowledge a duty that is done or
no longer required, and the ladder is not climbed for it (no `notification.unacknowledged`).
"""

from __future__ import annotations

from enum import StrEnum

from shared.events.models import ObligationMet, ObligationWaived


class NotificationStatus(StrEnum):
    NEW = "NEW"
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    UNACKNOWLEDGED = "UNACKNOWLEDGED"
    FAILED = "FAILED"
    WITHDRAWN = "WITHDRAWN"
    INFORMED = "INFORMED"


class NotificationKind(StrEnum):
    ALERT = "ALERT"
    NOTICE = "NOTICE"


# Still walking its contact list: an outcome of the obligation stops it.
WALKING = frozenset(
    {NotificationStatus.NEW, NotificationStatus.PENDING, NotificationStatus.DELIVERED}
)
# Nothing moves an alert on from these.
FINISHED = frozenset(NotificationStatus) - WALKING


def withdrawable(status: str) -> bool:
    """Whether an alert in `status` is stopped when its obligation is met or waived; an
    acknowledged or given-up alert already says what happened and stays so."""
    return status in WALKING


def withdrawal_reason(outcome: ObligationMet | ObligationWaived) -> str:
    """Why the alert was withdrawn, in the words the alert's reader uses."""
    if isinstance(outcome, ObligationWaived):
        return f"义务已免除：{outcome.reason}"
    return "义务已逾期办结" if outcome.status == "MET_LATE" else "义务已按时办结"


def carries_on(status: str) -> bool:
    """Whether the alert of a duty a merge moved (R20) goes on for the duty where it now lives:
    it does unless it was withdrawn (then the duty's party is alerted again); the same party is
    never alerted twice for the same duty."""
    return status != NotificationStatus.WITHDRAWN
