"""`make bench`: every benchmark, each figure printed beside its target and its floor.

    python -m bench [--seconds 15] [--rates 10 50 85] [--leaves 1000000]

Runs `bench.report_to_alert` (the system under load, the floor of the infrastructure, intake
alone, memory) and `bench.audit_log` (append rate, inclusion proofs at a million leaves), each on
infrastructure of its own, and writes both to bench/results/<date>.json with the machine's cores
and memory. `docs/performance.md` explains the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import audit_log, report_to_alert

RESULTS = Path(__file__).resolve().parent / "results"

TARGETS = {
    # The work of an incident, CPU of every service and PostgreSQL, at 50 offered a second.
    "cpu_ms_per_incident": 15,
    # A province's disaster minute (docs/scaling.md): offered 85 a second, all carried.
    "sustained_offered_per_second": 85,
    # Report → first alert, as multiples of the three-hop floor measured in the same run.
    "p50_to_floor_at_50": 2,
    "p99_to_floor_at_50": 4,
    "p50_to_floor_at_10": 1.5,
    "intake_reports_per_second": 1000,
    "idle_cpu_ms_per_second": 5,
    "service_peak_rss_mb": 150,
    "audit_append_events_per_second": 5000,
    "inclusion_proof_p99_ms": 5,
    "random_token_rss_growth_mb": 10,
}
# The pipeline's processes whose CPU an incident costs (the broker, the load generator and the
# sink are the bench's, measured apart).
PIPELINE = ("intake", "escalation", "notification", "audit", "postgres")


def run_at(system: dict[str, Any], rate: float) -> dict[str, Any] | None:
    return next((r for r in system["rates"] if r["offered_per_second"] == rate), None)


def carried(run: dict[str, Any]) -> bool:
    """Whether a run carried what was offered: every report accepted at the offered rate, none
    refused, every one that calls for an alert alerted, and the first alerts kept up (the last
    one comes a latency after the last report, so the rate over the run and its tail is a
    little under the offered one)."""
    offered = run["offered_per_second"]
    return (
        not run["refused"]
        and run["without_alert"] == 0
        and run["accepted_per_second"] >= 0.98 * offered
        and run.get("sustained_per_second", 0) >= 0.95 * offered
    )


def summary(document: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, measured, target, floor, verdict) for every target (docs/performance.md)."""
    system, audit = document["system"], document["audit"]
    floor = system["floor"]
    three_hops = floor["three_hops_p50_ms"]
    hop_text = f"3 hops {three_hops} ms"
    rows: list[tuple[str, str, str, str, str]] = []

    def row(figure: str, value: float | None, target: float, floor_text: str, lower: bool) -> None:
        if value is None:
            rows.append((figure, "not measured", f"{target}", floor_text, "—"))
            return
        met = value <= target if lower else value >= target
        sign = "≤" if lower else "≥"
        verdict = "met" if met else "MISSED"
        rows.append((figure, f"{value:g}", f"{sign} {target}", floor_text, verdict))

    at_50 = run_at(system, 50)
    repeats = system.get("cpu_repeats") or ([at_50] if at_50 else [])
    cpu = [pipeline_cpu(run) for run in repeats]
    row(
        "CPU per incident at 50/s, services + PostgreSQL (ms)",
        min(cpu) if cpu else None,
        TARGETS["cpu_ms_per_incident"],
        repeats_text("least", cpu, "ms", repeats),
        lower=True,
    )
    for run in system["rates"]:
        offered = run["offered_per_second"]
        rows.append(
            (
                f"sustained incidents/s, offered {offered:g}/s",
                f"{run.get('sustained_per_second', 0):g}",
                f"{offered:g}, none refused",
                f"refused {sum(run['refused'].values())}, unalerted {run['without_alert']}",
                "met" if carried(run) else "MISSED",
            )
        )
    flat = system["flat_out"]
    rows.append(
        (
            "sustained incidents/s, flat out",
            f"{flat.get('sustained_per_second', 0):g}",
            "—",
            f"p50 {flat.get('p50_ms', '—')} ms",
            "—",
        )
    )
    for rate, key, label, target in (
        (50, "p50_ms", "p50", "p50_to_floor_at_50"),
        (50, "p99_ms", "p99", "p99_to_floor_at_50"),
        (10, "p50_ms", "p50", "p50_to_floor_at_10"),
    ):
        run = run_at(system, rate)
        value = run.get(key) if run else None
        row(
            f"report→first alert {label} at {rate}/s, × floor ({value} ms)",
            round(value / three_hops, 2) if value is not None else None,
            TARGETS[target],
            hop_text,
            lower=True,
        )
    by_processes: dict[int, list[dict[str, Any]]] = {}
    for alone in system["intake_alone"]:
        by_processes.setdefault(alone["processes"], []).append(alone)
    for processes, runs in by_processes.items():
        rates = [run["reports_per_second"] for run in runs]
        floor_text = stack_floor_text(system.get("stack_floor"), floor)
        if len(runs) > 1:
            floor_text = f"{repeats_text('most', rates, '/s', runs)}; {floor_text}"
        row(
            f"intake flat out, {processes} process(es) (reports/s)",
            max(rates),
            TARGETS["intake_reports_per_second"],
            floor_text,
            lower=False,
        )
    idle = system["idle_cpu_ms_per_second"]
    for service in ("intake", "escalation", "notification", "audit"):
        row(
            f"CPU while idle, {service} (ms/s)",
            idle.get(service),
            TARGETS["idle_cpu_ms_per_second"],
            "—",
            lower=True,
        )
    rows.append(
        (
            "CPU while idle, the embedded broker (ms/s)",
            f"{idle.get('broker', 0):g}",
            "a trade-off against hop latency",
            f"fetch wait {system['kafka']['fetch_max_wait_ms']} ms, "
            f"longest idle pause {system['kafka']['idle_fetch_interval_ms']} ms",
            "chosen (docs/performance.md)",
        )
    )
    for service, peak in system["peak_rss_mb"].items():
        row(f"peak RSS of {service} (MB)", peak, TARGETS["service_peak_rss_mb"], "—", lower=True)
    through = audit["append"]["through_the_service"]
    row(
        "audit append through the service, live (events/s)",
        through["live_events_per_second_median"],
        TARGETS["audit_append_events_per_second"],
        f"store alone {audit['append']['batched']['events_per_second']}/s",
        lower=False,
    )
    row(
        "inclusion proof p99 at 1,000,000 leaves (ms)",
        audit["inclusion_proof"]["p99_ms_median"],
        TARGETS["inclusion_proof_p99_ms"],
        f"commit {floor['postgres_commit']['p50_ms']} ms",
        lower=True,
    )
    attack = system.get("random_tokens")
    row(
        "intake RSS growth after 100,000 made-up bearer tokens (MB)",
        attack["rss_growth_mb"] if attack else None,
        TARGETS["random_token_rss_growth_mb"],
        "—",
        lower=True,
    )
    return rows


