"""One paged call on the wire: the paged request sent, recall calls answered, the reply cleaned.

Owns: ``PagedRelay``. The server hands it a call that ``ProxyPager.prepare`` paged; it posts
the paged request upstream, and while the model's answer calls only ``recall``, answers those
calls itself (``PagedCall.answer``) and posts the continued request. The client then gets the
rounds' answers as one (``recall.merged``: what the model said before each recall, thinking
included, then the last answer) with every recall call taken out (``recall.without_recall``).

Invariants:
- A JSON answer is read whole before anything is written to the client, since a recall call
  must never reach it. A stream is forwarded event by event through a ``StreamFilter``, which
  drops the recall calls and holds only the closing events until the proxy knows whether it
  continues; a continuation's events follow in the same stream.
- The exchange records the client's bytes (``request_body``), the last request sent upstream
  (``sent_body``: what the model saw, byte for byte) and the bytes the client got.
- Whatever the upstream answers other than a 200 JSON reply (an error in any round, a body that
  is not JSON) goes to the client as the upstream sent it: status, headers and body, which are
  that API's own error. A transport failure is a 502/504 in the API's error format; a failure
  after a stream began (the upstream's, or paging's own) ends it with an error event, recorded.
- At most ``MAX_RECALL_ROUNDS`` continuations: then the last answer goes back without its
  recall calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import h11
import httpx2

from runtime.proxy import apis, recall
from runtime.proxy.apis import Api
from runtime.proxy.connection import ClientGone, Connection
from runtime.proxy.exchange import Exchange, Outcome, unreachable
from runtime.proxy.pager import MAX_RECALL_ROUNDS, PagedCall, paging_record
from runtime.proxy.streamfilter import StreamFilter, sse_split, stream_filter

if TYPE_CHECKING:
    from runtime.proxy.server import ProxyServer

log = logging.getLogger("llm386.proxy")


class _Answer:
    """One upstream answer, read whole."""

    def __init__(self, status: int, headers: apis.Headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def reply(self) -> dict[str, Any] | None:
        """Return the answer as a reply object, when it is a 200 JSON object."""
        if self.status != 200:
            return None
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None


class PagedRelay:
    """Relays one paged call (see the module docstring); the exchange is handed over once."""

    def __init__(
        self, server: ProxyServer, conn: Connection, api: Api, ex: Exchange, clock: float,
        call: PagedCall,
    ) -> None:  # fmt: skip
        self.server, self.conn, self.api, self.ex, self.clock = server, conn, api, ex, clock
        self.call = call
        self.handed = False
        self.stream: _StreamRelay | None = None  # a streamed call's relay, once it has begun

    async def relay(self, headers: apis.Headers, accepting: bool) -> None:
        try:
            await self._relay(headers, accepting)
        except (ClientGone, ConnectionError):
            raise
        except Exception as exc:  # a bug in paging mid-call: the agent gets an error, not a hang
            self._broke(exc)

    def _broke(self, exc: Exception) -> None:
        ex, family = self.ex, self.api.family
        # The message may quote the request or the reply: the log names the route and type only.
        log.error("%s: paging failed mid-call (%s); see the record", self.api.path,
                  type(exc).__name__)  # fmt: skip
        ex.outcome = Outcome.UPSTREAM_DIED
        ex.error = f"llm386 proxy: paging failed mid-call ({type(exc).__name__}: {str(exc)[:200]})"
        stream = self.stream
        if stream is not None and stream.started:  # no new status now: an error event ends it
            event = apis.stream_error_event(family, "api_error", ex.error)
            stream.chunks.append(event)  # what the client is sent is what is recorded
            self._finish(b"".join(stream.chunks))
            with contextlib.suppress(ClientGone, h11.LocalProtocolError):
                self.conn.send(h11.Data(data=event))
                self.conn.send(h11.EndOfMessage())
            return
        started = self.handed
        self._finish(b"")
        if not started:
            with contextlib.suppress(ClientGone, h11.LocalProtocolError):
                self.conn.respond(502, apis.error_body(family, 502, "api_error", ex.error), [])

    async def _relay(self, headers: apis.Headers, accepting: bool) -> None:
        out = apis.upstream_headers(headers)
        if self.call.stream:
            self.stream = _StreamRelay(self, accepting)
            await self.stream.relay(out)
            return
        wire, call = self.api.wire, self.call
        rounds = 0
        earlier: list[dict[str, Any]] = []  # the replies that only called recall
        while True:
            body = call.body
            self.ex.sent_body = body
            try:
                answer = await self._post(out, body)
            except httpx2.TransportError as exc:
                self._failed(exc)
                return
            reply = answer.reply()
            if reply is None:
                break
            call.add_round(reply)
            if rounds < MAX_RECALL_ROUNDS and recall.only_recalls(wire, reply):
                rounds += 1
                earlier.append(reply)
                answers = call.answer(recall.recall_calls(wire, reply), rounds)
                self.server.counters.recalls += len(answers)
                call.upstream = recall.continued(wire, call.upstream, reply, answers)
                continue
            if earlier or recall.recall_calls(wire, reply):  # every round's content, in order
                whole = recall.merged(wire, earlier, reply)
                answer.body = recall.encode(recall.without_recall(wire, whole))
            break
        self._respond(answer, accepting)

    async def _post(self, headers: list[tuple[str, str]], body: bytes) -> _Answer:
        transport = self.server._transport
        assert transport is not None
        request = httpx2.Request("POST", self.ex.upstream_url, headers=headers, content=body,
                                 extensions={"timeout": self.server._timeout})  # fmt: skip
        response = await transport.handle_async_request(request)
        try:
            if self.ex.ttfb_ms is None:
                self.ex.ttfb_ms = round((time.perf_counter() - self.clock) * 1000, 3)
            chunks = [chunk async for chunk in response.aiter_raw()]
        finally:
            await response.aclose()
        return _Answer(
            response.status_code, tuple(response.headers.multi_items()), b"".join(chunks)
        )

    def _finish(self, body: bytes) -> None:
        if self.handed:
            return
        self.handed = True
        ex, call = self.ex, self.call
        ex.total_ms = round((time.perf_counter() - self.clock) * 1000, 3)
        ex.response_body = body
        assert self.server.settings.page is not None
        paged, state = self.server.pager.finish(call) if self.server.pager else (call.paged, None)
        ex.paging = paging_record(call, paged, ex.request_body, self.server.settings.page.preset)
        ex.paging_state = None if state is None else state.to_json()
        self.server.hand_over(self.api, ex)

    def _respond(self, answer: _Answer, accepting: bool) -> None:
        ex = self.ex
        ex.status = answer.status
        ex.response_headers = apis.redact(answer.headers)
        out = apis.client_headers(answer.headers)
        out.append(("content-length", str(len(answer.body))))
        if not accepting:
            out.append((apis.RECORDED_HEADER, "false"))
        self._finish(answer.body)
        try:
            self.conn.send(h11.Response(status_code=answer.status, headers=out))
            self.conn.send(h11.Data(data=answer.body))
            self.conn.send(h11.EndOfMessage())
        except ClientGone:
            pass  # the exchange is recorded complete: the client had been sent every byte

    def _failed(self, exc: Exception) -> None:
        ex, family = self.ex, self.api.family
        self.server.counters.upstream_failures += 1
        status, kind = unreachable(ex, exc, timeout=isinstance(exc, httpx2.TimeoutException))
        log.error("%s: %s", self.api.path, ex.error)
        self._finish(b"")
        with contextlib.suppress(ClientGone):
            self.conn.respond(status, apis.error_body(family, status, kind, ex.error or ""), [])


class _StreamRelay:
    """A paged streaming call: each round's events forwarded through a ``StreamFilter``."""

    def __init__(self, paged: PagedRelay, accepting: bool) -> None:
        self.p, self.accepting = paged, accepting
        self.chunks: list[bytes] = []
        self.started = False

    async def relay(self, headers: list[tuple[str, str]]) -> None:
        p, wire = self.p, self.p.api.wire
        filt, rounds = stream_filter(wire), 0
        while True:
            p.ex.sent_body = p.call.body
            if not await self._round(headers, filt):
                return
            reply = filt.reply() or {}
            p.call.add_round(reply)
            if rounds < MAX_RECALL_ROUNDS and filt.recalled_only:
                rounds += 1
                answers = p.call.answer(recall.recall_calls(wire, reply), rounds)
                p.server.counters.recalls += len(answers)
                p.call.upstream = recall.continued(wire, p.call.upstream, reply, answers)
                filt = filt.next_round()
                continue
            try:
                await self._send(filt.tail(p.call.usage))  # every round's, this one's last
                p._finish(b"".join(self.chunks))
                p.conn.send(h11.EndOfMessage())
            except ClientGone:
                self._gone()
            return

    async def _round(self, headers: list[tuple[str, str]], filt: StreamFilter) -> bool:
        """Stream one round to the client; return False when the call ended in this round."""
        p = self.p
        transport = p.server._transport
        assert transport is not None
        request = httpx2.Request("POST", p.ex.upstream_url, headers=headers, content=p.call.body,
                                 extensions={"timeout": p.server._timeout})  # fmt: skip
        try:
            response = await transport.handle_async_request(request)
        except httpx2.TransportError as exc:
            return self._broke(exc, before=True)
        try:
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or not kind.startswith("text/event-stream"):
                body = b"".join([c async for c in response.aiter_raw()])
                return self._refused(response, body)
            self._start(response)
            buffer = bytearray()
            async for chunk in response.aiter_raw():
                for event in sse_split(buffer, chunk):
                    await self._send(filt.event(event))
            if buffer.strip():  # a last event with no blank line after it
                await self._send(filt.event(bytes(buffer)))
            return True
        except httpx2.TransportError as exc:
            return self._broke(exc, before=False)
        except ClientGone:
            self._gone()
            return False
        finally:
            await response.aclose()

    def _gone(self) -> None:
        p = self.p
        if not p.handed:
            p.ex.outcome, p.ex.error = Outcome.CLIENT_GONE, "the client hung up before the end"
        p._finish(b"".join(self.chunks))

    def _start(self, response: httpx2.Response) -> None:
        if self.started:
            return
        p, self.started = self.p, True
        raw = tuple(response.headers.multi_items())
        p.ex.status, p.ex.response_headers = response.status_code, apis.redact(raw)
        if p.ex.ttfb_ms is None:
            p.ex.ttfb_ms = round((time.perf_counter() - p.clock) * 1000, 3)
        out = apis.client_headers(raw)
        if not self.accepting:
            out.append((apis.RECORDED_HEADER, "false"))
        p.conn.send(h11.Response(status_code=response.status_code, headers=out))

    async def _send(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.chunks.append(piece)
            self.p.conn.send(h11.Data(data=piece))
        if pieces:
            await self.p.conn.drain()

    def _refused(self, response: httpx2.Response, body: bytes) -> bool:
        """The upstream answered a round with an error: the client gets it as it came, or, once
        the stream has started, as an error event in the stream."""
        p = self.p
        if not self.started:
            answer = _Answer(response.status_code, tuple(response.headers.multi_items()), body)
            p._respond(answer, self.accepting)
            return False
        p.ex.outcome = Outcome.UPSTREAM_DIED
        p.ex.error = (
            f"llm386 proxy: a recall continuation failed upstream (HTTP {response.status_code})"
        )
        return self._end_with_error(body.decode("utf-8", "replace")[:500] or p.ex.error)

    def _broke(self, exc: Exception, *, before: bool) -> bool:
        p = self.p
        if before and not self.started:
            p._failed(exc)
            return False
        p.server.counters.upstream_failures += 1
        timeout = isinstance(exc, httpx2.TimeoutException)
        p.ex.outcome = Outcome.TIMEOUT if timeout else Outcome.UPSTREAM_DIED
        p.ex.error = f"llm386 proxy: the upstream's stream broke off ({type(exc).__name__})"
        return self._end_with_error(p.ex.error)

    def _end_with_error(self, message: str) -> bool:
        p = self.p
        log.error("%s: %s", p.api.path, p.ex.error)
        event = apis.stream_error_event(p.api.family, "api_error", message)
        self.chunks.append(event)
        p._finish(b"".join(self.chunks))
        with contextlib.suppress(ClientGone):
            p.conn.send(h11.Data(data=event))
            p.conn.send(h11.EndOfMessage())
        return False
