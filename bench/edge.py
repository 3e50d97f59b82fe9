"""The edge under attack: requests with made-up bearer tokens, each a would-be new caller. The
rate limiter keys on the verified principal, or else the client's address, and keeps a bounded
number of buckets: the service must not grow with the number of tokens it is shown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import psutil


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


async def random_tokens(
    base_url: str, pid: int, requests: int = 100_000, connections: int = 32
) -> dict[str, Any]:
    """Send `requests` GETs, each with a bearer token nobody minted; the service's RSS growth."""
    statuses: Counter[int] = Counter()
    remaining = iter(range(requests))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        # Warm the connections first: their buffers are not what is measured.
        await asyncio.gather(*(client.get("/healthz") for _ in range(connections)))
        before = rss_mb(pid)
        began = time.perf_counter()

        async def caller() -> None:
            for _ in remaining:
                token = f"{uuid.uuid4().hex}.{uuid.uuid4().hex}.{uuid.uuid4().hex}"
                response = await client.get(
                    f"/v1/incidents/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
                )
                statuses[response.status_code] += 1

        await asyncio.gather(*(caller() for _ in range(connections)))
        seconds = time.perf_counter() - began
        after = rss_mb(pid)
    return {
        "requests": requests,
        "seconds": round(seconds, 1),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "rss_growth_mb": round(after - before, 1),
    }
