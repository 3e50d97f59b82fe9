"""Properties of the rules engine over random incidents, reporters and trigger times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.escalation.rules import (
    ObligationSpec,
    ObligationView,
    Policy,
    PriorSigns,
    Situation,
    Trigger,
    evaluate,
    ladder_step,
)
from shared.domain.directory import Directory
from shared.domain.vocabulary import ActionCode, Category, PartyKind, Phase, party_kind_of
from shared.events.models import IncidentFacts, Subject

from .conftest import DIRECTORY_FILE, POLICY_FILE

POLICY = Policy.load(POLICY_FILE)
DIRECTORY = Directory.load(DIRECTORY_FILE)
PARTY_NAMES = {party.code: party.name for party in DIRECTORY.parties}
TOWNSHIPS = DIRECTORY.townships
PARTIES = [party.code for party in DIRECTORY.parties]
RULE_IDS = [rule.id for rule in POLICY.rules]
TRIGGERS = ["reported", *(f"action:{code}" for code in ActionCode), "timer:SEARCH_WINDOW"]
ANY_TRIGGER = st.sampled_from(TRIGGERS)

PROPERTY = settings(deadline=None, max_examples=60)

# How high each party kind stands on the ladder (docs/rules.md: SFS → TCG → BLO, BJO → BLO).
RUNG = {PartyKind.SFS: 0, PartyKind.TCG: 1, PartyKind.BJO: 1, PartyKind.BLO: 2}

moments = st.datetimes(
    min_value=datetime(2024, 1, 1),
    max_value=datetime(2030, 12, 31),
    timezones=st.sampled_from([UTC, ZoneInfo("Asia/Shanghai")]),
)
# Trigger times from before the report (a backdated action) to weeks after it.
offsets = st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=40))
maybe_text = st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=12))
subjects = st.lists(
    st.builds(
        Subject,
        id=st.from_regex(r"WS-20[0-9]{2}-[0-9]{3}", fullmatch=True),
        name=st.sampled_from(["王某某", "李某", "张某某"]),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda subject: subject.id,
)


@st.composite
def incident_facts(draw: st.DrawFn, drill: bool | None = None) -> IncidentFacts:
    township = draw(st.sampled_from(TOWNSHIPS))
    return IncidentFacts(
        category=draw(st.sampled_from(Category)),
        phase=draw(st.sampled_from(Phase)),
        township_code=township.code,
        township_name=township.name,
        subjects=tuple(draw(subjects)),
        occurred_at=draw(st.one_of(st.none(), moments)),
        discovered_at=draw(st.one_of(st.none(), moments)),
        location=draw(maybe_text),
        summary=draw(maybe_text),
        measures_taken=draw(maybe_text),
        persons_involved=draw(maybe_text),
        drill=draw(st.booleans()) if drill is None else drill,
    )


@st.composite
def situations(draw: st.DrawFn, drill: bool | None = None) -> Situation:
    facts = draw(incident_facts(drill))
    reported_at = draw(moments)
    incident_id = draw(st.uuids())
    prior = draw(
        st.lists(
            st.builds(
                PriorSigns,
                incident_id=st.one_of(st.just(incident_id), st.uuids()),
                subject_id=st.sampled_from([subject.id for subject in facts.subjects]),
                reported_at=offsets.map(lambda offset: reported_at - offset),
            ),
            max_size=3,
        )
    )
    return Situation(
        incident_id=incident_id,
        facts=facts,
        reporter_party=draw(st.sampled_from([*PARTIES, "PLATFORM"])),
        reported_at=reported_at,
        fired_rules=draw(st.frozensets(st.sampled_from(RULE_IDS))),
        prior_signs=tuple(prior),
    )


@st.composite
def triggers(draw: st.DrawFn, situation: Situation, names=ANY_TRIGGER) -> Trigger:
    return Trigger(
        name=draw(names),
        at=situation.reported_at + draw(offsets),
        event_id=draw(st.uuids()),
        actor=draw(
            st.one_of(st.none(), st.just(situation.reporter_party), st.sampled_from(PARTIES))
        ),
    )


@PROPERTY
@given(data=st.data(), situation=situations())
def test_every_report_obliges_the_townships_sfs_to_respond(data, situation):
    """R1 for any category, phase, township, drill flag and reporter."""
    trigger = data.draw(triggers(situation, st.just("reported")))
    decision = evaluate(POLICY, situation, trigger, PARTY_NAMES)
    first = [spec for spec in decision.obligations if spec.rule_id == "R1"]
    assert [(s.party, s.action, s.deadline_name) for s in first] == [
        (f"SFS:{situation.facts.township_code}", "START_FIRST_RESPONSE", "IMMEDIATE")
    ]
    anchor = max(trigger.at, situation.reported_at)
    assert first[0].due_at == anchor + POLICY.deadlines["IMMEDIATE"].duration
    assert first[0].notify is (first[0].party != trigger.actor)
    assert situation.facts.township_name in first[0].explanation


@PROPERTY
@given(data=st.data(), situation=situations(drill=False))
def test_a_drill_is_marked_throughout_and_obliges_the_same_parties(data, situation):
    """R16: drills go through the same rules; every obligation says drill, so notification
    sends it to drill contacts only and it never reaches a real police station. A drill's
    history is of drills (R17), as a real incident's is of real ones."""
    trigger = data.draw(triggers(situation))
    drill = Situation(
        situation.incident_id,
        situation.facts.model_copy(update={"drill": True}),
        situation.reporter_party,
        situation.reported_at,
        situation.fired_rules,
        tuple(replace(prior, drill=True) for prior in situation.prior_signs),
    )
    real = evaluate(POLICY, situation, trigger, PARTY_NAMES)
    drilled = evaluate(POLICY, drill, trigger, PARTY_NAMES)
    assert all(spec.drill for spec in drilled.obligations)
    assert not any(spec.drill for spec in real.obligations)
    assert {(s.rule_id, s.party, s.action) for s in drilled.obligations} == {
        (s.rule_id, s.party, s.action) for s in real.obligations
    }


