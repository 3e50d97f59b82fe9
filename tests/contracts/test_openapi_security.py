"""The OpenAPI documents say which routes need a bearer token."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pytest

from shared.settings import SERVICE_NAMES
from tools import contracts

METHODS = {"get", "post", "put", "patch", "delete"}


def placeholder(parameter: dict[str, Any]) -> str:
    schema = parameter.get("schema", {})
    if schema.get("format") == "uuid":
        return str(uuid4())
    return "0" if schema.get("type") == "integer" else "x"


async def operations_refused_without_a_token(service: str) -> list[tuple[str, str, dict]]:
    """Each `/v1/` operation of the service's document that answers 401 to a request without
    a token.

    No lifespan runs, so nothing reaches a database: the token is checked before anything else
    a route depends on, and a route that does not check one fails some other way.
    """
    app, _ = contracts.build_service(service, contracts.document_settings())
    document = app.openapi()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    refused = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if method not in METHODS or not path.startswith("/v1/"):
                    continue
                if path.endswith("/ack"):  # the link's own signed token, in the query
                    continue
                url = path
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "path":
                        url = url.replace(f"{{{parameter['name']}}}", placeholder(parameter))
                response = await client.request(method.upper(), url)
                if response.status_code == 401:
                    refused.append((method, path, operation))
    return refused


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_every_service_has_routes_that_need_a_token(service: str) -> None:
    """The probe below finds them: otherwise the xfail would hold for a wrong reason."""
    assert await operations_refused_without_a_token(service)


async def test_routes_that_need_a_bearer_token_declare_it() -> None:
    undeclared = []
    for service in SERVICE_NAMES:
        refused = await operations_refused_without_a_token(service)
        undeclared += [
            f"{service}: {method.upper()} {path}"
            for method, path, operation in refused
            if not operation.get("security")
        ]
    assert not undeclared, "routes that need a token but do not say so:\n" + "\n".join(undeclared)
