"""Routes of the console: pages, forms, login and the live stream.

Every page and form needs a session (a login); every form and script POST its CSRF token.
What a page shows it reads from the services as the user; what a form does it asks of them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import ValidationError
from sqlalchemy import select

from services.console import views
from services.console.gateway import ServiceAnswer, ServiceGateway
from services.console.login import (
    LOGIN_COOKIE,
    LOGIN_SECONDS,
    LoginRefused,
    LoginState,
    principal_from_claims,
    safe_return_path,
)
from services.console.models import incident_places
from services.console.schemas import (
    AccountabilityForm,
    AcknowledgeForm,
    ActionForm,
    FollowUpForm,
    Form,
    LinkForm,
    LocalLoginForm,
    ReportForm,
    ReviewForm,
)
from services.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    ConsoleSession,
    SessionStore,
    csrf_matches,
    same_origin,
)
from services.console.traces import (
    ExportRefused,
    TraceStore,
    spans_of_export,
    trace_link,
    unpacked_body,
    waterfall,
)
from shared.domain.access import DEFAULT_SCOPES, PII_READ, Principal, may_be_principal
from shared.observability import IncidentRoute
from shared.problems import Problem

log = logging.getLogger(__name__)
router = APIRouter(tags=["console"], route_class=IncidentRoute)
# Only built into the app where CONSOLE_TRACE_RECEIVER is on (a local run).
trace_receiver = APIRouter(tags=["traces"], route_class=IncidentRoute)
OTLP_PROTOBUF = "application/x-protobuf"
FormT = TypeVar("FormT", bound=Form)


class LoginRequired(Exception):
    """No session: a page sends the browser to the login, a script gets a 401."""


# --- sessions, CSRF ----------------------------------------------------------------------------


async def optional_session(request: Request) -> ConsoleSession | None:
    store: SessionStore = request.app.state.sessions
    return await store.find(request.cookies.get(SESSION_COOKIE))


async def required_session(request: Request) -> ConsoleSession:
    session = await optional_session(request)
    if session is None:
        raise LoginRequired()
    request.state.console_session = session
    return session


User = Annotated[ConsoleSession, Depends(required_session)]


def from_this_site(request: Request) -> None:
    """Refuse a POST whose `Origin` is another site's (sessions.same_origin)."""
    if not same_origin(
        request.headers.get("origin"),
        request.app.state.settings.console_public_url,
        request.headers.get("host"),
    ):
        raise Problem(403, "Forbidden", "a form of another site", kind="csrf")


async def form_of(request: Request, session: ConsoleSession, model: type[FormT]) -> FormT:
    """The posted form, once its origin and CSRF token are the session's own."""
    from_this_site(request)
    raw = dict(await request.form())
    given = raw.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_matches(session.csrf_token, str(given) if given is not None else None):
        raise Problem(403, "Forbidden", "the form's CSRF token is missing or wrong", kind="csrf")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise Problem(422, "Unprocessable form", str(error), kind="validation-error") from error


def gateway(request: Request) -> ServiceGateway:
    return request.app.state.gateway


def screens(request: Request) -> views.Screens:
    return request.app.state.screens


def page(
    request: Request, template: str, session: ConsoleSession | None, **context: Any
) -> HTMLResponse:
    fragment = request.headers.get("x-fragment") == "1"
    return screens(request).render(
        template,
        request=request,
        session=session,
        user=session.principal if session else None,
        fragment=fragment,
        local_login=request.app.state.local_login,
        **context,
    )


def back_to(path: str, message: str | None = None, error: str | None = None) -> RedirectResponse:
    """After a form: back to a page (303, so a reload does not post again), with what happened."""
    query = []
    if message:
        query.append(f"said={quote(message)}")
    if error:
        query.append(f"error={quote(error)}")
    return RedirectResponse(path + ("?" + "&".join(query) if query else ""), status_code=303)