@PROPERTY
@given(data=st.data(), situation=situations())
def test_nothing_falls_due_before_the_incident_was_reported(data, situation):
    trigger = data.draw(triggers(situation))
    decision = evaluate(POLICY, situation, trigger, PARTY_NAMES)
    anchor = max(trigger.at, situation.reported_at)
    for spec in decision.obligations:
        assert spec.due_at >= situation.reported_at
        assert spec.due_at == anchor + POLICY.deadlines[spec.deadline_name].duration
    for timer in decision.timers:
        assert timer.fire_at >= situation.reported_at


@PROPERTY
@given(data=st.data(), situation=situations())
def test_the_same_situation_and_trigger_always_decide_the_same(data, situation):
    trigger = data.draw(triggers(situation))
    first = evaluate(POLICY, situation, trigger, PARTY_NAMES)
    rebuilt = Situation(
        UUID(str(situation.incident_id)),
        IncidentFacts.model_validate(situation.facts.model_dump()),
        situation.reporter_party,
        situation.reported_at,
        frozenset(sorted(situation.fired_rules)),
        tuple(situation.prior_signs),
    )
    replayed = Trigger(trigger.name, trigger.at, UUID(str(trigger.event_id)), trigger.actor)
    again = evaluate(POLICY, rebuilt, replayed, PARTY_NAMES)
    assert again == first
    ids = [spec.id for spec in first.obligations]
    assert len(set(ids)) == len(ids)
    # Notify follows the policy's notify actions and whoever did not just tell us.
    for spec in first.obligations:
        assert spec.notify is (POLICY.actions[spec.action].notify or spec.party != trigger.actor)
    # Rules that fire once never fire again.
    assert not {"R2", "R4", "R14"} & situation.fired_rules & set(first.fired_rules)


def starting_rung(view: ObligationView, cause: str) -> PartyKind:
    """The rung of the party the duty is for, whatever the cause, so a duty owned high never
    goes down; a party off the ladder (the police) is pressed through the 司法所 that owes
    the duty, if it does."""
    on_ladder = set(POLICY.ladder.steps) | set(POLICY.ladder.steps.values())
    recipient = party_kind_of(view.party)
    if recipient in on_ladder:
        return recipient
    return PartyKind.SFS if POLICY.actions[view.action].owner == "SFS" else recipient


