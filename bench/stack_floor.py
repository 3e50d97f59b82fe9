"""The floor of one intake process on this stack: what the framework alone costs a report.

    python -m bench.stack_floor --port 9200 --database-url postgresql://…

A bare FastAPI app served exactly as the services are (`shared.httpserver`, uvloop, httptools,
no access log, the same keep-alive), whose one route does what any intake must before its 201:
read the report's JSON and commit it with asyncpg (one row, one transaction from a pool). None of
the project's code runs in between: no authentication, validation, sealing, matching, outbox or
telemetry. Driven flat out by the same load generator on the same cores as intake, its reports/s
are the most one Python process of this stack can take on this machine, and intake's rate is
read against it (`docs/performance.md`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import asyncpg
import uvicorn
from fastapi import FastAPI, Request

from shared.httpserver import serve
from shared.serve import KEEP_ALIVE_SECONDS

CREATE = (
    "CREATE TABLE IF NOT EXISTS public.bench_stack_floor"
    " (id uuid PRIMARY KEY, report jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
)
INSERT = "INSERT INTO public.bench_stack_floor (id, report) VALUES ($1, $2)"


def create_app(database_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        async with pool.acquire() as connection:
            await connection.execute(CREATE)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/incidents", status_code=201)
    async def report(request: Request) -> dict[str, str]:
        body = await request.body()
        json.loads(body)  # a report that is not JSON would be refused
        report_id = uuid4()
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(INSERT, report_id, body.decode())
        return {"id": str(report_id)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    options = parser.parse_args()
    serve(
        uvicorn.Config(
            create_app(options.database_url),
            host="127.0.0.1",
            port=options.port,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )


if __name__ == "__main__":
    main()
