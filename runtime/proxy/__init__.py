"""The capture proxy: record any agent, unchanged, by pointing its base URL at ``llm386 proxy``.

Modules, in the order a call flows through them:
- ``apis``: the routes (Anthropic Messages, count_tokens, OpenAI Chat Completions), header
  rules (credentials never recorded) and errors in each provider's format;
- ``server``: the asyncio HTTP/1.1 server that forwards each call byte for byte;
- ``exchange``: one call as it happened, handed from the server to the recorder;
- ``recorder``: the bounded queue and the one writer (a thread, or a process: ``writerproc``);
- ``turns``, ``conversation``, ``sessions``, ``replies``: an exchange written as a turn of a
  session, with its blocks, its captured bytes and its assembled reply;
- ``pager``, ``rewrite``, ``recall``, ``paged``, ``streamfilter``, ``originals``: ``--page``,
  demand paging of every call on its way upstream (see docs/proxy.md).
"""

from runtime.proxy.apis import DEFAULT_UPSTREAMS, Family
from runtime.proxy.recorder import Recorder
from runtime.proxy.server import ProxyServer, ProxySettings, ProxyThread

__all__ = [
    "DEFAULT_UPSTREAMS",
    "Family",
    "ProxyServer",
    "ProxySettings",
    "ProxyThread",
    "Recorder",
]
