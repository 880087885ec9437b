"""``llm386 proxy``: record any agent by pointing its base URL at a local capture proxy."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import fields, replace
from functools import partial

from runtime.cli.common import Output, add_command, open_store_from, store_path_from, warn
from runtime.cli.models_cmds import config_from
from runtime.config import ProxyConfig
from runtime.errors import InvalidInput
from runtime.otel import receiver
from runtime.otel.ingest import preparing_for
from runtime.otel.wire import DEFAULT_OTLP_LIMITS, OtlpLimits
from runtime.otel.workers import Preparer
from runtime.paging.presets import DEFAULT_PRESET, preset_names
from runtime.proxy import Family, ProxyServer, ProxySettings, Recorder
from runtime.proxy.pager import PageSettings
from runtime.proxy.server import OtlpHandler
from runtime.storage.tracestore import KvTraceStore

_DEFAULTS = ProxyConfig()
_FLAG_KEYS = ("host", "port", "anthropic_upstream", "openai_upstream", "timeout_seconds",
              "queue_size", "fail_closed", "page", "page_budget", "otlp_workers", "max_body_bytes",
              "max_otlp_body_bytes")  # fmt: skip
_FLAG_NAMES = {"timeout_seconds": "timeout"}


def page_settings(conf: ProxyConfig) -> PageSettings | None:
    """Return what ``--page`` (or ``[proxy] page``) asks for, or None: forward unchanged."""
    if not conf.page:
        return None
    return PageSettings(conf.page, conf.page_budget or None)


def otlp_limits(conf: ProxyConfig) -> OtlpLimits:
    """The OTLP decoder's limits for the proxy's ``max_otlp_body_bytes`` (an uncompressed body
    of that size must also pass the limit on inflated bytes)."""
    decoded = max(DEFAULT_OTLP_LIMITS.max_decoded_bytes, conf.max_otlp_body_bytes)
    return replace(DEFAULT_OTLP_LIMITS, max_body_bytes=conf.max_otlp_body_bytes,
                   max_decoded_bytes=decoded)  # fmt: skip


def proxy_config(args: argparse.Namespace) -> ProxyConfig:
    """Return the ``[proxy]`` settings of llm386.toml with each flag given on the command line."""
    config = config_from(args)
    warn(config.warnings)
    given = {key: getattr(args, key) for key in _FLAG_KEYS if getattr(args, key, None) is not None}
    for spec in fields(ProxyConfig):
        check = spec.metadata.get("check")
        if spec.name in given and check is not None and not check[0](given[spec.name]):
            flag = "--" + _FLAG_NAMES.get(spec.name, spec.name).replace("_", "-")
            raise InvalidInput(f"{flag} {given[spec.name]!r}: expected {check[1]}")
    return replace(config.proxy, **given)


def cmd_proxy(args: argparse.Namespace) -> Output:
    logging.basicConfig(level=logging.INFO, format="llm386 proxy: %(message)s", stream=sys.stderr)
    conf = proxy_config(args)
    settings = ProxySettings(
        host=conf.host, port=conf.port, fail_closed=conf.fail_closed,
        upstreams={Family.ANTHROPIC: conf.anthropic_upstream, Family.OPENAI: conf.openai_upstream},
        read_timeout=conf.timeout_seconds, page=page_settings(conf),
        max_body_bytes=conf.max_body_bytes, max_otlp_body_bytes=conf.max_otlp_body_bytes,
    )  # fmt: skip
    # The recorder's thread here only feeds the writer process; a short GIL switch interval
    # still lets the event loop in at once whenever that thread (or the OTLP receiver) runs.
    sys.setswitchinterval(0.0002)
    store = open_store_from(args, create=True)
    traces = KvTraceStore(store)
    # The writer runs in a process of its own: it shares neither the GIL nor a core with the
    # event loop that forwards calls.
    recorder = Recorder(store, traces, capacity=conf.queue_size,
                        process=store_path_from(args)).start()  # fmt: skip
    recorder.wait_ready()  # the first calls are then recorded as fast as the rest
    # /v1/traces bodies are read and rebuilt in worker processes (started on the first export);
    # this process only writes them (runtime.otel.workers).
    preparer = Preparer(conf.otlp_workers, preparing_for(store)["tokenizers"])
    otlp = partial(receiver.handle, store=store, traces=traces, preparer=preparer,
                   limits=otlp_limits(conf))  # fmt: skip
    try:
        status = asyncio.run(_serve(settings, recorder, otlp))
    finally:
        recorder.close()
        preparer.close()
    status.update(recorder.status())
    text = (f"llm386 proxy stopped: {status['calls']} calls, {status['recorded']} recorded, "
            f"{status['lost']} lost")  # fmt: skip
    return Output(text, status)


async def _serve(
    settings: ProxySettings, recorder: Recorder, otlp: OtlpHandler | None = None
) -> dict[str, object]:
    server = ProxyServer(settings, recorder, otlp=otlp)
    await server.start()
    url = server.base_url
    print(f"llm386 proxy on {url}: set ANTHROPIC_BASE_URL={url} or OPENAI_BASE_URL={url}/v1 "
          f"(OTLP spans: {url}/v1/traces; status: {url}/llm386/status; Ctrl-C stops it)", file=sys.stderr, flush=True)  # fmt: skip
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
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8787)")
    parser.add_argument("--anthropic-upstream",
                        help=f"where /v1/messages goes (default {_DEFAULTS.anthropic_upstream})")  # fmt: skip
    parser.add_argument("--openai-upstream",
                        help="where /v1/chat/completions and /v1/responses go, as BASE/chat/completions "
                        f"and BASE/responses (default {_DEFAULTS.openai_upstream})")  # fmt: skip
    parser.add_argument("--timeout", type=float, dest="timeout_seconds",
                        help="seconds the upstream may stay silent before the call fails (default 600)")  # fmt: skip
    parser.add_argument("--queue-size", type=int,
                        help="calls the recording queue holds before records are lost (default 10000)")  # fmt: skip
    parser.add_argument("--fail-closed", action=argparse.BooleanOptionalAction,
                        help="refuse calls (503) while recording fails, instead of forwarding them "
                        "unrecorded (default: forward them)")  # fmt: skip
    parser.add_argument("--page", nargs="?", const=DEFAULT_PRESET, metavar="PRESET",
                        help="demand-page each call: stale tool results and tool schemas become "
                        "placeholders and stubs, and the proxy answers the model's recall calls "
                        f"itself (presets: {', '.join(preset_names())}; --page alone: "
                        f"{DEFAULT_PRESET})")  # fmt: skip
    parser.add_argument("--page-budget", type=int, metavar="TOKENS",
                        help="with --page: also page out under pressure to fit each request "
                        "in this many input tokens (default: no budget)")  # fmt: skip
    parser.add_argument("--max-body-bytes", type=int, metavar="BYTES",
                        help="refuse (413) a provider call whose body is bigger "
                        f"(default {_DEFAULTS.max_body_bytes:,})")  # fmt: skip
    parser.add_argument("--max-otlp-body-bytes", type=int, metavar="BYTES",
                        help="refuse (413) an OTLP export to /v1/traces whose body is bigger "
                        f"(default {_DEFAULTS.max_otlp_body_bytes:,})")  # fmt: skip
    parser.add_argument("--otlp-workers", type=int, metavar="N",
                        help="processes that read and rebuild OTLP exports sent to /v1/traces "
                        "while this one writes them (default 1; 0: all in the proxy's process)")  # fmt: skip
    parser.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")
    parser.epilog = "Each flag wins over its key in the [proxy] section of llm386.toml."
