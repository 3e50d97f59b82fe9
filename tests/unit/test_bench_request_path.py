"""`python -m bench.request_path`: intake's own request path runs as intake runs it, its
first-report call answered in process, and every report is answered 201."""

from __future__ import annotations

import re
import subprocess
import sys

from shared.settings import REPOSITORY_ROOT


def test_the_request_path_bench_answers_every_report_and_prints_its_cost() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.request_path", "--requests", "30", "--rounds", "2"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # A report answered other than 201 ends the bench with what intake said.
    assert finished.returncode == 0, finished.stderr[-2000:]
    [line] = [line for line in finished.stdout.splitlines() if "request path" in line]
    assert re.fullmatch(
        r"intake's request path, traced: \d+ \d+ µs CPU a report; lowest \d+", line
    ), line
