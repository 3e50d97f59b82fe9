"""The duty console's pure parts: the board, who hears what live, login state and claims,
origins and CSRF, and the forms' bodies."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from services.console import views
from services.console.handlers import trace_id_of
from services.console.live import LiveEvent, LiveHub, may_hear, township_stated
from services.console.login import (
    LoginRefused,
    LoginState,
    pkce_pair,
    principal_from_claims,
    safe_return_path,
)
from services.console.schemas import ActionForm, FollowUpForm, ReportForm
from services.console.sessions import csrf_matches, same_origin
from shared.domain.access import Principal
from shared.events import CloudEvent
from shared.events.models import EventData
from shared.settings import Settings

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
TUKE, GALUTU = "150626102", "150626100"
SFS_TUKE = Principal("s", f"SFS:{TUKE}", frozenset({"incidents:read"}))
SFS_GALUTU = Principal("g", f"SFS:{GALUTU}", frozenset({"incidents:read"}))
BLO = Principal("b", "BLO", frozenset({"incidents:read"}))


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


# --- the board -----------------------------------------------------------------------------


def test_board_groups_open_incidents_by_township_and_status_and_leaves_finished_ones_out() -> None:
    incidents = [
        {"id": "a", "township_code": TUKE, "township_name": "图克镇", "status": "REPORTED"},
        {"id": "b", "township_code": TUKE, "township_name": "图克镇", "status": "RESPONDING"},
        {"id": "c", "township_code": GALUTU, "township_name": "嘎鲁图镇", "status": "REPORTED"},
        {"id": "d", "township_code": GALUTU, "township_name": "嘎鲁图镇", "status": "CLOSED"},
    ]
    board = views.board(incidents, [], [], NOW)
    assert [row.code for row in board.townships] == [GALUTU, TUKE]
    galutu, tuke = board.townships
    assert [i["id"] for i in galutu.by_status["REPORTED"]] == ["c"]
    assert set(tuke.by_status) == {"REPORTED", "RESPONDING"}
    assert board.open_incidents == 3


def test_board_orders_duties_overdue_first_then_due_soonest_and_shows_met_of_open_incidents() -> (
    None
):
    obligations = [
        {"id": "late", "status": "PENDING", "due_at": at(-5), "incident_id": "a"},
        {"id": "later", "status": "PENDING", "due_at": at(-1), "incident_id": "a"},
        {"id": "soon", "status": "PENDING", "due_at": at(3), "incident_id": "a"},
        {"id": "sooner", "status": "PENDING", "due_at": at(1), "incident_id": "a"},
        {"id": "met", "status": "MET", "due_at": at(1), "met_at": at(-2), "incident_id": "a"},
        {"id": "met-closed", "status": "MET", "due_at": at(1), "incident_id": "closed"},
        {"id": "waived", "status": "WAIVED", "due_at": at(1), "incident_id": "a"},
    ]
    incidents = [{"id": "a", "township_code": TUKE, "status": "REPORTED"}]
    board = views.board(incidents, obligations, [], NOW)
    assert [o["id"] for o in board.overdue] == ["late", "later"]
    assert [o["id"] for o in board.due] == ["sooner", "soon"]
    assert [o["id"] for o in board.met] == ["met"]


def test_board_lists_alerts_awaiting_acknowledgement_oldest_first_and_no_notices() -> None:
    alerts = [
        {"id": "new", "status": "DELIVERED", "created_at": at(2), "kind": "ALERT"},
        {"id": "old", "status": "UNACKNOWLEDGED", "created_at": at(1), "kind": "ALERT"},
        {"id": "done", "status": "ACKNOWLEDGED", "created_at": at(0), "kind": "ALERT"},
        {"id": "notice", "status": "DELIVERED", "created_at": at(0), "kind": "NOTICE"},
    ]
    assert [a["id"] for a in views.board([], [], alerts, NOW).unacknowledged] == ["old", "new"]


def test_a_duty_is_overdue_only_while_pending_and_past_its_due_time() -> None:
    assert views.is_overdue({"status": "PENDING", "due_at": at(-1)}, NOW)
    assert not views.is_overdue({"status": "PENDING", "due_at": at(1)}, NOW)
    assert not views.is_overdue({"status": "MET", "due_at": at(-1)}, NOW)


def test_screens_word_codes_as_people_read_them_in_the_county_zone() -> None:
    from shared.domain.directory import Directory

    settings = Settings()
    screens = views.Screens(settings, Directory.load(settings.directory_file))
    filters = screens.environment.filters
    assert filters["category_name"]("ABSCONDED") == "脱离监督管理"
    assert filters["phase_name"]("IN_PROGRESS") == "正在实施"
    assert filters["party_name"](f"SFS:{TUKE}") == "图克镇司法所"
    assert filters["local_time"]("2026-11-30T08:00:00+00:00") == "2026-11-30 16:00"
    assert filters["duty_status"]("MET") == "已履行"


def test_every_page_forbids_scripts_from_anywhere_but_the_console() -> None:
    assert "script-src 'self'" in views.CSP and "default-src 'self'" in views.CSP
    assert "frame-ancestors 'none'" in views.CSP


# --- who hears what --------------------------------------------------------------------------


def test_a_local_party_hears_of_its_own_township_only_and_the_banner_of_all() -> None:
    assert may_hear(SFS_TUKE, TUKE)
    assert not may_hear(SFS_TUKE, GALUTU)
    assert not may_hear(SFS_TUKE, None)  # not known: only who sees every township
    assert may_hear(BLO, GALUTU) and may_hear(BLO, None)


async def test_the_hub_hands_each_page_only_what_its_user_may_hear() -> None:
    hub = LiveHub()
    tuke, galutu = hub.stream(SFS_TUKE), hub.stream(SFS_GALUTU)
    assert "ready" in await anext(tuke) and "ready" in await anext(galutu)
    hub.publish(LiveEvent("incident.reported", "incidents.v1", "i-tuke", TUKE))
    hub.publish(LiveEvent("incident.reported", "incidents.v1", "i-galutu", GALUTU))
    heard_tuke, heard_galutu = await anext(tuke), await anext(galutu)
    assert '"incident_id": "i-tuke"' in heard_tuke
    assert '"incident_id": "i-galutu"' in heard_galutu
    await tuke.aclose()
    await galutu.aclose()
    assert not hub.listeners


def test_the_township_an_incident_event_states() -> None:
    reported = json.dumps({"facts": {"township_code": TUKE}}).encode()
    corrected = json.dumps({"changes": {"township_code": GALUTU}}).encode()
    assert township_stated("incident.reported", reported) == TUKE
    assert township_stated("incident.report_filed", corrected) == GALUTU
    assert township_stated("incident.report_filed", b'{"changes": {}}') is None
    assert township_stated("incident.action_recorded", reported) is None
    assert township_stated("incident.reported", b"not json") is None


def test_the_trace_of_an_event_is_read_from_its_traceparent() -> None:
    def event(headers: dict[str, str]) -> CloudEvent:
        return CloudEvent.new("test", EventData(), "x", trace_headers=headers)

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(event({"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})) == trace
    assert trace_id_of(event({})) is None
    assert trace_id_of(event({"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"})) is None
    # A trace the sampler dropped (flags 00) has nothing to show.
    assert trace_id_of(event({"traceparent": f"00-{trace}-00f067aa0ba902b7-00"})) is None
    assert trace_id_of(event({"traceparent": f"00-{trace}-00f067aa0ba902b7-zz"})) is None


# --- login -------------------------------------------------------------------------------------


def test_pkce_challenge_is_the_s256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(verifier) <= 128


def test_the_login_state_comes_back_only_as_the_console_signed_it() -> None:
    key, other = b"k" * 32, b"o" * 32
    state = LoginState.new("/incidents/1")
    assert LoginState.open(key, state.seal(key)) == state
    with pytest.raises(LoginRefused):
        LoginState.open(other, state.seal(key))
    body, mac = state.seal(key).rsplit(".", 1)
    with pytest.raises(LoginRefused):
        LoginState.open(key, body[:-2] + "AA." + mac)
    expired = LoginState("s", "n", "v", "/", time.time() - 1)
    with pytest.raises(LoginRefused):
        LoginState.open(key, expired.seal(key))


@pytest.mark.parametrize(
    ("asked", "goes_to"),
    [
        ("/incidents/1?x=2", "/incidents/1?x=2"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_after_login_the_browser_goes_only_to_a_page_of_the_console(
    asked: str | None, goes_to: str
) -> None:
    assert safe_return_path(asked) == goes_to


def test_claims_map_to_a_party_and_the_scopes_of_its_roles() -> None:
    settings = Settings(
        console_oidc_party_map={"tuke-sfs": f"SFS:{TUKE}"},
        console_oidc_role_scopes={"duty": "incidents:read incidents:write", "privacy": "pii:read"},
    )
    principal, name = principal_from_claims(
        {"sub": "u1", "party": "tuke-sfs", "roles": ["duty", "privacy"], "name": "李明"}, settings
    )
    assert principal.party == f"SFS:{TUKE}" and name == "李明"
    assert principal.scopes == {"incidents:read", "incidents:write", "pii:read"}
    assert principal.subject == "oidc:u1"


def test_a_user_without_mapped_roles_gets_the_usual_scopes_of_the_party_and_never_more() -> None:
    principal, _ = principal_from_claims(
        {"sub": "u2", "party": "BLO", "roles": ["admin"]}, Settings()
    )
    assert principal.scopes == {"incidents:write", "incidents:read", "audit:read"}


@pytest.mark.parametrize("claims", [{"sub": "u"}, {"sub": "u", "party": "NOBODY"}])
def test_a_user_whose_claims_name_no_party_gets_no_session(claims: dict) -> None:
    with pytest.raises(LoginRefused):
        principal_from_claims(claims, Settings())


# --- origins and CSRF ----------------------------------------------------------------------------


def test_a_post_from_another_site_is_not_the_consoles() -> None:
    public = "https://sqjz.example"
    assert same_origin("https://sqjz.example", public, "console:8000")
    assert same_origin(None, public, "console:8000")
    assert same_origin("http://127.0.0.1:8000", public, "127.0.0.1:8000")
    assert not same_origin("https://evil.example", public, "sqjz.example")
    assert not same_origin("null", public, "sqjz.example")


def test_csrf_tokens_are_compared_whole() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "ab")
    assert not csrf_matches("abc", None)


# --- forms ---------------------------------------------------------------------------------------


def test_a_first_report_form_speaks_for_the_logged_in_party_only() -> None:
    form = ReportForm.model_validate(
        {
            "category": "VIOLENCE",
            "phase": "IN_PROGRESS",
            "township": "",
            "subject_id": "SQJZ-1",
            "subject_name": "王某某",
            "reporter_name": "李明",
            "summary": "",
            "drill": "true",
            "party": "BLO",  # a field no form has: ignored, the session's party speaks
        }
    )
    body = form.body(SFS_TUKE)
    assert body["reporter"] == {"party": f"SFS:{TUKE}", "name": "李明"}
    assert body["township"] == TUKE
    assert body["drill"] is True and "summary" not in body


def test_an_action_and_a_follow_up_carry_only_what_was_filled_in() -> None:
    action = ActionForm.model_validate({"action": "POLICE_CALLED", "actor_name": "李明", "to": ""})
    assert action.body(SFS_TUKE) == {
        "action": "POLICE_CALLED",
        "party": f"SFS:{TUKE}",
        "actor_name": "李明",
    }
    follow_up = FollowUpForm.model_validate(
        {
            "kind": "FOLLOW_UP",
            "phase": "OCCURRED",
            "category": "",
            "text": "已控制",
            "reporter_name": "李明",
        }
    )
    assert follow_up.body(SFS_TUKE) == {
        "kind": "FOLLOW_UP",
        "reporter": {"party": f"SFS:{TUKE}", "name": "李明"},
        "changes": {"phase": "OCCURRED"},
        "text": "已控制",
    }


def test_a_console_in_production_needs_its_own_key_the_identity_provider_and_https(
    tmp_path,
) -> None:
    from services.console.app import production_gaps

    named = {gap.setting for gap in production_gaps(Settings(deployment_environment="production"))}
    assert named == {
        "CONSOLE_SIGNING_KEY_FILE",
        "CONSOLE_PUBLIC_URL",
        "CONSOLE_OIDC_ISSUER",
        "CONSOLE_OIDC_CLIENT_ID",
    }
    key = tmp_path / "console.pem"
    key.write_text("key")
    ready = Settings(
        deployment_environment="production",
        console_signing_key_file=key,
        console_public_url="https://sqjz.example.gov.cn",
        console_oidc_issuer="https://idp.example.gov.cn",
        console_oidc_client_id="sqjz-console",
    )
    assert production_gaps(ready) == []
