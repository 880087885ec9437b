"""One client connection of the proxy: h11's state over an asyncio stream.

Owns: ``Connection`` (read a whole request up to a size limit, send h11 events, answer a
small body), ``BodyTooLarge`` (a request over that limit) and ``ClientGone`` (the client
closed its connection while the response was being written).

Invariants:
- A request body is held up to its limit (``max_body`` of its request line) and never more: one whose Content-Length
  says more is refused before any of its body is read, and a chunked one is refused as soon
  as what arrived passes the limit. Memory per connection stays under the limit plus one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import h11

READ_SIZE = 65536
LINGER_SECONDS = 10.0  # the longest a refused body is read (and dropped) before closing
LINGER_IDLE_SECONDS = 2.0


class BodyTooLarge(Exception):
    """A request whose body is over the limit: declared by Content-Length, or seen arriving."""

    def __init__(self, request: h11.Request, size: int, limit: int, *, declared: bool) -> None:
        super().__init__(f"a body of {size:,} bytes is over the limit of {limit:,}")
        self.request, self.size, self.limit, self.declared = request, size, limit, declared

    @property
    def message(self) -> str:
        """Say what was refused and what to do (the client reads it; it quotes no content)."""
        if self.declared:
            what = f"the request body is {self.size:,} bytes (its Content-Length)"
        else:
            what = f"the request body passed {self.size:,} bytes before it ended"
        return (
            f"llm386 proxy: {what}, over the limit of {self.limit:,} bytes; nothing of it was kept "
            "or forwarded. Send a smaller request (fewer or smaller attachments, or "
            "smaller export batches)"
        )


class ClientGone(Exception):
    """The client closed its connection while the response was being written."""


class Connection:
    """One client connection: h11 state plus the asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.SERVER)

    async def next_request(
        self, max_body: Callable[[h11.Request], int]
    ) -> tuple[h11.Request, bytes] | None:
        """Return the next request with its whole body, or None when the client is done.

        Raise BodyTooLarge, with nothing more read, once the body is known to pass its limit,
        ``max_body(request)``.
        """
        limit = 0
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self.reader.read(READ_SIZE)
                self.h11.receive_data(data)
                if not data and request is None:
                    return None
            elif isinstance(event, h11.Request):
                request, limit = event, max_body(event)
                declared = _content_length(event)
                if declared is not None and declared > limit:
                    raise BodyTooLarge(event, declared, limit, declared=True)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > limit and request is not None:
                    raise BodyTooLarge(request, len(body), limit, declared=False)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    async def linger(self) -> None:
        """Read and drop what the client still sends, for a few seconds at most.

        A client that writes its whole body before reading (most do) would otherwise find the
        connection reset under it and never read the answer it was sent; nothing read here is
        kept, so memory stays bounded, and the time is bounded by LINGER_SECONDS."""
        deadline = time.monotonic() + LINGER_SECONDS
        with contextlib.suppress(ConnectionError, TimeoutError):
            while (left := deadline - time.monotonic()) > 0:
                wait = min(left, LINGER_IDLE_SECONDS)
                if not await asyncio.wait_for(self.reader.read(READ_SIZE), wait):
                    return

    def send(self, event: h11.Event) -> None:
        if self.writer.is_closing():
            raise ClientGone
        data = self.h11.send(event)
        if data:
            self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise ClientGone from exc

    def respond(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.respond_as(status, body, "application/json", headers)

    def respond_as(
        self, status: int, body: bytes, kind: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        head = [("content-type", kind), ("content-length", str(len(body)))]
        self.send(h11.Response(status_code=status, headers=head + (headers or [])))
        self.send(h11.Data(data=body))
        self.send(h11.EndOfMessage())


def _content_length(request: h11.Request) -> int | None:
    """Return the Content-Length a request declares (h11 has checked it is one number)."""
    value = next((v for n, v in request.headers if n == b"content-length"), None)
    return None if value is None else int(value)