# --- login ------------------------------------------------------------------------------------


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, path: str
) -> None:
    """The console's cookies: never read by scripts, sent on top-level navigation only, and
    over https only where the console is served on https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        secure=request.app.state.settings.console_public_url.startswith("https://"),
        samesite="lax",
        path=path,
    )


@router.get("/login", summary="Log in: the identity provider, or locally a party to choose")
async def login(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    if request.app.state.oidc is not None:
        state = LoginState.new(next)
        response = RedirectResponse(
            await request.app.state.oidc.authorization_url(state), status_code=303
        )
        _set_cookie(
            request,
            response,
            LOGIN_COOKIE,
            state.seal(request.app.state.login_key),
            LOGIN_SECONDS,
            "/login",
        )
        return response
    if not request.app.state.local_login:
        return page(
            request,
            "problem.html",
            None,
            title="无法登录",
            detail="未配置身份认证服务（CONSOLE_OIDC_ISSUER）。",
            status_code=503,
        )
    parties = [p for p in request.app.state.directory.parties if p.kind in DEFAULT_SCOPES]
    return page(request, "login.html", None, parties=parties, next=safe_return_path(next))


@router.post("/login/local", summary="Local login (only while the development key is in use)")
async def login_locally(request: Request) -> Response:
    if not request.app.state.local_login:
        raise Problem(404, "Not Found", kind="not-found")
    from_this_site(request)
    form = LocalLoginForm.model_validate(dict(await request.form()))
    if not may_be_principal(form.party):
        return back_to("/login", error="请选择单位")
    kind = form.party.split(":", 1)[0]
    scopes = set(DEFAULT_SCOPES.get(kind, ()))
    if form.personal_data:
        scopes.add(PII_READ)
    principal = Principal(f"local:{secrets.token_hex(4)}", form.party, frozenset(scopes))
    return await _open_session(request, principal, form.name or form.party, "local", form.next)


@router.get("/login/callback", summary="The identity provider sends the browser back here")
async def login_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    oidc = request.app.state.oidc
    if oidc is None:
        raise Problem(404, "Not Found", kind="not-found")
    try:
        if error:
            raise LoginRefused(f"身份认证服务未允许登录（{error}）")
        login_state = LoginState.open(
            request.app.state.login_key, request.cookies.get(LOGIN_COOKIE)
        )
        if not code or not state or not secrets.compare_digest(state, login_state.state):
            raise LoginRefused("登录状态不符，请重新登录")
        claims = await oidc.claims_for(code, login_state)
        principal, name = principal_from_claims(claims, request.app.state.settings)
    except LoginRefused as refusal:
        return page(
            request, "problem.html", None, title="无法登录", detail=str(refusal), status_code=403
        )
    response = await _open_session(request, principal, name, "oidc", login_state.return_to)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


async def _open_session(
    request: Request, principal: Principal, name: str, method: str, return_to: str | None
) -> Response:
    store: SessionStore = request.app.state.sessions
    await store.close(request.cookies.get(SESSION_COOKIE))
    value, session = await store.open(principal, name, method)
    response = RedirectResponse(safe_return_path(return_to), status_code=303)
    max_age = int((session.expires_at - datetime.now(UTC)).total_seconds())
    _set_cookie(request, response, SESSION_COOKIE, value, max_age, "/")
    log.info("login %s as %s (%s)", principal.subject, principal.party, method)
    return response


@router.post("/logout", summary="Log out")
async def logout(request: Request, session: User) -> Response:
    await form_of(request, session, Form)
    await request.app.state.sessions.close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- live -------------------------------------------------------------------------------------


@router.get("/live", summary="Server-sent events: which incidents the user may see changed")
async def live(request: Request, session: User) -> StreamingResponse:
    return StreamingResponse(
        request.app.state.hub.stream(session.principal),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- reading ----------------------------------------------------------------------------------


async def _all_pages(
    request: Request, user: Principal, service: str, path: str, cap: int = 1000, **params: Any
) -> list[dict[str, Any]]:
    """Every item of a paged list, up to `cap` (a board is for what is open now)."""
    items: list[dict[str, Any]] = []
    after = None
    while len(items) < cap:
        answer = await gateway(request).get(user, service, path, limit=500, after=after, **params)
        items.extend(answer.get("items", []))
        after = answer.get("next")
        if not after:
            break
    return items


async def _gather_or_errors(**calls: Any) -> tuple[dict[str, Any], list[str]]:
    """Run the service calls together; a refused or failed one leaves its part empty and
    says why, rather than leave the whole page blank."""
    names = list(calls)
    results = await asyncio.gather(*calls.values(), return_exceptions=True)
    found: dict[str, Any] = {}
    errors: list[str] = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, ServiceAnswer):
            found[name] = None
            if result.status != 403:
                errors.append(f"{name}: {result.detail}")
        elif isinstance(result, BaseException):
            raise result
        else:
            found[name] = result
    return found, errors


# Met duties are shown for this many of the newest open incidents (read incident by incident).
BOARD_INCIDENTS_WITH_MET_DUTIES = 30


@router.get("/", summary="The duty board")
async def board(request: Request, session: User) -> HTMLResponse:
    user = session.principal
    found, errors = await _gather_or_errors(
        incidents=_all_pages(
            request, user, "intake", "/v1/incidents", cap=500, status=list(views.OPEN_STATUSES)
        ),
        obligations=_all_pages(
            request, user, "escalation", "/v1/obligations", status=["PENDING", "MISSED"]
        ),
        alerts=_all_pages(
            request, user, "notification", "/v1/notifications", cap=500, status="NOT_ACKNOWLEDGED"
        ),
    )
    incidents = found["incidents"] or []
    each, more_errors = await _gather_or_errors(
        **{
            str(incident["id"]): gateway(request).get(
                user, "escalation", f"/v1/incidents/{incident['id']}/obligations", limit=500
            )
            for incident in incidents[:BOARD_INCIDENTS_WITH_MET_DUTIES]
        }
    )
    of_incidents = [
        {**duty, "incident_id": incident_id}
        for incident_id, answer in each.items()
        for duty in (answer or {}).get("obligations", [])
    ]
    shown = views.board(
        incidents,
        [*(found["obligations"] or []), *of_incidents],
        found["alerts"] or [],
        datetime.now(UTC),
    )
    return page(
        request, "board.html", session, board=shown, errors=errors + more_errors, live="board"
    )


@router.get("/duties", summary="My duties: what the logged-in party must do")
async def my_duties(request: Request, session: User) -> HTMLResponse:
    user = session.principal
    found, errors = await _gather_or_errors(
        obligations=_all_pages(request, user, "escalation", "/v1/obligations", party=user.party),
        alerts=_all_pages(
            request,
            user,
            "notification",
            "/v1/notifications",
            party=user.party,
            status="NOT_ACKNOWLEDGED",
        ),
    )
    obligations = found["obligations"] or []
    now = datetime.now(UTC)
    pending = sorted(
        (o for o in obligations if o.get("status") == views.OPEN_OBLIGATION),
        key=lambda o: o.get("due_at") or "",
    )
    done = [o for o in obligations if o.get("status") != views.OPEN_OBLIGATION]
    return page(
        request,
        "duties.html",
        session,
        pending=pending,
        done=done[-50:],
        alerts=found["alerts"] or [],
        overdue=[o for o in pending if views.is_overdue(o, now)],
        errors=errors,
        live="board",
    )


@router.get("/incidents/new", summary="The form of a first report (首报)")
async def new_incident(request: Request, session: User) -> HTMLResponse:
    return page(request, "report.html", session, values={})


def _refused(
    request: Request,
    session: ConsoleSession,
    answer: ServiceAnswer,
    title: str,
    status_code: int | None = None,
) -> HTMLResponse:
    """The page for what a service would not show the user, and why (with the service's
    status unless told otherwise)."""
    return page(
        request,
        "problem.html",
        session,
        title=title,
        detail=answer.detail,
        status_code=status_code or answer.status,
    )


def _incident_refused(
    request: Request, session: ConsoleSession, answer: ServiceAnswer
) -> HTMLResponse:
    """An incident intake would not show the user: not theirs, or not there."""
    return _refused(
        request,
        session,
        answer,
        "无法查看此事件" if answer.status == 403 else "未找到此事件",
        answer.status if answer.status in (403, 404) else 502,
    )


@router.get("/incidents/{incident_id}", summary="One incident, everything about it")
async def incident_page(incident_id: UUID, request: Request, session: User) -> HTMLResponse:
    user = session.principal
    path = f"/v1/incidents/{incident_id}"
    try:
        incident = await gateway(request).get(user, "intake", path)
    except ServiceAnswer as answer:
        return _incident_refused(request, session, answer)
    found, errors = await _gather_or_errors(
        obligations=gateway(request).get(user, "escalation", f"{path}/obligations", limit=500),
        alerts=_all_pages(
            request, user, "notification", "/v1/notifications", incident_id=str(incident_id)
        ),
        proofs=gateway(request).get(user, "audit", f"{path}/proofs", limit=500),
        timeline=gateway(request).get(user, "audit", f"{path}/timeline", limit=500),
        candidates=gateway(request).get(user, "intake", f"{path}/candidates"),
        findings=gateway(request).get(user, "audit", f"{path}/findings"),
        # The log's verifier key: the browser checks the checkpoint's signature with it.
        log_key=gateway(request).get_text(user, "audit", "/v1/log/key"),
    )
    trace_url = await _trace_url(request, incident_id)
    return page(
        request,
        "incident.html",
        session,
        incident=incident,
        obligations=(found["obligations"] or {}).get("obligations", []),
        alerts=found["alerts"] or [],
        proofs=found["proofs"],
        timeline=(found["timeline"] or {}).get("entries", []),
        candidates=(found["candidates"] or {}).get("items", []),
        findings=_findings_of(found["findings"]),
        log_key=(found["log_key"] or "").strip(),
        trace_url=trace_url,
        errors=errors,
        live="incident",
        live_incident=str(incident_id),
    )


def _findings_of(answer: Any) -> list[dict[str, Any]]:
    if not answer:
        return []
    return answer.get("findings") or answer.get("items") or []


async def _trace_id_of(request: Request, incident_id: UUID) -> str | None:
    """The trace of the report that opened the incident (handlers.py keeps it)."""
    async with request.app.state.runtime.sessions() as db:
        return (
            await db.execute(
                select(incident_places.c.trace_id).where(
                    incident_places.c.incident_id == incident_id
                )
            )
        ).scalar_one_or_none()


async def _trace_url(request: Request, incident_id: UUID) -> str | None:
    template = request.app.state.settings.console_trace_url_template
    receiving = request.app.state.traces is not None
    if template is None and not receiving:
        return None
    trace_id = await _trace_id_of(request, incident_id)
    return trace_link(template, receiving, str(incident_id), trace_id)


@router.get("/incidents/{incident_id}/trace", summary="The waterfall of the incident's trace")
async def trace_page(incident_id: UUID, request: Request, session: User) -> HTMLResponse:
    store: TraceStore | None = request.app.state.traces
    if store is None:
        raise Problem(404, "Not Found", "this console receives no spans", kind="not-found")
    try:
        # Whoever may not read the incident may not read how it travelled either.
        incident = await gateway(request).get(
            session.principal, "intake", f"/v1/incidents/{incident_id}"
        )
    except ServiceAnswer as answer:
        return _incident_refused(request, session, answer)
    trace_id = await _trace_id_of(request, incident_id)
    shown = waterfall(trace_id, store.with_linked(trace_id)) if trace_id else None
    return page(
        request,
        "trace.html",
        session,
        incident=incident,
        trace_id=trace_id,
        waterfall=shown,
        live="incident",
        live_incident=str(incident_id),
    )


@trace_receiver.post(
    "/v1/traces", summary="OTLP/HTTP: spans of this run's services", include_in_schema=False
)
async def receive_spans(request: Request) -> Response:
    """Takes the spans the services' OTLP exporters send (protobuf, maybe gzipped)."""
    store: TraceStore = request.app.state.traces
    if request.headers.get("content-type", "").split(";")[0].strip() != OTLP_PROTOBUF:
        raise Problem(
            415, "Unsupported Media Type", f"send {OTLP_PROTOBUF}", kind="validation-error"
        )
    try:
        body = unpacked_body(await request.body(), request.headers.get("content-encoding"))
        store.add(spans_of_export(body))
    except ExportRefused as refused:
        raise Problem(
            refused.status, "Export refused", refused.detail, kind="validation-error"
        ) from refused
    return Response(ExportTraceServiceResponse().SerializeToString(), media_type=OTLP_PROTOBUF)


