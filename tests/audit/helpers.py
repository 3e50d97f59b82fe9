"""Running the audit commands (verifier, witness) as a user would: as processes."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

import httpx

from services.audit import store
from services.audit.models import messaging
from services.audit.retention import erase_due
from shared.db import create_engine, create_session_factory
from shared.retention import Retention
from shared.settings import REPOSITORY_ROOT, Settings


async def run_module(module: str, *arguments: str) -> tuple[int, str, str]:
    """`python -m module arguments`: exit status, standard output, standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *arguments,
        cwd=REPOSITORY_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


# A reader of the log holding pii:read: leaves come with their bytes, people by name.
CLEAR_READER = {"X-Act-As": "BLO audit:read pii:read"}


async def exported(
    audit: httpx.AsyncClient, headers: dict[str, str] | None = None, limit: int = 1000
) -> list[dict]:
    """Every line of the log's export, page after page, without the lines naming the next."""
    lines: list[dict] = []
    after: int | None = None
    while True:
        params = {"limit": limit} | ({"after": after} if after is not None else {})
        response = await audit.get("/v1/log/export", params=params, headers=headers or {})
        assert response.status_code == 200, response.text
        page = [json.loads(line) for line in response.text.splitlines()]
        lines += [line for line in page if "next" not in line]
        follows = [line["next"] for line in page if "next" in line]
        if not follows:
            return lines
        after = follows[0]


async def erase_closed_until_now(database_url: str) -> list[str]:
    """Run the retention job's erasure as if the period were over for every incident closed
    until now (0 years); the incidents erased."""
    engine = create_engine(Settings(database_url=database_url), pool_size=1)
    try:
        async with create_session_factory(engine)() as session, session.begin():
            await store.act_as_writer(session)
            return await erase_due(
                session,
                messaging.outbox,
                Retention(personal_data_years_after_closure=0),
                datetime.now(UTC) + timedelta(seconds=1),
            )
    finally:
        await engine.dispose()
