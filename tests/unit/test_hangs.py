"""A hanging test fails with the stack of every task, and the run goes on; one that cannot
be stopped ends the run (`tests.hangs`). Each case runs pytest on a small module of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.settings import REPOSITORY_ROOT

HANGS = """
import asyncio


async def test_waits_for_what_never_comes():
    await asyncio.Event().wait()


async def test_after_it():
    assert True
"""

CANNOT_BE_STOPPED = """
import asyncio


async def test_shrugs_off_its_cancel():
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass


async def test_after_it():
    assert True
"""


def run_pytest(tmp_path: Path, module: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.hangs"]\n')
    (tmp_path / "test_module.py").write_text(module)
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"),
            *("-o", "asyncio_mode=auto", "--rootdir", str(tmp_path), str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(REPOSITORY_ROOT),
            "TEST_LIMIT_SECONDS": "1",
            "TEST_LAST_RESORT_SECONDS": "2",
        },
        timeout=300,
        check=False,
    )


def test_a_test_past_its_limit_fails_with_every_task_stack_and_the_next_one_runs(
    tmp_path: Path,
) -> None:
    finished = run_pytest(tmp_path, HANGS)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "1 failed, 1 passed" in finished.stdout
    assert "ran past 1s and was cancelled" in finished.stdout
    assert "ran past 1s; where every task waits:" in finished.stderr
    # Where it hung, with the line that waits.
    assert "test_waits_for_what_never_comes" in finished.stderr
    assert "await asyncio.Event().wait()" in finished.stderr


def test_a_test_its_cancel_does_not_stop_ends_the_run_with_every_thread_stack(
    tmp_path: Path,
) -> None:
    finished = run_pytest(tmp_path, CANNOT_BE_STOPPED)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "test_shrugs_off_its_cancel is still running after 3s: the run ends here" in (
        finished.stderr
    )
    assert "most recent call first" in finished.stderr  # every thread's stack
    assert "await asyncio.sleep(3600)" in finished.stderr  # where its task waits
    assert "test_after_it" not in finished.stdout + finished.stderr