@router.get("/findings", summary="Findings of the audit, with confirm and dismiss")
async def findings_page(
    request: Request,
    session: User,
    review_status: Annotated[str | None, Query(max_length=20)] = None,
) -> HTMLResponse:
    try:
        answer = await gateway(request).get(
            session.principal, "audit", "/v1/findings", review_status=review_status, limit=200
        )
    except ServiceAnswer as refused:
        return _refused(request, session, refused, "无法查看")
    return page(
        request,
        "findings.html",
        session,
        findings=_findings_of(answer),
        review_status=review_status or "",
        live="board",
    )


@router.get("/incidents/{incident_id}/investigation", summary="Investigation report and R15")
async def investigation_page(incident_id: UUID, request: Request, session: User) -> HTMLResponse:
    user = session.principal
    path = f"/v1/incidents/{incident_id}"
    found, errors = await _gather_or_errors(
        report=gateway(request).get_text(
            user, "audit", f"{path}/investigation-report", format="markdown"
        ),
        records=gateway(request).get(user, "audit", f"{path}/accountability"),
    )
    return page(
        request,
        "investigation.html",
        session,
        incident_id=str(incident_id),
        report=found["report"],
        records=(found["records"] or {}).get("records", []),
        errors=errors,
    )


@router.get("/drills", summary="R16: drill compliance per 司法所")
async def drills_page(
    request: Request,
    session: User,
    year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
) -> HTMLResponse:
    year = year or datetime.now(request.app.state.settings.county_zone).year
    try:
        answer = await gateway(request).get(
            session.principal, "escalation", "/v1/drills/compliance", year=year
        )
    except ServiceAnswer as refused:
        return _refused(request, session, refused, "无法查看")
    return page(request, "drills.html", session, compliance=answer, year=year)


