"""The relay's questions to the broker (`shared.kafka.KafkaBrokerProbe`), against the real broker:
whether a record is still the event the outbox sent, and that the question leaves no fetch behind.
aiokafka fetches an assigned partition in the background for as long as it stays assigned, so a
probe that kept the partition it read would fetch it, and wake its service, for ever after."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka.protocol.fetch import FetchRequest

from shared.kafka import KafkaBrokerProbe, create_producer, ensure_topics
from shared.settings import Settings

# Longer than aiokafka's fetch wait (500 ms by default) and its fetcher's turn (200 ms), so an
# assigned partition would be fetched more than once within it.
QUIET_SECONDS = 1.5


async def test_the_probe_reads_a_record_and_leaves_no_partition_fetched_after(
    infra_settings: Settings,
) -> None:
    topic = f"probe.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra_settings, [topic])
    producer = create_producer(infra_settings, "test-probe-producer")
    await producer.start()
    try:
        event_id = str(uuid.uuid4())
        sent = await producer.send_and_wait(
            topic, value=b"{}", key=b"probe", headers=[("ce_id", event_id.encode())]
        )
    finally:
        await producer.stop()

    probe = KafkaBrokerProbe(infra_settings, "test")
    try:
        assert await probe.holds(topic, sent.partition, sent.offset, event_id)
        assert not await probe.holds(topic, sent.partition, sent.offset, str(uuid.uuid4()))

        _, reader = await probe._clients()
        assert reader.assignment() == set()
        fetches: list[Any] = []
        send = reader._client.send

        async def counted_send(node_id: int, request: Any, **kwargs: Any) -> Any:
            if isinstance(request, FetchRequest):
                fetches.append(request)
            return await send(node_id, request, **kwargs)

        reader._client.send = counted_send  # type: ignore[method-assign]
        await asyncio.sleep(QUIET_SECONDS)
        assert fetches == []

        # The next question assigns the partition again, and is answered as the first.
        assert await probe.holds(topic, sent.partition, sent.offset, event_id)
        ends = await probe.end_offsets([(topic, sent.partition)])
        assert ends[(topic, sent.partition)] > sent.offset
    finally:
        await probe.close()
