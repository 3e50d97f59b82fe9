"""Which sent outbox rows the broker lost (shared/messaging.py): decided from the offsets the
outbox recorded and what the broker holds now, without a broker or a database."""

from __future__ import annotations

import time

import pytest

from shared.messaging import (
    BrokerMemory,
    BrokerView,
    Forgotten,
    doubtful_partitions,
    forgotten_records,
    offsets_gone_back,
)
from shared.settings import Settings

INCIDENTS, ESCALATIONS = "incidents.v1", "escalations.v1"


def test_a_broker_that_kept_everything_lost_nothing():
    recorded = {("c1", INCIDENTS, 0): 41, ("c1", INCIDENTS, 1): 7}
    broker = BrokerView("c1", {(INCIDENTS, 0): 42, (INCIDENTS, 1): 9})
    assert forgotten_records(recorded, broker) == []


def test_a_partition_ending_at_or_below_a_recorded_offset_lost_from_its_end():
    # Offsets 0..41 were given on partition 0; the broker now ends at 30 (an unclean leader
    # election): 30..41 are gone. Partition 1 ends exactly at its last record's offset: one lost.
    recorded = {("c1", INCIDENTS, 0): 41, ("c1", INCIDENTS, 1): 7, ("c1", ESCALATIONS, 2): 3}
    broker = BrokerView("c1", {(INCIDENTS, 0): 30, (INCIDENTS, 1): 7, (ESCALATIONS, 2): 4})
    assert forgotten_records(recorded, broker) == [
        Forgotten("c1", INCIDENTS, 0, 30),
        Forgotten("c1", INCIDENTS, 1, 7),
    ]


def test_a_new_cluster_id_means_every_retained_row_of_the_old_one_is_gone():
    # An empty broker started in the old one's place: its offsets say nothing about ours, even
    # when records sent to it since have pushed a partition's end past the old offsets.
    recorded = {("c1", INCIDENTS, 0): 41, ("c1", ESCALATIONS, 3): 2, ("c2", INCIDENTS, 0): 60}
    broker = BrokerView("c2", {(INCIDENTS, 0): 61})
    assert forgotten_records(recorded, broker) == [
        Forgotten("c1", ESCALATIONS, 3, 0),
        Forgotten("c1", INCIDENTS, 0, 0),
    ]


def test_a_partition_the_broker_does_not_have_lost_everything_on_it():
    recorded = {("c1", INCIDENTS, 5): 12}
    assert forgotten_records(recorded, BrokerView("c1", {})) == [Forgotten("c1", INCIDENTS, 5, 0)]


def test_offsets_given_again_show_where_the_broker_forgot():
    highest = {(INCIDENTS, 0): 41, (INCIDENTS, 1): 7}
    placed = [(INCIDENTS, 0, 12), (INCIDENTS, 0, 13), (INCIDENTS, 1, 8), (ESCALATIONS, 0, 0)]
    # Partition 0 gave 12 after 41: it forgot from 12 on. Partition 1 went on (8 after 7), and
    # a partition never sent to before has nothing to compare with.
    assert offsets_gone_back(highest, placed) == {(INCIDENTS, 0): 12}


def test_an_offset_given_twice_is_gone_back_too():
    assert offsets_gone_back({(INCIDENTS, 0): 41}, [(INCIDENTS, 0, 41)]) == {(INCIDENTS, 0): 41}


def test_the_inbox_keeps_its_rows_longer_than_the_outbox():
    settings = Settings()
    assert settings.inbox_retention_hours > settings.outbox_retention_hours >= 168
    with pytest.raises(ValueError, match="INBOX_RETENTION_HOURS must exceed"):
        Settings(outbox_retention_hours=400, inbox_retention_hours=336)


def test_a_partition_seen_still_holding_its_last_record_lost_nothing():
    # Tansu answers a partition's end with the first offset of its last batch plus one: 31 for
    # a last batch of 30..41. The relay looked, found record 41 still there: nothing lost.
    recorded = {("c1", INCIDENTS, 0): 41, ("c1", INCIDENTS, 1): 7}
    ends = {(INCIDENTS, 0): 31, (INCIDENTS, 1): 5}
    assert doubtful_partitions(recorded, "c1", ends) == {(INCIDENTS, 0): 41, (INCIDENTS, 1): 7}
    broker = BrokerView("c1", ends, holding_last=frozenset({(INCIDENTS, 0)}))
    assert forgotten_records(recorded, broker) == [Forgotten("c1", INCIDENTS, 1, 5)]


def test_only_partitions_of_this_cluster_ending_too_soon_are_doubtful():
    recorded = {("c1", INCIDENTS, 0): 41, ("c1", INCIDENTS, 1): 7, ("c0", INCIDENTS, 2): 9}
    ends = {(INCIDENTS, 0): 42, (INCIDENTS, 1): 7}
    assert doubtful_partitions(recorded, "c1", ends) == {(INCIDENTS, 1): 7}


def test_the_relay_checks_at_start_and_then_after_its_interval():
    memory = BrokerMemory(check_every=60.0)
    assert memory.should_check()  # nothing known yet
    memory.check_due, memory.checked_at = False, time.monotonic()
    assert not memory.should_check()
    memory.checked_at -= 61.0
    assert memory.should_check()


def test_what_the_relay_knows_of_a_partition_only_grows_with_what_it_sends():
    memory = BrokerMemory(check_every=60.0, highest={(INCIDENTS, 0): 41})
    memory.placed([(INCIDENTS, 0, 40), (INCIDENTS, 0, 42), (INCIDENTS, 1, 0)])
    assert memory.highest == {(INCIDENTS, 0): 42, (INCIDENTS, 1): 0}
