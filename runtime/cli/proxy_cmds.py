"""``llm386 proxy``: record any agent by pointing its base URL at a local capture proxy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from runtime.cli.common import Output, add_command, open_store_from
from runtime.proxy import DEFAULT_UPSTREAMS, Family, ProxyServer, ProxySettings, Recorder
from runtime.storage.lmdb.traces import LmdbTraceStore


def cmd_proxy(args: argparse.Namespace) -> Output:
    logging.basicConfig(level=logging.INFO, format="llm386 proxy: %(message)s", stream=sys.stderr)
    settings = ProxySettings(
        host=args.host, port=args.port, fail_closed=args.fail_closed,
        upstreams={Family.ANTHROPIC: args.anthropic_upstream, Family.OPENAI: args.openai_upstream},
        read_timeout=args.timeout,
    )  # fmt: skip
    # The writer thread is CPU-bound while it indexes a batch; a short GIL switch interval lets
    # the event loop in at once, so forwarding never waits a whole 5 ms slice for it.
    sys.setswitchinterval(0.0002)
    store = open_store_from(args, create=True)
    recorder = Recorder(store, LmdbTraceStore(store)).start()
    try:
        status = asyncio.run(_serve(settings, recorder))
    finally:
        recorder.close()
    status.update(recorder.status())
    text = (f"llm386 proxy stopped: {status['calls']} calls, {status['recorded']} recorded, "
            f"{status['lost']} lost")  # fmt: skip
    return Output(text, status)


async def _serve(settings: ProxySettings, recorder: Recorder) -> dict[str, object]:
    server = ProxyServer(settings, recorder)
    await server.start()
    url = server.base_url
    print(f"llm386 proxy on {url}: set ANTHROPIC_BASE_URL={url} or OPENAI_BASE_URL={url}/v1 "
          f"(status: {url}/llm386/status; Ctrl-C stops it)", file=sys.stderr, flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    return server.status()


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``proxy``."""
    parser = add_command(sub, "proxy", cmd_proxy,
                         "forward Anthropic and OpenAI API calls and record each one as a turn")  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    parser.add_argument("--anthropic-upstream", default=DEFAULT_UPSTREAMS[Family.ANTHROPIC],
                        help="where /v1/messages goes (default %(default)s)")  # fmt: skip
    parser.add_argument("--openai-upstream", default=DEFAULT_UPSTREAMS[Family.OPENAI],
                        help="where /v1/chat/completions goes, as BASE/chat/completions (default %(default)s)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds the upstream may stay silent before the call fails (default 600)")  # fmt: skip
    parser.add_argument("--fail-closed", action="store_true",
                        help="refuse calls (503) while recording fails, instead of forwarding them unrecorded")  # fmt: skip
