"""How an idle consumer paces its looks (shared/kafka.py IdleFetching): pure timing."""

from __future__ import annotations

from typing import Any

import pytest

from shared.kafka import IDLE_AFTER_SECONDS, IDLE_PAUSE_SHARE, IdleFetching


def fetching(longest_pause_ms: int) -> IdleFetching:
    consumer: Any = object()  # pause_seconds never touches the consumer
    paced = IdleFetching(consumer, longest_pause_ms, fetch_max_wait_ms=20)
    paced._records_at = 100.0
    return paced


def test_a_consumer_fetches_freely_while_records_come() -> None:
    paced = fetching(1000)
    assert paced.pause_seconds(100.0) == 0
    assert paced.pause_seconds(100.0 + IDLE_AFTER_SECONDS - 0.01) == 0


@pytest.mark.parametrize("quiet", [1.0, 2.0, 4.0, 7.9])
def test_an_idle_consumer_pauses_an_eighth_of_its_quiet_spell(quiet: float) -> None:
    assert fetching(1000).pause_seconds(100.0 + quiet) == pytest.approx(quiet * IDLE_PAUSE_SHARE)


@pytest.mark.parametrize("quiet", [8.0, 60.0, 86400.0])
def test_a_long_idle_consumer_pauses_at_most_the_longest_pause(quiet: float) -> None:
    assert fetching(1000).pause_seconds(100.0 + quiet) == 1.0


def test_pausing_is_off_at_zero_for_a_broker_that_answers_at_once() -> None:
    assert fetching(0).pause_seconds(100.0 + 3600) == 0
