"""The load generator's HTTP client: HTTP/1.1 over asyncio streams, keep-alive connections,
each request written as one buffer.

The generator stands in for the county platform's gateway, which does not run on our machine;
here it shares the services' cores, so every millisecond it spends is one the services lose.
httpx's connection pool looks at each of its connections on every request: with the 64
connections of a load run that cost the generator more CPU per report (5.6–5.9 ms) than intake
spent serving it. This client does only what the load needs: POST a body, read the status and
the body back, reuse the connection unless the server closes it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from shared.serve import KEEP_ALIVE_SECONDS

HEAD_END = b"\r\n\r\n"
# The longest status line and headers an answer may have: intake's are a few hundred bytes.
HEAD_LIMIT = 64 * 1024
NO_ANSWER = (
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
)


class HttpError(Exception):
    """No answer: the connection failed, closed early or the answer did not come in time. Its
    text names the cause (`TimeoutError`, `ConnectionResetError`…), as the bench counts it."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status code and headers (names in lower case) of an answer's head, its blank line
    included."""
    status_line, *lines = head[: -len(HEAD_END)].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise HttpError(f"not an HTTP/1.1 answer: {status_line!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


def request_bytes(
    method: str, path: str, authority: str, headers: Mapping[str, str], content: bytes
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {authority}", f"Content-Length: {len(content)}"]
    head.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + content


# A connection idle for longer may be closed by the server as the request goes out: it is
# dropped instead, with a margin for the two clocks.
IDLE_SECONDS = KEEP_ALIVE_SECONDS - 5


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = asyncio.get_running_loop().time()

    async def exchange(self, request: bytes) -> tuple[Answer, bool]:
        """Send `request`, read its answer; whether the connection may be used again."""
        self.writer.write(request)
        head = await self.reader.readuntil(HEAD_END)
        status, headers = parse_head(head)
        if "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunks()
        else:
            content = await self.reader.read()  # delimited by the close
            return Answer(status, headers, content), False
        return Answer(status, headers, content), headers.get("connection") != "close"

    async def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers are sent to us
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


class Client:
    """At most `connections` requests at once, each on a connection of its own, reused."""

    def __init__(self, base_url: str, connections: int, timeout: float) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None:
            raise ValueError(f"plain http://host:port only, not {base_url!r}")
        self._host = url.hostname
        self._port = url.port or 80
        self._authority = url.netloc
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Connection] = []

    async def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Answer:
        request = request_bytes("POST", self._prefix + path, self._authority, headers, content)
        async with self._slots:
            connection = self._reusable()
            try:
                async with asyncio.timeout(self._timeout):
                    if connection is None:
                        connection = _Connection(
                            *await asyncio.open_connection(self._host, self._port, limit=HEAD_LIMIT)
                        )
                    answer, reusable = await connection.exchange(request)
            except BaseException as error:
                # Half an exchange leaves the connection unusable, whatever ended it.
                if connection is not None:
                    connection.close()
                if isinstance(error, HttpError):
                    raise
                if isinstance(error, NO_ANSWER):
                    raise HttpError(type(error).__name__) from error
                raise
            if reusable:
                connection.idle_since = asyncio.get_running_loop().time()
                self._idle.append(connection)
            else:
                connection.close()
            return answer

    def _reusable(self) -> _Connection | None:
        """The connection used last, unless the server may have closed it for idleness (then
        it and every older one are closed)."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
