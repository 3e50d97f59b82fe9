"""How `make run` restarts a service that died (tools/devrun.py): pauses and giving up."""

from __future__ import annotations

import signal

import pytest

from tools.devrun import RestartPolicy, exit_words

POLICY = RestartPolicy(first_pause=1.0, longest_pause=8.0, crashes_allowed=5, within=300.0)


def test_each_crash_doubles_the_pause_up_to_the_longest():
    crashes: list[float] = []
    pauses = []
    for moment in (0.0, 10.0, 20.0, 30.0):
        crashes.append(moment)
        pauses.append(POLICY.pause_after(crashes))
    assert pauses == [1.0, 2.0, 4.0, 8.0]
    longer = RestartPolicy(first_pause=1.0, longest_pause=3.0, crashes_allowed=10)
    assert longer.pause_after([0.0, 1.0, 2.0, 3.0]) == 3.0


def test_too_many_crashes_within_the_window_give_up():
    assert POLICY.pause_after([0.0, 10.0, 20.0, 30.0, 40.0]) is None


def test_crashes_long_ago_are_forgiven():
    # Four crashes on the first day, one now: the window holds one, so the first pause again.
    assert POLICY.pause_after([0.0, 10.0, 20.0, 30.0, 86_400.0]) == 1.0


@pytest.mark.parametrize(
    ("returncode", "words"),
    [
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (1, "exited with status 1"),
        (0, "exited with status 0"),
    ],
)
def test_how_a_service_ended_is_said_in_words(returncode, words):
    assert exit_words(returncode) == words
