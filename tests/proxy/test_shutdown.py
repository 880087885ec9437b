"""The proxy's shutdown closes every connection it accepted, even one accepted at the last moment."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from pathlib import Path
from typing import Any

from runtime import open_store
from runtime.proxy import ProxySettings, Recorder
from runtime.proxy.server import ProxyServer
from runtime.storage.tracestore import KvTraceStore


def _close_as_a_connection_is_accepted(tmp_path: Path) -> bytes:
    """Start a proxy, connect, and begin its close just before the accepted connection's task
    first runs (the race the shutdown must survive); return what the client then reads."""
    store = open_store(tmp_path / "store")
    recorder = Recorder(store, KvTraceStore(store)).start()
    client: socket.socket | None = None

    async def scenario() -> None:
        nonlocal client
        loop = asyncio.get_running_loop()
        proxy = ProxyServer(ProxySettings(port=0), recorder)
        await proxy.start()
        closing: list[asyncio.Task[None]] = []
        create_task = loop.create_task

        def close_first(coro: Any, **options: Any) -> asyncio.Task[Any]:
            if not closing and getattr(coro, "__qualname__", "").endswith("_accept_connection2"):
                closing.append(create_task(proxy.close()))  # its first step runs first
            return create_task(coro, **options)

        loop.create_task = close_first  # type: ignore[method-assign]
        client = socket.create_connection(("127.0.0.1", proxy.address[1]), timeout=5)
        while not closing:
            await asyncio.sleep(0.001)
        await closing[0]

    try:
        asyncio.run(scenario())
        assert client is not None
        return client.recv(1)  # b"" once the proxy has closed its side; a timeout if it leaked
    finally:
        if client is not None:
            client.close()
        recorder.close()
        store.close()


def test_a_connection_accepted_as_the_proxy_closes_is_closed_not_leaked(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert _close_as_a_connection_is_accepted(tmp_path) == b""
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
