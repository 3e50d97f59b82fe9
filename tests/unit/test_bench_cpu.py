"""The bench counts the CPU of a process's children that ended during a run (a PostgreSQL
backend of a connection opened and closed meanwhile), not only of those still alive."""

from __future__ import annotations

import subprocess
import sys

import psutil

from bench.report_to_alert import cpu_total

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_child_that_ended_is_counted_once_reaped() -> None:
    me = psutil.Process()
    before = cpu_total(me, with_children=True)
    subprocess.run([sys.executable, "-c", BURN], check=True)  # run, ended and reaped
    after = cpu_total(me, with_children=True)
    assert after - before >= 0.25
