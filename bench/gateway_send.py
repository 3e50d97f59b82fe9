"""The CPU of one alert's send to a gateway, as notification sends it.

    python -m bench.gateway_send [--sends 2000]

A loopback HTTP server in the same process stands in for the gateway; sends go one at a time
through a channel's client (`services.notification.channels.http`), then through the same client
with aiohttp reading the proxy settings from the environment on every request (`trust_env`, as
notification's clients did before `environment_proxy`). Printed: CPU µs per send of the process
(client and server together: the server's share is the same in both), and wall µs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import web

from services.notification.channels.http import http_client, send_request

WARM_UP = 200


async def _per_send(client: aiohttp.ClientSession, url: str, sends: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        await send_request(client, "POST", url, json={"alert": "warm-up"})
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(sends):
        result = await send_request(client, "POST", url, json={"alert": "测试"})
        assert result.delivered, result
    return {
        "cpu_us_per_send": round((time.process_time() - cpu) / sends * 1e6, 1),
        "wall_us_per_send": round((time.perf_counter() - wall) / sends * 1e6, 1),
    }


async def measure(sends: int) -> dict[str, Any]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/gateway", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/gateway"
    try:
        client = http_client(4, 5.0)
        reading_env = aiohttp.ClientSession(trust_env=True)
        try:
            return {
                "channel_client": await _per_send(client, url, sends),
                "environment_read_per_request": await _per_send(reading_env, url, sends),
            }
        finally:
            await client.close()
            await reading_env.close()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000)
    options = parser.parse_args()
    print(json.dumps(asyncio.run(measure(options.sends)), indent=2))


if __name__ == "__main__":
    main()
