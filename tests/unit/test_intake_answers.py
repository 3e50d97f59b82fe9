"""A new incident's answer is written from its values (`new_incident_json`), not by its model:
it must be the very bytes `CreatedOut` writes, whatever the candidates, and whether their ids
are the standard library's or the driver's (the call's `uuid[]` comes back as asyncpg's)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from asyncpg.pgproto.pgproto import UUID as DriverUUID

from services.intake.schemas import CreatedOut, new_incident_json
from shared.domain.vocabulary import LifecycleStatus


@pytest.mark.parametrize("count", [0, 1, 100])
@pytest.mark.parametrize("driver_ids", [False, True])
def test_the_answer_is_the_bytes_its_model_writes(count: int, driver_ids: bool) -> None:
    incident_id = uuid4()
    location = f"/v1/incidents/{incident_id}"
    candidates: list[UUID] = [
        DriverUUID(str(uuid4())) if driver_ids else uuid4() for _ in range(count)
    ]
    modelled = CreatedOut(
        id=incident_id,
        status=LifecycleStatus.REPORTED,
        location=location,
        candidates=candidates,
    ).model_dump_json()
    answer = new_incident_json(incident_id, location, candidates)
    assert answer == modelled.encode()
    assert CreatedOut.model_validate_json(answer).candidates == [UUID(str(c)) for c in candidates]
