"""How fast this machine runs Python right now: a fixed unit of the services' kind of work, timed.

    python -m bench.machine_speed --output speed.txt [--every 1.0] [--units 60]

The machine is a virtual one whose speed swings with its neighbours: the same code has taken
13.9 and 21.8 ms of CPU an incident at 50/s two hours apart, and a fixed piece of Python up to
1.7 times as long as a second before. The bench runs this probe beside its load runs, in
a process of its own: every `--every` seconds it does `--units` units of work (a sample
report's JSON encoded and decoded, its text's phone numbers masked, hashed, its keys sorted)
and writes the CPU time a unit took, in µs, with the system-wide monotonic clock's time. A run
reads the probe's median over its own stretch (`unit_us_between`): what a microsecond of the
services' work cost the machine then. About 10 ms of work a second, a hundredth of a core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.domain.privacy import mask_numbers_in_text

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "incidents"


def sample_report() -> dict[str, Any]:
    return json.loads(next(iter(sorted(SAMPLE.glob("*.json")))).read_text("utf-8"))


def unit_of_work(report: dict[str, Any]) -> int:
    text = json.dumps(report, ensure_ascii=False)
    decoded = json.loads(text)
    masked = mask_numbers_in_text(text)
    digest = hashlib.sha256(masked.encode()).hexdigest()
    return len(sorted(str(key) for key in decoded)) + len(digest)


def unit_us(report: dict[str, Any], units: int) -> float:
    """The CPU time one unit took, in µs, over `units` of them."""
    began = time.process_time_ns()
    for _ in range(units):
        unit_of_work(report)
    return (time.process_time_ns() - began) / units / 1000


def read_samples(path: Path) -> list[tuple[float, float]]:
    """(monotonic seconds, µs a unit) of every sample the probe wrote."""
    samples = []
    for line in path.read_text("utf-8").splitlines():
        at, _, value = line.partition(" ")
        if value:
            samples.append((int(at) / 1e9, float(value)))
    return samples


def unit_us_between(samples: Sequence[tuple[float, float]], began: float, ended: float) -> float:
    """The median µs a unit took over [began, ended] (monotonic seconds); NaN without one."""
    within = [value for at, value in samples if began <= at <= ended]
    return round(statistics.median(within), 1) if within else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--units", type=int, default=60)
    options = parser.parse_args()
    report = sample_report()
    with options.output.open("a", encoding="utf-8") as output:
        while True:
            measured = unit_us(report, options.units)
            output.write(f"{time.monotonic_ns()} {measured:.2f}\n")
            output.flush()
            time.sleep(options.every)


if __name__ == "__main__":
    main()
