"""The bench's probe of the machine's speed: its samples, and a run's median over its stretch."""

from __future__ import annotations

import math
from pathlib import Path

from bench.machine_speed import read_samples, sample_report, unit_us, unit_us_between


def test_a_unit_of_work_takes_some_cpu_time() -> None:
    assert unit_us(sample_report(), 3) > 0


def test_samples_are_read_as_monotonic_seconds_and_microseconds(tmp_path: Path) -> None:
    samples = tmp_path / "speed.txt"
    samples.write_text("1500000000 25.00\n2500000000 31.50\n3000000000", "utf-8")
    assert read_samples(samples) == [(1.5, 25.0), (2.5, 31.5)]


def test_a_run_reads_the_median_of_the_samples_within_its_stretch() -> None:
    samples = [(1.0, 90.0), (2.0, 25.0), (3.0, 40.0), (4.0, 30.0), (9.0, 90.0)]
    assert unit_us_between(samples, 2.0, 4.0) == 30.0
    assert math.isnan(unit_us_between(samples, 5.0, 8.0))