POLICY_DUTIES = sorted(
    {(duty.party, duty.action) for rule in POLICY.rules for duty in rule.then}
    | {(kind, POLICY.ladder.action) for kind in POLICY.ladder.steps.values()}
)


@st.composite
def obligation_views(draw: st.DrawFn) -> ObligationView:
    township = draw(st.sampled_from(TOWNSHIPS)).code
    # Mostly the (party, action) pairs the policy creates, sometimes any pair at all.
    kind, action = draw(
        st.one_of(
            st.sampled_from(POLICY_DUTIES),
            st.tuples(st.sampled_from(list(PartyKind)), st.sampled_from(sorted(POLICY.actions))),
        )
    )
    party = {
        PartyKind.SFS: f"SFS:{township}",
        PartyKind.TCG: f"TCG:{township}",
        PartyKind.PPS: f"PPS:{township}",
        PartyKind.DEPT: "DEPT:应急管理局",
    }.get(kind, str(kind))
    return ObligationView(
        id=draw(st.uuids()),
        incident_id=draw(st.uuids()),
        rule_id=draw(st.sampled_from(RULE_IDS)),
        plan_section="四",
        party=party,
        action=action,
        action_text=POLICY.actions[action].text,
        deadline_name="IMMEDIATE",
        due_at=draw(moments),
        drill=draw(st.booleans()),
        township_code=township,
    )


def view_of(spec: ObligationSpec, incident_id: UUID, township: str) -> ObligationView:
    return ObligationView(
        spec.id,
        incident_id,
        spec.rule_id,
        spec.plan_section,
        spec.party,
        spec.action,
        spec.action_text,
        spec.deadline_name,
        spec.due_at,
        spec.drill,
        township,
    )


causes = st.sampled_from(["missed", "unacknowledged"])


@PROPERTY
@given(view=obligation_views(), cause=causes, late=offsets)
def test_the_ladder_only_ever_climbs(view, cause, late):
    step = ladder_step(POLICY, view, cause, view.due_at + abs(late), PARTY_NAMES)
    start = starting_rung(view, cause)
    if step is None:
        assert POLICY.ladder.steps.get(start) is None
        return
    assert start in RUNG
    assert RUNG[party_kind_of(step.party)] > RUNG[start]
    assert step.escalated_from == view.id
    assert step.drill is view.drill
    assert step.party in PARTY_NAMES  # a real party of the directory
    assert step == ladder_step(POLICY, view, cause, view.due_at + abs(late), PARTY_NAMES)


@PROPERTY
@given(
    township=st.sampled_from(TOWNSHIPS),
    action=st.sampled_from(
        ["START_FIRST_RESPONSE", "GO_ON_SCENE", "COUNSEL", "FOLLOW_UP_REPORT", "JOIN_RELIEF"]
    ),
    chain=st.lists(causes, min_size=4, max_size=4),
    start=moments,
)
def test_escalations_from_the_sfs_end_within_three_steps(township, action, chain, start):
    incident = UUID(int=1)
    view = ObligationView(
        id=UUID(int=2),
        incident_id=incident,
        rule_id="R1",
        plan_section="四",
        party=f"SFS:{township.code}",
        action=action,
        action_text=POLICY.actions[action].text,
        deadline_name="IMMEDIATE",
        due_at=start,
        drill=False,
        township_code=township.code,
    )
    seen = [view.party]
    at = start
    calls = 0
    for cause in chain:
        at += timedelta(minutes=20)
        calls += 1
        step = ladder_step(POLICY, view, cause, at, PARTY_NAMES)
        if step is None:
            break
        assert step.party not in seen
        assert RUNG[party_kind_of(step.party)] > RUNG[party_kind_of(seen[-1])]
        seen.append(step.party)
        view = view_of(step, incident, township.code)
    else:
        raise AssertionError(f"still escalating after {len(chain)} steps: {seen}")
    assert calls <= 3
    assert seen == [f"SFS:{township.code}", f"TCG:{township.code}", "BLO"]
