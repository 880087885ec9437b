"""One paged call on the wire: the paged request sent, recall calls answered, the reply cleaned.

Owns: ``PagedRelay``. The server hands it a call that ``ProxyPager.prepare`` paged; it posts
the paged request upstream, and while the model's answer calls only ``recall``, answers those
calls itself (``PagedCall.answer``) and posts the continued request. The client then gets the
last answer with every recall call taken out (``recall.without_recall``).

Invariants:
- Non-streaming only (``prepare`` forwards streams unpaged): the whole answer is read before
  anything is written to the client, since a recall call must never reach it.
- The exchange records the client's bytes (``request_body``), the last request sent upstream
  (``sent_body``: what the model saw, byte for byte) and the bytes the client got.
- Whatever the upstream answers other than a 200 JSON reply (an error in any round, a body that
  is not JSON) goes to the client as the upstream sent it: status, headers and body, which are
  that API's own error. A transport failure is a 502/504 in the API's error format.
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
from runtime.proxy.exchange import Exchange, unreachable
from runtime.proxy.pager import MAX_RECALL_ROUNDS, PagedCall, paging_record

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

    async def relay(self, headers: apis.Headers, accepting: bool) -> None:
        out = apis.upstream_headers(headers)
        wire, call = self.api.wire, self.call
        rounds = 0
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
            call.calls += recall.tool_calls(wire, reply)
            if rounds < MAX_RECALL_ROUNDS and recall.only_recalls(wire, reply):
                rounds += 1
                answers = call.answer(recall.recall_calls(wire, reply), rounds)
                self.server.counters.recalls += len(answers)
                call.upstream = recall.continued(wire, call.upstream, reply, answers)
                continue
            if recall.recall_calls(wire, reply):
                answer.body = recall.encode(recall.without_recall(wire, reply))
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
