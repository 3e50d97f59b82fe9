"""How `make run` restarts a service that died (tools/devrun.py): pauses and giving up."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tools.devrun import RestartPolicy, ServiceProcesses, exit_words

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


@pytest.fixture
def alive() -> Iterator[subprocess.Popen[bytes]]:
    """A process that runs until the test ends, standing for a service that never gets ready."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


async def test_a_service_never_ready_is_told_with_its_last_answer_and_log(tmp_path, alive):
    """The bench's and the suite's folders go with the run: the error carries what the
    service said and logged."""

    async def unready(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"migrations":"at 0010, code needs 0011"}'
        writer.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(unready, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    processes = ServiceProcesses({}, {"intake": port}, tmp_path)
    (tmp_path / "intake.log").write_text("starting\nwaiting for the schema\n", encoding="utf-8")
    processes.processes["intake"] = alive
    try:
        with pytest.raises(TimeoutError) as raised:
            await processes.wait_ready("intake", timeout=0.5)
    finally:
        server.close()
        await server.wait_closed()
    said = str(raised.value)
    assert "intake not ready after 0.5s" in said
    assert '503 {"migrations":"at 0010, code needs 0011"}' in said
    assert said.endswith("starting\nwaiting for the schema")
