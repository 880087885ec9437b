"""One client connection of the proxy: h11's state over an asyncio stream.

Owns: ``Connection`` (read a whole request, send h11 events, answer a small body) and
``ClientGone`` (the client closed its connection while the response was being written).
"""

from __future__ import annotations

import asyncio

import h11

READ_SIZE = 65536


class ClientGone(Exception):
    """The client closed its connection while the response was being written."""


class Connection:
    """One client connection: h11 state plus the asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.SERVER)

    async def next_request(self) -> tuple[h11.Request, bytes] | None:
        """Return the next request with its whole body, or None when the client is done."""
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
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

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
