"""The bench counts the CPU of a process's children that ended during a run (a PostgreSQL
backend of a connection opened and closed meanwhile), not only of those still alive, and tells
the share of a process's CPU that was the kernel's from the share that was its own code's."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from bench.report_to_alert import cpu_total, kernel_shares

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_child_that_ended_is_counted_once_reaped() -> None:
    me = psutil.Process()
    before = cpu_total(me, with_children=True)
    subprocess.run([sys.executable, "-c", BURN], check=True)  # run, ended and reaped
    after = cpu_total(me, with_children=True)
    assert after - before >= 0.25


def share_while(work: str) -> float:
    """The kernel's share of this process's CPU while it does `work` for 0.3 s of CPU."""
    me = psutil.Process()
    before, kernel_before = {"me": cpu_total(me)}, {"me": cpu_total(me, kernel=True)}
    end = time.process_time() + 0.3
    with open("/dev/zero", "rb", buffering=0) as zeros:
        while time.process_time() < end:
            if work == "system calls":
                for _ in range(20):
                    os.read(zeros.fileno(), 1 << 18)  # the kernel fills the buffer
            else:
                sum(range(2000))
    after, kernel_after = {"me": cpu_total(me)}, {"me": cpu_total(me, kernel=True)}
    return kernel_shares(before, after, kernel_before, kernel_after)["me"]


def test_the_kernels_share_is_told_apart_from_the_codes_own() -> None:
    computing, calling = share_while("computing"), share_while("system calls")
    assert 0 <= computing < calling <= 1
    assert computing < 0.5 < calling


def test_a_process_that_used_no_cpu_has_no_share() -> None:
    assert kernel_shares({"idle": 1.0}, {"idle": 1.0}, {"idle": 0.2}, {"idle": 0.2}) == {
        "idle": 0.0
    }
