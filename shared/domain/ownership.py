"""Who records which action, for whom, and who may close (docs/rules.md "How rules apply"); pure.

Every party acts for itself: each kind of party has its own action codes, and its recorded
actions meet only its own duties. A party one rung up may record for the owner, marked as on
its behalf and with a reason. Intake refuses what this table refuses at once (422); escalation
applies the same table and has the last word.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.vocabulary import ACTION_NAMES_ZH, ActionCode, Category, PartyKind, party_kind_of

A = ActionCode

# The action codes each kind of party records as its own.
ACTIONS_OF: dict[PartyKind, frozenset[ActionCode]] = {
    PartyKind.SFS: frozenset(
        {
            A.FIRST_RESPONSE_STARTED,
            A.UNCONTROLLABLE,
            A.SEARCH_STARTED,
            A.SEARCH_FAILED,
            A.FOUND,
            A.POLICE_CALLED,
            A.REPORTED,
            A.WRITTEN_NOTICE_SENT,
            A.ON_SCENE,
            A.COUNSELLING_DONE,
            A.KEY_MONITORING,
            A.RELIEF_JOINED,
            A.CONTROLLED,
        }
    ),
    PartyKind.TCG: frozenset({A.PLAN_ACTIVATED, A.COMMAND_ON_SCENE, A.CONTROLLED, A.CLOSED}),
    PartyKind.PPS: frozenset(
        {A.POLICE_DISPATCHED, A.POLICE_ON_SCENE, A.SEARCH_TAKEN_OVER, A.FOUND}
    ),
    PartyKind.BLO: frozenset(
        {A.INSTRUCTED, A.DEPARTMENTS_CONTACTED, A.DEC_NOTIFIED, A.PRO_NOTIFIED, A.CLOSED}
    ),
    PartyKind.BJO: frozenset({A.INVESTIGATION_REPORT_FILED}),
}

# One rung up: who may record an action on the owner's behalf (the escalation ladder's steps;
# a test keeps the two equal).
ON_BEHALF_OF: dict[PartyKind, PartyKind] = {
    PartyKind.SFS: PartyKind.TCG,
    PartyKind.TCG: PartyKind.BLO,
    PartyKind.BJO: PartyKind.BLO,
}

# Whom a 司法所 may record `REPORTED` to: the duties to report are to these.
REPORTED_TO: frozenset[PartyKind] = frozenset({PartyKind.TCG, PartyKind.BLO})


@dataclass(frozen=True)
class Recording:
    """An action as a party asks to record it."""

    party: str
    action: ActionCode
    on_behalf_of: str | None = None
    reason: str | None = None
    to: str | None = None

    @property
    def acting_party(self) -> str:
        """Whose action it is: the owner it was recorded for, else the recorder itself."""
        return self.on_behalf_of or self.party


def _said(action: ActionCode) -> str:
    return f"「{ACTION_NAMES_ZH[action]}」"


def refusal(recording: Recording, township_code: str | None) -> tuple[str, str] | None:
    """(field, why) when the recording is not the party's to make; None when it is.

    `township_code` is the incident's: a township-bound owner is the township's own.
    """
    acting = recording.acting_party
    try:
        kind = party_kind_of(acting)
    except ValueError:
        return "party", f"{acting} records no actions"
    if recording.on_behalf_of is not None:
        owner_kind = party_kind_of(recording.on_behalf_of)
        if ON_BEHALF_OF.get(owner_kind) != party_kind_of(recording.party):
            return "on_behalf_of", (
                f"{recording.party} is not one rung above {recording.on_behalf_of}: only "
                + ", ".join(f"{up} for {down}" for down, up in ON_BEHALF_OF.items())
            )
        if township_code and ":" in recording.on_behalf_of:
            if recording.on_behalf_of.split(":", 1)[1] != township_code:
                return "on_behalf_of", f"{recording.on_behalf_of} is not of this township"
        if not (recording.reason or "").strip():
            return "reason", "an action recorded on another party's behalf needs a reason"
    if recording.action not in ACTIONS_OF.get(kind, frozenset()):
        owners = sorted(k for k, codes in ACTIONS_OF.items() if recording.action in codes)
        return "action", (
            f"{_said(recording.action)} is not an action of {kind}; it is recorded by "
            f"{', '.join(owners) or 'nobody'} (every party records only its own)"
        )
    if recording.action == ActionCode.REPORTED:
        if recording.to is None:
            return "to", "REPORTED needs `to`: the party reported to (TCG of the township, BLO)"
        try:
            to_kind = party_kind_of(recording.to)
        except ValueError:
            to_kind = None
        if to_kind not in REPORTED_TO:
            return "to", f"{recording.to} is not a party a 司法所 reports to (TCG, BLO)"
        if township_code and to_kind == PartyKind.TCG and recording.to != f"TCG:{township_code}":
            return "to", f"{recording.to} is not this township's command group"
    elif recording.to is not None:
        return "to", "only REPORTED names whom it was reported to"
    return None


def closing_refusal(
    recording: Recording, category: Category | str, found_recorded: bool
) -> str | None:
    """Why `CLOSED` may not be recorded now, or None: only the township's TCG or the BLO
    closes; an absconding closes only once the subject is found, or by the BLO with a reason."""
    if recording.action != ActionCode.CLOSED:
        return None
    kind = party_kind_of(recording.acting_party)
    if kind not in (PartyKind.TCG, PartyKind.BLO):
        return "只有苏木(镇)指挥小组或旗社区矫正工作领导小组办公室可以记录「处置结束」"
    if Category(category) == Category.ABSCONDED and not found_recorded:
        if kind != PartyKind.BLO:
            return (
                "脱管事件须在「已找到」后才能结束，或由旗社区矫正工作领导小组办公室说明理由决定结束"
            )
        if not (recording.reason or "").strip():
            return "尚未找到社区矫正对象：旗社区矫正工作领导小组办公室决定结束须说明理由"
    return None
