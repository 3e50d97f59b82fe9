"""Schemathesis against every service's OpenAPI, authenticated: no 5xx, every error a problem.

Bounded: CASES_PER_SERVICE generated requests a service, spread over its operations. Each
request is signed as the banner office (BLO), so generated cases reach the handlers rather than
stopping at authentication.
"""

from __future__ import annotations

import asyncio

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.settings import SERVICE_NAMES
from tests import support
from tests.support import PATIENCE_SECONDS, PartyAuth
from tools.devrun import ServiceProcesses

CASES_PER_SERVICE = 250
# The acknowledgement link carries its own token (tested in tests/notification).
SKIP = {("POST", "/v1/notifications/{notification_id}/ack")}


def fuzz_service(base_url: str, spec: dict, token: str) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_dict(spec)
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if (result.ok().method.upper(), result.ok().path) not in SKIP
    ]
    per_operation = max(CASES_PER_SERVICE // len(operations), 5)
    problems: list[str] = []
    calls = 0
    headers = {"Authorization": f"Bearer {token}"}
    for operation in operations:

        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case) -> None:
            nonlocal calls
            response = case.call(base_url=base_url, headers=headers, timeout=PATIENCE_SECONDS)
            calls += 1
            label = f"{case.method} {case.formatted_path} -> {response.status_code}"
            if response.status_code >= 500:
                problems.append(f"{label}: {response.text[:300]}")
            elif response.status_code >= 400 and response.status_code != 429:
                content_type = response.headers.get("content-type")
                if isinstance(content_type, list):  # schemathesis keeps every value of a header
                    content_type = content_type[0] if content_type else None
                if content_type != "application/problem+json":
                    problems.append(
                        f"{label}: not problem+json: {content_type} {response.text[:200]}"
                    )

        check()
    return calls, problems


async def test_no_generated_request_gets_a_5xx_or_a_bare_error(
    system: ServiceProcesses, work_dir
) -> None:
    token = PartyAuth(support.test_keys(work_dir)[0]).token(
        "BLO", ("incidents:write", "incidents:read", "audit:read", "pii:read")
    )
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
        specs = {
            service: (await client.get(f"{system.url(service)}/openapi.json")).json()
            for service in SERVICE_NAMES
        }
    total = 0
    for service in SERVICE_NAMES:
        calls, problems = await asyncio.to_thread(
            fuzz_service, system.url(service), specs[service], token
        )
        assert not problems, f"{service}: " + "\n".join(problems[:10])
        total += calls
    assert total >= 4 * 100
    _ = st  # strategies come from the OpenAPI documents themselves
