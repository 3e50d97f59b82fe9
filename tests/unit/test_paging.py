"""Pages of a list (shared/paging.py): cursors name a position and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from shared.paging import cursor, items_page, position
from shared.problems import Problem

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def test_a_cursor_gives_back_the_key_it_was_made_of():
    key = (NOW, uuid4(), "SFS:150626102", 1.5, 42)
    assert position(cursor(key), (datetime, UUID, str, float, int)) == key


@pytest.mark.parametrize("part", ["42", 4.2, True])
def test_a_leaf_index_in_a_cursor_is_a_whole_number(part):
    with pytest.raises(Problem):
        position(cursor([part]), (int,))


@pytest.mark.parametrize(
    "after",
    [
        "not base64 at all!",
        cursor(["x"])[:-2],  # cut short
        cursor([]),  # another shape
        cursor(["2026-11-30T08:00:00"]),  # a time without its zone
        cursor([1]),  # a number where a time belongs
        cursor([True]),
    ],
)
def test_a_cursor_we_did_not_give_is_a_422_naming_after(after):
    with pytest.raises(Problem) as refused:
        position(after, (datetime,))
    assert refused.value.status == 422
    assert refused.value.extensions["errors"][0]["field"] == "after"


def test_walking_pages_meets_every_item_once_in_order():
    items = [(NOW + timedelta(minutes=minutes), uuid4()) for minutes in (3, 1, 2, 2, 5)]
    seen, after = [], None
    while True:
        page = items_page(items, lambda item: item, (datetime, UUID), 2, after)
        assert len(page.items) <= 2
        seen += page.items
        if page.next is None:
            break
        after = page.next
    assert seen == sorted(items)
    assert items_page(items, lambda item: item, (datetime, UUID), 5, None).next is None
