""" "Connect your agent": the two variables that send an agent through llm386 proxy, the proxy's
status, and snippets to copy. The page polls its status fragment; nothing here is secret (the
proxy's address comes from settings.LLM386's PROXY_URL, and no key is read or shown)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web.conf import web_config
from runtime.proxy.status import read_status

from .common import render_page


@require_GET
def connect(request: HttpRequest) -> HttpResponse:
    """Show how to record an agent through the proxy, and whether the proxy is up."""
    config = web_config()
    base = config.PROXY_URL.rstrip("/")
    context = {"anthropic_base_url": base, "openai_base_url": f"{base}/v1",
               "status": read_status(base, timeout=config.PROXY_STATUS_TIMEOUT_S)}  # fmt: skip
    return render_page(request, "connect/connect.html", "proxy-status", context)
