"""Event consumers of the console: where each incident is, from `incidents.v1`.

Which browsers hear of an incident's events depends on its township (services/console/live.py);
the incident page links the trace of the report that opened it.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.console.models import incident_places
from shared.events import CloudEvent
from shared.events.models import (
    ActionRecorded,
    IncidentLinked,
    IncidentMerged,
    IncidentReported,
    IncidentUnlinked,
    PersonalDataRead,
    ReportFiled,
)
from shared.kafka import HandlerTable, on_data
from shared.telemetry import kept_trace_id


def trace_id_of(event: CloudEvent) -> str | None:
    """The trace id the event carries, if its trace was kept (`kept_trace_id`)."""
    return kept_trace_id(event.trace_headers)


async def place_reported(session: AsyncSession, event: CloudEvent, data: IncidentReported) -> None:
    statement = insert(incident_places).values(
        incident_id=data.incident_id,
        township_code=data.facts.township_code,
        trace_id=trace_id_of(event),
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[incident_places.c.incident_id],
            set_={"township_code": statement.excluded.township_code},
        )
    )


async def place_corrected(session: AsyncSession, _: CloudEvent, data: ReportFiled) -> None:
    township = data.changes.get("township_code")
    if not isinstance(township, str):
        return
    statement = insert(incident_places).values(incident_id=data.incident_id, township_code=township)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[incident_places.c.incident_id],
            set_={"township_code": statement.excluded.township_code},
        )
    )


HANDLERS = HandlerTable(
    {
        IncidentReported.ce_type: on_data(place_reported),
        ReportFiled.ce_type: on_data(place_corrected),
    },
    ignored=frozenset(
        {
            ActionRecorded.ce_type,
            PersonalDataRead.ce_type,
            # A linked or merged incident keeps its own township.
            IncidentLinked.ce_type,
            IncidentMerged.ce_type,
            IncidentUnlinked.ce_type,
        }
    ),
)
