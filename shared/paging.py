"""Pages of a list: `limit` (at most MAX_PAGE, PAGE by default) and `after`, the `next` of the
page before; `next` is absent on the last page. Pages follow a key that never repeats (a time
and an id, say), so a list growing while it is read neither skips nor repeats an item.

The cursor is opaque to callers (base64 of the last item's key); one we did not give is
answered 422 naming `after` (shared/problems.invalid_field).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from sqlalchemy import Column, Row, Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from shared.problems import invalid_field

PAGE, MAX_PAGE = 100, 500

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page, at most 500")]
After = Annotated[
    str | None,
    Query(max_length=400, description="`next` of the page before: the items after it"),
]
NEXT = "more items follow: pass this as `after` for the next page"

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    next: str | None


def cursor(key: Sequence[Any]) -> str:
    """Where a page ends: the key of its last item, opaque to the caller."""
    shown = [value.isoformat() if isinstance(value, datetime) else value for value in key]
    return base64.urlsafe_b64encode(json.dumps(shown, default=str).encode()).decode()


def position(after: str, types: Sequence[type]) -> tuple[Any, ...]:
    """The key a cursor names, each part as `types` says; 422 for one we did not give."""
    try:
        values = json.loads(base64.urlsafe_b64decode(after.encode()).decode())
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("another shape")
        return tuple(_typed(value, kind) for value, kind in zip(values, types, strict=True))
    except (ValueError, TypeError, binascii.Error) as error:  # json errors are ValueErrors
        raise invalid_field("after", "not a page position we gave", "query") from error


def _typed(value: Any, kind: type) -> Any:
    """One part of a key as JSON carried it (times and ids as text), as `kind`."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("not a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("not a number")
        return float(value)
    if not isinstance(value, str):
        raise TypeError("not text")
    if kind is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("a time without its zone")
        return moment
    if kind is UUID:
        return UUID(value)
    if kind is not str:
        raise TypeError(f"no cursor holds a {kind.__name__}")
    return value


def _python_type(column: Column[Any]) -> type:
    kind = column.type.python_type
    return UUID if issubclass(kind, UUID) else kind


async def rows_page(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    order: Sequence[Column[Any]],
    limit: int,
    after: str | None,
    *,
    newest_first: bool = False,
) -> Page[Row[*tuple[Any, ...]]]:
    """One page of `query`'s rows in the order of `order` (unique together), after `after`;
    `newest_first`: in the reverse order, each column descending."""
    if after is not None:
        key = position(after, [_python_type(column) for column in order])
        beyond = tuple_(*order) < tuple_(*key) if newest_first else tuple_(*order) > tuple_(*key)
        query = query.where(beyond)
    ordering = [column.desc() for column in order] if newest_first else list(order)
    rows = list((await session.execute(query.order_by(*ordering).limit(limit + 1))).all())
    if len(rows) <= limit:
        return Page(rows, None)
    last = rows[limit - 1]
    return Page(rows[:limit], cursor([getattr(last, column.name) for column in order]))


def items_page(
    items: Iterable[ItemT],
    key: Callable[[ItemT], tuple[Any, ...]],
    types: Sequence[type],
    limit: int,
    after: str | None,
) -> Page[ItemT]:
    """One page of a list built in memory (bounded by nature), in the order of `key`."""
    ordered = sorted(items, key=key)
    if after is not None:
        start = position(after, types)
        ordered = [item for item in ordered if key(item) > start]
    if len(ordered) <= limit:
        return Page(ordered, None)
    return Page(ordered[:limit], cursor(key(ordered[limit - 1])))
