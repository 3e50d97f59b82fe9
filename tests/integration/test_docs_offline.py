"""Each service's API documentation works on an intranet without the internet: `/docs` and
`/redoc` name only assets of the service's own origin, and the service serves them."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from shared.settings import SERVICE_NAMES

# Where a page loads from: src and href attributes, and the OpenAPI document Swagger UI fetches.
LOADED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_docs_load_only_assets_of_the_service_itself(
    clients: dict[str, httpx.AsyncClient], service: str
) -> None:
    client = clients[service]
    base = str(client.base_url)
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200, (page, response.text)
        loaded = [first or second for first, second in LOADED.findall(response.text)]
        assert any(url.endswith(".js") for url in loaded), (page, loaded)
        for url in loaded:
            absolute = urljoin(base + page, url)
            assert urlsplit(absolute).netloc == urlsplit(base).netloc, (page, url)
            asset = await client.get(absolute)
            assert asset.status_code == 200, (page, url)
        assert "cdn." not in response.text and "fonts.googleapis" not in response.text