def pipeline_cpu(run: dict[str, Any]) -> float:
    return round(sum(run["cpu_ms_per_incident"].get(p, 0) for p in PIPELINE), 1)


def repeats_text(chosen: str, values: list[float], unit: str, runs: list[dict[str, Any]]) -> str:
    """The runs behind a figure measured more than once: each value, and the machine's speed
    during each (`bench.machine_speed`, µs a unit of Python)."""
    if len(values) < 2:
        return "—"
    speeds = [run.get("machine_unit_us") for run in runs]
    text = f"{chosen} of {len(values)} runs: " + ", ".join(f"{v:g}" for v in values) + f" {unit}"
    if all(speed is not None for speed in speeds):
        text += "; machine " + ", ".join(f"{speed:g}" for speed in speeds) + " µs a unit"
    return text


def stack_floor_text(stack: dict[str, Any] | None, floor: dict[str, Any]) -> str:
    """Intake's floor: the bare stack's reports/s and its CPU per report (`bench.stack_floor`),
    where the run measured it, else a commit."""
    if stack is None:
        return f"commit {floor['postgres_commit']['p50_ms']} ms"
    return (
        f"bare stack {stack['reports_per_second']:g}/s, "
        f"{stack['cpu_ms_per_report']['stack']:g} ms CPU/report"
    )


def print_summary(rows: list[tuple[str, str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print()
    for figure, value, target, floor, verdict in rows:
        print(
            f"{figure:<{widths[0]}}  {value:>{widths[1]}}  {target:<{widths[2]}}  "
            f"{floor:<{widths[3]}}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    report_to_alert.arguments(parser)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--service-events", type=int, default=20_000)
    options = parser.parse_args()
    began = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        work = Path(scratch)
        work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data folder
        system = asyncio.run(
            report_to_alert.main(
                options.rates,
                options.seconds,
                options.drain,
                work / "system",
                options.profile,
                options.profile_format,
                repeats=options.repeats,
            )
        )
    audit = asyncio.run(audit_log.main(options.leaves, options.service_events))
    document: dict[str, Any] = {
        "date": began.isoformat(timespec="seconds"),
        "duration_seconds": round((datetime.now(UTC) - began) / timedelta(seconds=1)),
        "machine": audit_log.machine(),
        "targets": TARGETS,
        "system": system,
        "audit": audit,
    }
    rows = summary(document)
    document["summary"] = [
        dict(zip(("figure", "measured", "target", "floor", "verdict"), r, strict=True))
        for r in rows
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{began.date().isoformat()}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_summary(rows)
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
