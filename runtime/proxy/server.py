"""The capture proxy's HTTP server: forward each call upstream exactly, hand a copy to the recorder.

Owns: ``ProxySettings``, ``ProxyServer`` (an asyncio HTTP/1.1 server on h11, forwarding with
httpx2's transport) and ``ProxyThread`` (the same server on a background thread, for tests,
benchmarks and embedding).

Invariants:
- The upstream gets the client's body bytes unchanged; the client gets the upstream's status,
  headers (less hop-by-hop ones) and body bytes unchanged, each chunk written as it arrives,
  never buffered to the end.
- Nothing on the response path waits for the store: the exchange is handed to the recorder's
  bounded queue after the last byte is written. ``x-llm386-recorded: false`` goes on a response
  whose record cannot be taken; with ``fail_closed`` the call is refused instead (a 503 in the
  provider's error format) and nothing is forwarded.
- A request body is held up to a limit and no further (a provider call: ``max_body_bytes``,
  64 MiB, above the providers' own request limits; ``/v1/traces``: ``max_otlp_body_bytes``, the
  OTLP receiver's 16 MiB): one over it is answered 413 (refused by its Content-Length before its body is read, or as soon as a chunked
  body passes the limit), nothing is forwarded, and the connection is closed.
- Failures the proxy sees itself (upstream refused, timed out, died mid-stream) reach the
  client as an error in that provider's format: a 502/504 body before a response started, an
  SSE ``error`` event after a stream started. Logs name the route and outcome, never a header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeAlias

import h11
import httpx2

from runtime.otel.wire import DEFAULT_OTLP_LIMITS, status_response
from runtime.proxy import apis
from runtime.proxy.apis import Api, Family
from runtime.proxy.connection import BodyTooLarge, ClientGone, Connection
from runtime.proxy.exchange import Exchange, Outcome, unreachable
from runtime.proxy.paged import PagedRelay
from runtime.proxy.pager import PagedCall, PageSettings, ProxyPager, skipped_record
from runtime.tracing.records import now_ms

log = logging.getLogger("llm386.proxy")
STATUS_PATH = "/llm386/status"
OTLP_PATH = "/v1/traces"  # OTLP/HTTP spans, served on this port too (runtime.otel.receiver)
# A provider call's body: above what the providers take themselves (Anthropic's Messages API
# 32 MB, OpenAI's 50 MB of images in a request), so the proxy never refuses a call they accept.
MAX_BODY_BYTES = 64 * 1024 * 1024
# (method, path, headers, body) -> (status, headers, body): the OTLP receiver, bound to a store.
OtlpHandler: TypeAlias = Callable[
    [str, str, Mapping[str, str], bytes], tuple[int, Mapping[str, str], bytes]
]


class Recorder(Protocol):
    """What the server needs from the recorder (``runtime.proxy.recorder.Recorder``)."""

    @property
    def accepting(self) -> bool: ...

    def submit(self, exchange: Exchange) -> bool: ...

    def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ProxySettings:
    """Where the proxy listens, where it forwards, and how long it waits."""

    host: str = "127.0.0.1"
    port: int = 8787
    upstreams: Mapping[Family, str] = field(default_factory=lambda: dict(apis.DEFAULT_UPSTREAMS))
    fail_closed: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 600.0  # a long generation can be quiet for minutes between events
    page: PageSettings | None = None  # --page: demand-page each call (runtime.proxy.pager)
    max_body_bytes: int = MAX_BODY_BYTES  # a provider call's body over it is refused with 413
    max_otlp_body_bytes: int = DEFAULT_OTLP_LIMITS.max_body_bytes  # and an OTLP export's

    def upstream_url(self, api: Api, target: str) -> str:
        query = target.partition("?")[2]
        url = self.upstreams[api.family].rstrip("/") + api.upstream_suffix
        return f"{url}?{query}" if query else url


@dataclass
class _Counters:
    calls: int = 0
    forwarded: int = 0  # calls that are not turns (count_tokens): forwarded, not recorded
    refused: int = 0
    upstream_failures: int = 0
    handed_over: int = 0  # calls whose exchange is complete and handed to the recorder
    paged: int = 0  # calls sent upstream paged (--page)
    unpaged: int = 0  # calls --page forwarded unchanged (a stream, another wire format)
    recalls: int = 0  # recall calls the proxy answered itself

    @property
    def in_flight(self) -> int:
        """Calls still being forwarded (a streaming client may have stopped reading already)."""
        return self.calls - self.refused - self.handed_over


class ProxyServer:
    """The proxy on the running asyncio loop: ``await start()``, then ``await close()``."""

    def __init__(
        self, settings: ProxySettings, recorder: Recorder, *, otlp: OtlpHandler | None = None
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.otlp = otlp
        self.counters = _Counters()
        self._transport: httpx2.AsyncHTTPTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._timeout = {"connect": settings.connect_timeout, "read": settings.read_timeout,
                         "write": settings.read_timeout, "pool": settings.connect_timeout}  # fmt: skip
        store = getattr(recorder, "store", None)
        self.pager = None if settings.page is None else ProxyPager(settings.page, store)

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the proxy is not listening yet")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        limits = httpx2.Limits(max_connections=None, max_keepalive_connections=512,
                               keepalive_expiry=60.0)  # fmt: skip
        self._transport = httpx2.AsyncHTTPTransport(limits=limits, trust_env=False)
        self._server = await asyncio.start_server(
            self._serve, self.settings.host, self.settings.port, backlog=1024
        )

    async def close(self) -> None:
        # Stop accepting, then let a connection accepted just before this make its transport and
        # start its handler while the server is still open. Python 3.11's server refuses (by an
        # assertion that the accept task swallows) a transport made after ``Server.close()``: its
        # socket would never be closed, only found by the garbage collector.
        if self._server is not None:
            loop = asyncio.get_running_loop()
            for listening in self._server.sockets:
                loop.remove_reader(listening.fileno())
        for _ in range(3):
            await asyncio.sleep(0)
        if self._server is not None:
            self._server.close()
        for writer in list(self._connections.values()):
            writer.close()  # an idle keep-alive connection's read ends; a busy one's write fails
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=5.0)
        if self._transport is not None:
            await self._transport.aclose()
        if self._server is not None:
            await self._server.wait_closed()
        # A transport closes its socket in a callback it schedules; let those run before the
        # loop stops, or the socket is left to the garbage collector (a ResourceWarning).
        for _ in range(3):
            await asyncio.sleep(0)

    def status(self) -> dict[str, Any]:
        """Return the status page's JSON: up, calls, recorded, lost, queue depth and more."""
        c = self.counters
        return {"up": True, "calls": c.calls, "forwarded_only": c.forwarded, "refused": c.refused,
                "upstream_failures": c.upstream_failures, "in_flight": c.in_flight,
                "fail_closed": self.settings.fail_closed, **self._paging_status(),
                "upstreams": {f.value: u for f, u in sorted(self.settings.upstreams.items())},
                **self.recorder.status()}  # fmt: skip

    def _paging_status(self) -> dict[str, Any]:
        page, c = self.settings.page, self.counters
        if page is None:
            return {"paging": None}
        return {"paging": {"preset": page.preset, "budget": page.budget, "paged": c.paged,
                           "unpaged": c.unpaged, "recalls": c.recalls}}  # fmt: skip

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while (item := await conn.next_request(self._body_limit)) is not None:
                await self._answer(conn, *item)
                await conn.drain()
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    break
                conn.h11.start_next_cycle()
        except BodyTooLarge as exc:
            with contextlib.suppress(ClientGone, ConnectionError, h11.ProtocolError):
                await self._too_large(conn, exc)
        except (ClientGone, ConnectionError, h11.ProtocolError):
            pass  # the client went away or spoke something that is not HTTP/1.1
        finally:
            writer.close()
            if task is not None:
                self._connections.pop(task, None)

    def _body_limit(self, request: h11.Request) -> int:
        """Return the most body bytes ``request`` may have (OTLP exports have their own)."""
        if self.otlp is not None and _path(request.target.decode("latin-1")) == OTLP_PATH:
            return self.settings.max_otlp_body_bytes
        return self.settings.max_body_bytes

    async def _too_large(self, conn: Connection, exc: BodyTooLarge) -> None:
        """Answer 413 (OTLP's Status on /v1/traces, else the provider's error), then close."""
        target = exc.request.target.decode("latin-1")
        path = _path(target)
        log.error("refused a request to %s: %s", path, exc)
        close = [("connection", "close")]
        if self.otlp is not None and path == OTLP_PATH:
            kind = next((v.decode("latin-1") for n, v in exc.request.headers
                         if n == b"content-type"), None)  # fmt: skip
            made, out = status_response(413, exc.message, kind)
            conn.respond_as(413, out, made, close)
        else:
            family = apis.family_of(target)
            out = apis.error_body(family, 413, apis.TOO_LARGE[family], exc.message)
            conn.respond(413, out, close)
        await conn.drain()
        await conn.linger()

    async def _answer(self, conn: Connection, request: h11.Request, body: bytes) -> None:
        target = request.target.decode("latin-1")
        method = request.method.decode("latin-1")
        api = apis.route(target)
        if method == "GET" and target.split("?", 1)[0] == STATUS_PATH:
            status = json.dumps(self.status(), sort_keys=True).encode()
            conn.respond(200, status, [("cache-control", "no-store")])
        elif self.otlp is not None and _path(target) == OTLP_PATH:
            await self._otlp(conn, method, target, request, body)
        elif api is None or method != "POST":
            message = f"llm386 proxy: no route {method} {target.split('?', 1)[0]}"
            family = apis.family_of(target)
            conn.respond(404, apis.error_body(family, 404, "not_found_error", message), [])
        else:
            headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers)
            await self._forward(conn, api, target, headers, body)

    async def _otlp(
        self, conn: Connection, method: str, target: str, request: h11.Request, body: bytes
    ) -> None:
        assert self.otlp is not None
        headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in request.headers}
        # The receiver writes to the store: off the event loop, so forwarding never waits for it.
        try:
            status, out_headers, out = await asyncio.to_thread(
                self.otlp, method, target, headers, body
            )
        except Exception:  # a bug in the receiver: answer it (its write was rolled back)
            log.exception("the OTLP receiver failed on a request to %s", OTLP_PATH)
            message = ("the receiver failed on this request (a bug; the proxy's log has the "
                       "details); nothing of it was stored")  # fmt: skip
            status, (made, out) = 500, status_response(500, message, headers.get("content-type"))
            out_headers = {"Content-Type": made}
        kind = next((v for k, v in out_headers.items() if k.lower() == "content-type"), None)
        conn.respond_as(status, out, kind or "application/json")

    async def _forward(
        self, conn: Connection, api: Api, target: str, headers: apis.Headers, body: bytes
    ) -> None:
        self.counters.calls += 1
        ex = Exchange(api, target, self.settings.upstream_url(api, target), now_ms(), body,
                      apis.redact(headers), session=_header(headers, apis.SESSION_HEADER))  # fmt: skip
        accepting = self.recorder.accepting
        if self.settings.fail_closed and not accepting:
            self.counters.refused += 1
            message = "llm386 proxy: the recorder is down and the proxy runs --fail-closed"
            log.error("refused %s: the recorder is down (--fail-closed)", api.path)
            conn.respond(503, apis.error_body(api.family, 503, "overloaded_error", message), [])
            return
        clock = time.perf_counter()
        if self.pager is not None and api.turn:
            paged = await self._page(conn, api, ex)
            if isinstance(paged, PagedCall):
                await PagedRelay(self, conn, api, ex, clock, paged).relay(headers, accepting)
                return
            if not paged:
                return  # refused
        call = _Call(self, conn, api, ex, clock)
        await call.relay(headers, accepting)

    async def _page(self, conn: Connection, api: Api, ex: Exchange) -> PagedCall | bool:
        """Return the paged call, True to forward it unpaged, or False when it was refused."""
        assert self.pager is not None and self.settings.page is not None
        preset = self.settings.page.preset
        try:  # the policy counts tokens: off the event loop, so other calls keep flowing
            prepared = await asyncio.to_thread(self.pager.prepare, api.wire, ex.request_body,
                                               ex.session)  # fmt: skip
        except Exception as exc:  # a bug in paging must not take the agent down with it
            reason = f"paging failed ({type(exc).__name__}: {str(exc)[:200]})"
            # The message may quote the request: the log names the route and the type only.
            log.error("%s: paging failed (%s); see the record", api.path, type(exc).__name__)
            if self.settings.fail_closed:
                self.counters.refused += 1
                message = f"llm386 proxy: {reason}, and the proxy runs --fail-closed"
                conn.respond(502, apis.error_body(api.family, 502, "api_error", message), [])
                return False
            prepared = reason
        if isinstance(prepared, str):
            self.counters.unpaged += 1
            ex.paging = skipped_record(prepared, preset)
            return True
        self.counters.paged += 1
        return prepared

    def hand_over(self, api: Api, ex: Exchange) -> None:
        """Give a finished exchange to the recorder (before the client can see its last byte)."""
        self.counters.handed_over += 1
        if not api.turn:
            self.counters.forwarded += 1
            return
        if not self.recorder.submit(ex):
            log.error("LOST the record of a %s call: the recorder is down or its queue is full",
                      api.path)  # fmt: skip


