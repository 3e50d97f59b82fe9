"""Running the audit commands (verifier, witness) as a user would: as processes."""

from __future__ import annotations

import asyncio
import sys

from shared.settings import REPOSITORY_ROOT


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