# --- acting -----------------------------------------------------------------------------------


async def _act(
    request: Request,
    session: ConsoleSession,
    service: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[Any, str | None]:
    try:
        return await gateway(request).post(session.principal, service, path, body, headers), None
    except ServiceAnswer as refused:
        return None, refused.detail


@router.post("/incidents", summary="File a first report (首报)")
async def report_incident(request: Request, session: User) -> Response:
    form = await form_of(request, session, ReportForm)
    created, error = await _act(
        request,
        session,
        "intake",
        "/v1/incidents",
        form.body(session.principal),
        headers={"Idempotency-Key": form.csrf_token[:16] + secrets.token_hex(8)},
    )
    if error:
        return page(
            request,
            "report.html",
            session,
            values=form.model_dump(),
            error=error,
            status_code=422,
        )
    return back_to(f"/incidents/{created['id']}", message="首报已提交")


async def _act_then_back(
    request: Request,
    session: ConsoleSession,
    service: str,
    path: str,
    body: dict[str, Any],
    back: str,
    said: str,
) -> Response:
    """Ask `service` to do what the form says, then back to `back` saying `said`, or why not."""
    _, error = await _act(request, session, service, path, body)
    return back_to(back, message=None if error else said, error=error)


@router.post("/incidents/{incident_id}/actions", summary="Record an action")
async def record_action(incident_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, ActionForm)
    return await _act_then_back(
        request,
        session,
        "intake",
        f"/v1/incidents/{incident_id}/actions",
        form.body(session.principal),
        f"/incidents/{incident_id}",
        "处置情况已记录",
    )


@router.post("/incidents/{incident_id}/reports", summary="File a 续报 or a correction")
async def file_report(incident_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, FollowUpForm)
    return await _act_then_back(
        request,
        session,
        "intake",
        f"/v1/incidents/{incident_id}/reports",
        form.body(session.principal),
        f"/incidents/{incident_id}",
        "续报已提交" if form.kind == "FOLLOW_UP" else "更正已提交",
    )


@router.post("/incidents/{incident_id}/links", summary="Link, merge or unlink (R20)")
async def link(incident_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, LinkForm)
    return await _act_then_back(
        request,
        session,
        "intake",
        f"/v1/incidents/{incident_id}/links",
        form.body(session.principal),
        f"/incidents/{incident_id}",
        "已处理",
    )


@router.post("/notifications/{notification_id}/acknowledge", summary="Acknowledge an alert")
async def acknowledge(notification_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, AcknowledgeForm)
    return await _act_then_back(
        request,
        session,
        "notification",
        f"/v1/notifications/{notification_id}/acknowledgement",
        {},
        safe_return_path(form.return_to or "/duties"),
        "已确认收悉",
    )


@router.post("/findings/{finding_id}/review", summary="Confirm or dismiss a finding")
async def review_finding(finding_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, ReviewForm)
    return await _act_then_back(
        request,
        session,
        "audit",
        f"/v1/findings/{finding_id}/review",
        form.body(),
        "/findings",
        "审查结论已记录",
    )


@router.post("/incidents/{incident_id}/accountability", summary="Record R15 accountability")
async def record_accountability(incident_id: UUID, request: Request, session: User) -> Response:
    form = await form_of(request, session, AccountabilityForm)
    return await _act_then_back(
        request,
        session,
        "audit",
        f"/v1/incidents/{incident_id}/accountability",
        form.body(),
        f"/incidents/{incident_id}/investigation",
        "已记录",
    )
