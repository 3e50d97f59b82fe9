"""Which traces are kept (`shared.telemetry.ReservoirFirst`): the first of each second, then the
configured sampler; a span with a parent follows the decision where its trace began."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shared.settings import Settings
from shared.telemetry import ReservoirFirst, tracer_provider, with_reservoir


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kept(sampler: Any, trace_id: int = 1, parent: Any = None) -> bool:
    decision = sampler.should_sample(parent, trace_id, "report").decision
    return decision is Decision.RECORD_AND_SAMPLE


def parent_context(sampled: bool) -> Any:
    span_context = SpanContext(
        trace_id=7,
        span_id=9,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def test_the_first_roots_of_each_second_are_kept_then_the_sampler_decides() -> None:
    clock = Clock()
    sampler = ReservoirFirst(3, otherwise=ALWAYS_OFF, clock=clock)
    assert [kept(sampler) for _ in range(5)] == [True, True, True, False, False]
    clock.now += 1 / 3
    assert [kept(sampler) for _ in range(2)] == [True, False]
    clock.now += 10
    assert [kept(sampler) for _ in range(4)] == [True, True, True, False]


def test_beyond_the_reservoir_the_ratio_keeps_its_share() -> None:
    clock = Clock()
    sampler = ReservoirFirst(1, otherwise=TraceIdRatioBased(0.25), clock=clock)
    assert kept(sampler, trace_id=(1 << 64) - 1)  # the reservoir's one
    low, high = 1, (1 << 64) - 1  # a ratio keeps trace ids below its bound
    assert kept(sampler, trace_id=low)
    assert not kept(sampler, trace_id=high)


def test_a_span_with_a_parent_follows_its_trace_whatever_the_reservoir_holds() -> None:
    clock = Clock()
    sampler = with_reservoir(ALWAYS_OFF, 2)
    assert "ReservoirFirst" in sampler.get_description()
    assert not kept(sampler, parent=parent_context(sampled=False))
    assert not kept(sampler, parent=parent_context(sampled=False))
    assert kept(sampler)  # a root: the reservoir had both its tokens still
    assert kept(sampler, parent=parent_context(sampled=True))
    exhausted = ReservoirFirst(1, otherwise=ALWAYS_OFF, clock=clock)
    assert kept(exhausted) and not kept(exhausted)


def test_no_reservoir_leaves_the_sdk_sampler_as_it_is() -> None:
    assert with_reservoir(ALWAYS_ON, 0) is ALWAYS_ON


def test_the_setting_puts_the_reservoir_before_the_configured_sampler(
    monkeypatch: Any, tmp_path: Any
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.05")
    provider = tracer_provider(
        Settings(otel_traces_file=tmp_path / "spans.jsonl", traces_reservoir_per_second=10),
        "intake",
    )
    assert isinstance(provider, TracerProvider)
    description = provider.sampler.get_description()
    provider.shutdown()
    assert description.startswith("ParentBased{root:ReservoirFirst{10.0/s, then ParentBased")
    assert "TraceIdRatioBased{0.05}" in description
