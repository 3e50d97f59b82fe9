"""The bench's look at where the time to a first alert went, hop by hop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.report_to_alert import HOPS, Run, hops_summary, measured

WALL = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
WALL_NS = int(WALL.timestamp() * 1e9)


def row(incident: str, *millis: float) -> dict[str, object]:
    """The rows' times of one incident, `millis` after the wall clock's start."""
    return {"id": incident} | {
        name: WALL + timedelta(milliseconds=ms) for name, ms in zip(HOPS, millis, strict=True)
    }


def test_each_hop_is_the_time_between_two_steps_from_the_201_to_the_sink() -> None:
    # Monotonic times: 0 is the wall clock's start once WALL_NS is added.
    answered = {"a": 0, "b": 0}
    arrived = {"a": 100_000_000, "b": 400_000_000}
    rows = [row("a", 10, 40, 40, 60, 90), row("b", 10, 300, 300, 320, 390)]

    summary = hops_summary(rows, answered, arrived, WALL_NS)

    assert summary["incidents"] == 2
    hops = summary["hops"]
    assert list(hops) == [
        "answered→escalated",
        "escalated→notified",
        "notified→stored",
        "stored→opened",
        "opened→delivered",
        "delivered→alert_arrived",
    ]
    assert hops["answered→escalated"]["p50_ms"] == 10.0
    assert hops["escalated→notified"]["max_ms"] == 290.0
    assert hops["delivered→alert_arrived"]["max_ms"] == 10.0
    # The slowest hundredth is one incident here, "b": its tail is in the second hop.
    assert hops["escalated→notified"]["slowest_hundredth_mean_ms"] == 290.0
    assert hops["answered→escalated"]["slowest_hundredth_mean_ms"] == 10.0


def test_an_incident_with_a_step_unknown_is_left_out() -> None:
    rows = [row("a", 10, 40, 40, 60, 90), {**row("b", 10, 20, 20, 30, 40), "opened": None}]
    summary = hops_summary(rows, {"a": 0, "b": 0}, {"a": 10**8, "b": 10**8}, WALL_NS)
    assert summary["incidents"] == 1
    assert hops_summary([], {}, {}, WALL_NS) == {}


def test_the_lead_in_is_reported_apart_and_counted_for_the_rate() -> None:
    second = 1_000_000_000
    run = Run(began_ns=0, ended_ns=10 * second)
    for n in range(10):
        run.accepted[f"i{n}"] = n * second + 1
        run.sample_of[f"i{n}"] = 0
    # The first two wait out a quiet spell's pauses; the rest take 50 ms.
    arrivals = {f"i{n}": n * second + 1 + (2 * second if n < 2 else 50_000_000) for n in range(10)}

    result = measured(run, arrivals, {0}, 1.0, lead_in=2.0)

    assert result["expecting_alert"] == 8
    assert result["without_alert"] == 0
    assert result["p99_ms"] == 50.0
    assert result["lead_in"] == {
        "seconds": 2.0,
        "expecting_alert": 2,
        "without_alert": 0,
        "p50_ms": 2000.0,
        "p95_ms": 2000.0,
        "p99_ms": 2000.0,
        "max_ms": 2000.0,
    }
    assert result["accepted"] == 10
    # All ten carried, the last one 9.05 s after the run began.
    assert result["sustained_per_second"] == round(10 / 9.05, 1)


def test_without_a_lead_in_every_incident_counts() -> None:
    run = Run(began_ns=0, ended_ns=10**9)
    run.accepted["a"], run.sample_of["a"] = 1, 0
    result = measured(run, {"a": 1 + 30_000_000}, {0}, 1.0)
    assert result["expecting_alert"] == 1
    assert result["p50_ms"] == 30.0
    assert "lead_in" not in result
