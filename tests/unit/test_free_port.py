"""Listening ports for local servers are chosen where no outgoing connection can take them."""

from __future__ import annotations

import socket

import pytest

from tools import localinfra


@pytest.fixture(autouse=True)
def nothing_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test draws as a process that has handed out no port yet."""
    monkeypatch.setattr(localinfra, "_handed_out", set())


def test_a_free_port_lies_below_the_range_outgoing_connections_draw_from() -> None:
    floor = localinfra.ephemeral_floor()
    for _ in range(20):
        port = localinfra.free_port()
        assert localinfra.LOWEST_LISTENING_PORT <= port < floor
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # free indeed


def test_a_port_in_use_is_not_chosen(monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        choices = iter([busy, busy, 25000])
        monkeypatch.setattr(localinfra.random, "randrange", lambda *_: next(choices))
        monkeypatch.setattr(localinfra, "ephemeral_floor", lambda: 60000)
        assert localinfra.free_port() == 25000


def test_the_ports_of_several_servers_are_all_different(monkeypatch) -> None:
    """Nothing listens on a port chosen until its process starts: a second draw of the same
    port would pass the probe and leave one of the two servers unable to bind."""
    choices = iter([25000, 25000, 25001, 25000, 25001, 25002])
    monkeypatch.setattr(localinfra.random, "randrange", lambda *_: next(choices))
    monkeypatch.setattr(localinfra, "ephemeral_floor", lambda: 60000)
    assert localinfra.free_ports(["intake", "escalation", "notification"]) == {
        "intake": 25000,
        "escalation": 25001,
        "notification": 25002,
    }