class _Call:
    """One forwarded call. The exchange is handed over exactly once, just before the last
    write to the client, so a client that has the whole response can find its record queued."""

    def __init__(
        self, server: ProxyServer, conn: Connection, api: Api, ex: Exchange, clock: float
    ) -> None:
        self.server, self.conn, self.api, self.ex, self.clock = server, conn, api, ex, clock
        self.chunks: list[bytes] = []
        self.handed = False

    def finish(self) -> None:
        if self.handed:
            return
        self.handed = True
        self.ex.total_ms = round((time.perf_counter() - self.clock) * 1000, 3)
        self.ex.response_body = b"".join(self.chunks)
        self.server.hand_over(self.api, self.ex)

    async def relay(self, headers: apis.Headers, accepting: bool) -> None:
        transport = self.server._transport
        assert transport is not None
        upstream = httpx2.Request("POST", self.ex.upstream_url,
                                  headers=apis.upstream_headers(headers), content=self.ex.request_body,
                                  extensions={"timeout": self.server._timeout})  # fmt: skip
        try:
            try:
                response = await transport.handle_async_request(upstream)
            except httpx2.TransportError as exc:
                self._unreachable(exc)
                return
            try:
                await self._stream(response, accepting)
            finally:
                self.finish()
                await response.aclose()
        finally:
            self.finish()

    async def _stream(self, response: httpx2.Response, accepting: bool) -> None:
        ex = self.ex
        ex.ttfb_ms = round((time.perf_counter() - self.clock) * 1000, 3)
        ex.status = response.status_code
        raw = tuple(response.headers.multi_items())
        ex.response_headers = apis.redact(raw)
        out = apis.client_headers(raw)
        length = response.headers.get("content-length")
        if length is not None:
            out.append(("content-length", length))
        if not accepting:
            out.append((apis.RECORDED_HEADER, "false"))
        try:
            self.conn.send(h11.Response(status_code=response.status_code, headers=out))
            expected, received = int(length) if length is not None else None, 0
            async for chunk in response.aiter_raw():
                self.chunks.append(chunk)
                received += len(chunk)
                if expected is not None and received >= expected:
                    self.finish()  # this chunk completes a framed body for the client
                self.conn.send(h11.Data(data=chunk))
                await self.conn.drain()
            self.finish()
            self.conn.send(h11.EndOfMessage())
        except ClientGone:
            if not self.handed:  # else the client had the whole body before it left
                ex.outcome, ex.error = (
                    Outcome.CLIENT_GONE,
                    "the client hung up before the body ended",
                )
        except httpx2.TransportError as exc:
            self._died(exc, framed=length is not None)

    def _unreachable(self, exc: Exception) -> None:
        ex, family = self.ex, self.api.family
        self.server.counters.upstream_failures += 1
        status, kind = unreachable(ex, exc, timeout=isinstance(exc, httpx2.TimeoutException))
        log.error("%s: %s", self.api.path, ex.error)
        self.finish()
        with contextlib.suppress(ClientGone):
            self.conn.respond(status, apis.error_body(family, status, kind, ex.error or ""), [])

    def _died(self, exc: Exception, *, framed: bool) -> None:
        ex = self.ex
        self.server.counters.upstream_failures += 1
        timeout = isinstance(exc, httpx2.TimeoutException)
        ex.outcome = Outcome.TIMEOUT if timeout else Outcome.UPSTREAM_DIED
        what = "went quiet for too long" if timeout else "broke off"
        ex.error = f"llm386 proxy: the upstream's response {what} mid-body ({type(exc).__name__})"
        log.error("%s: %s", self.api.path, ex.error)
        if framed:  # a body with a length cannot be ended early: close so the client sees it
            self.finish()
            self.conn.writer.close()
            return
        event = apis.stream_error_event(self.api.family, "api_error", ex.error)
        self.chunks.append(event)  # what the client is sent is what is recorded
        self.finish()
        with contextlib.suppress(ClientGone):
            self.conn.send(h11.Data(data=event))
            self.conn.send(h11.EndOfMessage())


def _header(headers: apis.Headers, name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name), None)


class ProxyThread:
    """A ``ProxyServer`` on its own event loop in a daemon thread; a context manager."""

    def __init__(
        self, settings: ProxySettings, recorder: Recorder, *, otlp: OtlpHandler | None = None
    ) -> None:
        self.server = ProxyServer(settings, recorder, otlp=otlp)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="llm386-proxy", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def start(self) -> ProxyThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            _finish_loop(self._loop)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # reported to start()'s caller, e.g. the port is taken
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.close()

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()


def _finish_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running on ``loop``, let it end, then close the loop: a task left
    pending (a connection the timeout gave up on) would keep its socket past the loop."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for _ in range(3):  # their transports close their sockets in callbacks: let those run
            loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _path(target: str) -> str:
    """Return a request target's path, without its query or a trailing slash."""
    return target.split("?", 1)[0].rstrip("/")
