"""The producers' partitioner puts every key where Kafka's default partitioner does (the
consumers' order per incident rests on it), and a record without a key among the partitions."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import KeyedPartitioner


def test_every_key_goes_to_the_partition_of_kafkas_default_partitioner() -> None:
    partitioner = KeyedPartitioner(keys_kept=16)
    keys = [str(uuid.UUID(int=number * 7919)).encode() for number in range(500)]
    for partitions in (1, 2, 3, 6, 12, 24):
        all_partitions = list(range(partitions))
        # Twice each, so that a hash kept from before answers too, past the cache's size.
        for key in keys + keys[::-1]:
            expected = DefaultPartitioner()(key, all_partitions, all_partitions)
            assert partitioner(key, all_partitions, all_partitions) == expected


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    partitioner = KeyedPartitioner()
    chosen = {partitioner(None, [0, 1, 2, 3], [1, 3]) for _ in range(50)}
    assert chosen <= {1, 3}
    assert partitioner(None, [0, 1, 2], []) in {0, 1, 2}
