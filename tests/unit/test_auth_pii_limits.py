"""Token verification, personal-data sealing and the request limits; pure, no servers."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import jwt
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from jwt.algorithms import RSAAlgorithm
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr

from shared.auth import TokenVerifier, ensure_dev_keys, mint
from shared.domain.facts import event_facts
from shared.events.models import IncidentReported, Reporter
from shared.limits import RequestLimitsMiddleware, TokenBuckets, caller_of
from shared.pii import SUBJECTS, PersonalDataKeyError, PiiCipher, new_key, sealed_subjects
from shared.problems import Problem
from shared.settings import Settings


@pytest.fixture
def keys(tmp_path):
    private, jwks = ensure_dev_keys(tmp_path)
    settings = Settings(auth_jwks_file=jwks)
    return private.read_bytes(), TokenVerifier.from_settings(settings), settings


def token(private: bytes, settings: Settings, party: str = "SFS:150626102", **overrides) -> str:
    return mint(
        private, party, issuer=settings.auth_issuer, audience=settings.auth_audience, **overrides
    )


def test_a_minted_token_names_its_party_and_usual_scopes(keys):
    private, verifier, settings = keys
    principal = verifier.verify(token(private, settings))
    assert principal.party == "SFS:150626102"
    assert principal.township == "150626102"
    assert principal.scopes == {"incidents:write", "incidents:read", "audit:read"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"ttl_seconds": -10}, "expired"),
        ({"key_id": "someone-else"}, "key id"),
    ],
)
def test_bad_tokens_are_refused_with_401(keys, change, why):
    private, verifier, settings = keys
    with pytest.raises(Problem) as refused:
        verifier.verify(token(private, settings, **change))
    assert refused.value.status == 401 and why in (refused.value.detail or "")


def test_a_token_for_another_audience_or_from_another_key_is_refused(keys, tmp_path):
    private, verifier, settings = keys
    elsewhere = token(private, settings.model_copy(update={"auth_audience": "other"}))
    with pytest.raises(Problem):
        verifier.verify(elsewhere)
    other_private, _ = ensure_dev_keys(tmp_path / "other")
    with pytest.raises(Problem):
        verifier.verify(token(other_private.read_bytes(), settings))
    tampered = token(private, settings)[:-4] + "AAAA"
    with pytest.raises(Problem):
        verifier.verify(tampered)


def test_a_token_whose_algorithm_does_not_fit_its_key_is_refused_with_401(keys, tmp_path):
    """An RS256 token under the id of an Ed25519 key, and the other way round, once made the
    verifier raise a TypeError (a 500)."""
    private, verifier, settings = keys
    rsa_key = generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(
        token(private, settings), options={"verify_signature": False}, algorithms=["EdDSA"]
    )
    for forged in (
        jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "local-dev"}),
        jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": "local-dev"}),
        jwt.encode(claims, None, algorithm="none", headers={"kid": "local-dev"}),
    ):
        with pytest.raises(Problem) as refused:
            verifier.verify(forged)
        assert refused.value.status == 401
        assert "does not fit its key" in (refused.value.detail or "")
    public = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks = tmp_path / "rsa.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "local-dev", "alg": "RS256"}]}))
    rsa_verifier = TokenVerifier.from_settings(Settings(auth_jwks_file=jwks))
    with pytest.raises(Problem) as refused:
        rsa_verifier.verify(token(private, settings))  # EdDSA under the RSA key's id
    assert refused.value.status == 401


def test_a_token_minted_to_live_longer_than_allowed_is_refused(keys):
    private, verifier, settings = keys
    assert verifier.max_lifetime_seconds == settings.auth_max_token_seconds == 12 * 3600
    assert verifier.verify(token(private, settings, ttl_seconds=12 * 3600)).party
    with pytest.raises(Problem) as refused:
        verifier.verify(token(private, settings, ttl_seconds=12 * 3600 + 60))
    assert refused.value.status == 401 and "lives longer" in (refused.value.detail or "")


def test_a_token_without_a_valid_party_is_refused(keys):
    private, verifier, settings = keys
    with pytest.raises(Problem):
        verifier.verify(token(private, settings, party="NOBODY"))


def test_rs256_keys_from_a_jwks_are_accepted(tmp_path):
    key = generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**public, "kid": "rsa-1", "alg": "RS256"}]}))
    settings = Settings(auth_jwks_file=jwks)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signed = token(pem, settings, party="BLO", key_id="rsa-1")
    assert jwt.get_unverified_header(signed)["alg"] == "RS256"
    assert TokenVerifier.from_settings(settings).verify(signed).party == "BLO"


def test_a_verified_token_is_remembered_until_it_expires(keys):
    private, verifier, settings = keys
    # The claims count whole seconds: a token of one second minted late in a second expired
    # before its first check. Three leave at least two, however busy the machine.
    short = token(private, settings, ttl_seconds=3)
    first = verifier.verify(short)
    assert verifier.verify(short) is first  # remembered: no second signature check
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    while time.time() < expires:  # the token's own clock, not the machine's speed
        time.sleep(0.05)
    with pytest.raises(Problem) as refused:
        verifier.verify(short)
    assert refused.value.status == 401 and "expired" in (refused.value.detail or "")


def test_only_so_many_tokens_are_remembered_and_made_up_ones_never(keys):
    private, verifier, settings = keys
    small = TokenVerifier(verifier.keys, verifier.issuer, verifier.audience, remembered=2)
    tokens = [token(private, settings, subject=f"officer-{n}") for n in range(3)]
    for each in tokens:
        small.verify(each)
    assert list(small._verified) == tokens[1:]
    with pytest.raises(Problem):
        small.verify(tokens[0][:-4] + "AAAA")
    assert list(small._verified) == tokens[1:]


def test_without_keys_nobody_is_verified():
    verifier = TokenVerifier.from_settings(Settings(auth_jwks_file=None))
    with pytest.raises(Problem):
        verifier.verify("e30.e30.sig")


def cipher(*ids: str, current: str | None = None) -> PiiCipher:
    return PiiCipher.from_settings(
        Settings(
            pii_keys={key_id: SecretStr(KEYS[key_id]) for key_id in ids},
            pii_current_key_id=current,
        )
    )


KEYS = {"k1": new_key(), "k2": new_key()}
FACTS = {"category": "VIOLENCE", "subjects": [{"id": "S1", "name": "王某某", "id_number": "1"}]}


def test_subjects_are_sealed_with_the_key_id_beside_them():
    sealed = cipher("k1").seal_subjects(FACTS)
    assert "王某某" not in json.dumps(sealed, ensure_ascii=False)
    assert sealed["subjects"]["sealed"]["kid"] == "k1"
    assert sealed["category"] == "VIOLENCE"
    assert cipher("k1").open_subjects(sealed) == FACTS


def test_old_rows_stay_readable_after_rotation_and_say_they_need_resealing():
    sealed_with_k1 = cipher("k1").seal_subjects(FACTS)
    rotated = cipher("k1", "k2", current="k2")
    assert rotated.open_subjects(sealed_with_k1) == FACTS
    assert rotated.needs_resealing(sealed_with_k1)
    assert not rotated.needs_resealing(rotated.seal_subjects(FACTS))


def test_a_value_of_its_own_column_is_sealed_under_the_columns_name_and_resealed_on_rotation():
    sealer = cipher("k1")
    sealed = sealer.seal_value("已联系王某某家属", "note")
    assert "王某某" not in json.dumps(sealed, ensure_ascii=False)
    assert sealer.seal_value(None, "note") is None
    assert sealer.open_value(sealed, "note") == "已联系王某某家属"
    with pytest.raises(InvalidTag):  # a note moved into the actor's name does not open
        sealer.open_value(sealed, "actor_name")
    rotated = cipher("k1", "k2", current="k2")
    assert rotated.value_needs_resealing(sealed)
    assert rotated.value_needs_resealing("clear text left behind")
    assert not rotated.value_needs_resealing(None)
    resealed = rotated.resealed_value(sealed, "note")
    assert resealed["sealed"]["kid"] == "k2"
    assert not rotated.value_needs_resealing(resealed)
    assert rotated.open_value(resealed, "note") == "已联系王某某家属"


def test_a_reporters_phone_is_sealed_and_rotation_reseals_only_what_was_sealed():
    reporter = {"party": "SFS:150626102", "name": "李明", "phone": "13912345678"}
    sealed = cipher("k1").seal_reporter(reporter)
    assert sealed["party"] == "SFS:150626102" and sealed["name"] == "李明"
    assert "13912345678" not in json.dumps(sealed)
    rotated = cipher("k1", "k2", current="k2")
    assert rotated.needs_resealing(sealed)
    again = rotated.resealed_fields(sealed)
    assert again["phone"]["sealed"]["kid"] == "k2" and again["name"] == "李明"
    assert rotated.open_subjects(again) == reporter
    assert cipher("k1").seal_reporter({"party": "BLO", "name": "值班员"}) == {
        "party": "BLO",
        "name": "值班员",
    }


def test_a_ciphertext_moved_to_another_context_or_altered_does_not_open():
    sealer = cipher("k1")
    envelope = sealer.seal("secret", "subjects")
    with pytest.raises(InvalidTag):
        sealer.open(envelope, "something else")
    altered = {**envelope, "ct": base64.b64encode(b"x" * 40).decode()}
    with pytest.raises(InvalidTag):
        sealer.open(altered, "subjects")


def test_missing_keys_refuse_to_seal_and_short_keys_stop_the_start():
    unkeyed = PiiCipher.from_settings(Settings())
    assert unkeyed.readiness != "ok"
    with pytest.raises(PersonalDataKeyError):
        unkeyed.seal_subjects(FACTS)
    with pytest.raises(PersonalDataKeyError):
        PiiCipher.from_settings(Settings(pii_keys={"k": SecretStr("c2hvcnQ=")}))


def test_token_buckets_limit_each_caller_on_its_own():
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0
    now[0] = 1.0
    assert buckets.take("a") == 0.0


def test_buckets_are_bounded_a_new_caller_evicts_the_one_seen_longest_ago():
    now = [0.0]
    buckets = TokenBuckets(rate=1.0, burst=1, clock=lambda: now[0], capacity=3)
    buckets.take("throttled")
    assert buckets.take("throttled") > 0
    for caller in ("a", "b"):
        buckets.take(caller)
    assert buckets.take("throttled") > 0  # seen again: now the newest, kept
    buckets.take("c")  # evicts "a", the one seen longest ago
    assert len(buckets) == 3
    assert buckets.take("throttled") > 0
    for number in range(100_000):
        buckets.take(f"new-{number}")
    assert len(buckets) == 3


def scope_with(authorization: str | None, client: str = "10.1.2.3") -> dict:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return {"type": "http", "headers": headers, "client": (client, 5000)}


def test_a_bucket_is_the_verified_principals_and_a_made_up_token_is_no_new_caller(keys):
    private, verifier, settings = keys
    good = token(private, settings, party="BLO", subject="duty-officer-1")
    scope = scope_with(f"Bearer {good}")
    assert caller_of(scope, verifier) == "principal:BLO/duty-officer-1"
    assert scope["state"]["principal"].party == "BLO"  # authenticate need not verify again
    for forged in (f"Bearer {uuid.uuid4().hex}", f"Bearer {good[:-4]}AAAA", "Basic abc"):
        forged_scope = scope_with(forged)
        assert caller_of(forged_scope, verifier) == "address:10.1.2.3"
        assert "state" not in forged_scope
    assert caller_of(scope_with(None, "10.9.9.9"), verifier) == "address:10.9.9.9"


async def test_made_up_tokens_leave_no_bucket_of_their_own(
    keys,
):
    """The edge under attack: every request with a made-up bearer token. Each is refused
    (401, or 429 once its address has spent its burst) and none leaves a bucket of its own.
    `make bench` sends 100,000 to a running intake and measures its RSS (bench/edge.py)."""
    _, verifier, _ = keys

    async def application(scope, receive, send) -> None:  # authentication refuses it
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limits = RequestLimitsMiddleware(application, max_body_bytes=1024, rate=1.0, burst=1)
    app_state = SimpleNamespace(state=SimpleNamespace(token_verifier=verifier))
    sent: list[int] = []

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    async def receive():
        return {"type": "http.request", "body": b""}

    limits.buckets.take("address:10.1.2.3")  # the address has spent its burst: 429s
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):
            scope = {
                **scope_with(f"Bearer {uuid.uuid4().hex}.{uuid.uuid4().hex}"),
                "method": "GET",
                "path": "/v1/incidents",
                "query_string": b"",
                "app": app_state,
            }
            await limits(scope, receive, send)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert set(sent) <= {401, 429} and len(sent) == 10_000
    assert len(limits.buckets) == 1
    assert grown < 512 * 1024, grown  # a bucket per token would be megabytes


def test_the_subjects_sealed_at_rest_travel_on_the_event_and_open_only_with_the_key():
    facts = {
        "category": "VIOLENCE",
        "phase": "IN_PROGRESS",
        "township_code": "150626102",
        "township_name": "图克镇",
        "subjects": [{"id": "S1", "name": "王某某", "id_number": "150626199001011234"}],
        "drill": False,
    }
    sealed_facts = cipher("k1").seal_subjects(facts)
    event = IncidentReported(
        incident_id=uuid.uuid4(),
        facts=event_facts(facts),
        reporter=Reporter(party="SFS:150626102", name="李明"),
        reported_at=datetime.now(UTC),
        sealed_subjects=sealed_subjects(sealed_facts),
    )
    published = event.model_dump_json()
    assert "王某某" not in published and "150626199001011234" not in published
    received = IncidentReported.model_validate_json(published)
    assert received.sealed_subjects is not None
    assert received.sealed_subjects.model_dump() == sealed_facts["subjects"]["sealed"]
    opened = cipher("k1", "k2", current="k2").open(received.sealed_subjects.model_dump(), SUBJECTS)
    assert opened == facts["subjects"]
    with pytest.raises(PersonalDataKeyError):
        cipher("k2").open(received.sealed_subjects.model_dump(), SUBJECTS)
    assert sealed_subjects(facts) is None  # facts not sealed: nothing to carry


def test_no_query_string_reaches_a_span():
    """Robot keys (WeCom `key=`, DingTalk `access_token=`, `sign=`) and acknowledgement tokens
    travel in query strings: every URL attribute is overwritten as the span starts, whichever
    instrumentation set it."""
    from opentelemetry.sdk.trace import TracerProvider

    from shared.telemetry import RedactUrls

    provider = TracerProvider()
    provider.add_span_processor(RedactUrls())
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "POST",
        attributes={
            "url.full": "https://oapi.dingtalk.com/robot/send?access_token=abc&sign=xyz",
            "http.url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key",
            "http.target": "/v1/notifications/1/ack?token=secret",
            "url.query": "token=secret",
        },
    ) as span:
        shown = json.dumps(dict(span.attributes))
    for secret in ("abc", "xyz", "robot-key", "secret"):
        assert secret not in shown
    assert span.attributes["http.target"] == "/v1/notifications/1/ack?[redacted]"


async def test_server_spans_are_named_by_route_redacted_and_none_for_probes():
    """The services' server spans are `ServerSpans`' (FastAPI's own telemetry is off): one per
    request, named by the route FastAPI chose, its query redacted, an escaping exception
    recorded as the server error it is; none for health probes."""
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared.telemetry import RedactUrls, ServerSpans, server_telemetry

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(RedactUrls())
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = FastAPI(telemetry={**server_telemetry(), "tracer_provider": provider})
    app.add_middleware(ServerSpans, tracer_provider=provider)

    @app.get("/v1/alerts/{alert_id}/ack")
    async def ack(alert_id: str) -> dict[str, str]:
        return {"alert": alert_id}

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        assert (await client.get("/v1/alerts/7/ack", params={"token": "secret"})).status_code == 200
        assert (await client.get("/v1/broken")).status_code == 500
        assert (await client.get("/healthz")).status_code == 200
    [span, failed] = exported.get_finished_spans()
    assert span.name == "GET /v1/alerts/{alert_id}/ack"
    assert span.kind is SpanKind.SERVER
    assert span.attributes["http.route"] == "/v1/alerts/{alert_id}/ack"
    assert span.attributes["http.response.status_code"] == 200
    assert "secret" not in json.dumps(dict(span.attributes))
    assert span.attributes["url.query"] == "[redacted]"
    assert failed.name == "GET /v1/broken"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    assert [event.name for event in failed.events] == ["exception"]


async def test_a_request_the_sampler_does_not_keep_carries_its_trace_on_and_records_nothing():
    """The sampler is asked before anything is made of a request: one it does not keep is
    recorded by no span, and what the service does for it joins the caller's trace, marked
    not sampled, so that every process leaves the trace out alike."""
    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

    from shared.telemetry import ServerSpans, server_telemetry

    exported = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = FastAPI(telemetry=server_telemetry())
    app.add_middleware(ServerSpans, tracer_provider=provider)
    seen: list[trace.SpanContext] = []

    @app.post("/v1/incidents")
    async def report() -> dict[str, str]:
        seen.append(trace.get_current_span().get_span_context())
        return {}

    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        unsampled = {"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-00"}
        assert (await client.post("/v1/incidents", headers=unsampled)).status_code == 200
        assert (await client.post("/v1/incidents")).status_code == 200
    assert exported.get_finished_spans() == ()
    carried, new = seen
    assert format(carried.trace_id, "032x") == caller_trace
    assert not carried.trace_flags.sampled
    assert new.is_valid and not new.trace_flags.sampled
