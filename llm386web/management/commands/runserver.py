"""`runserver` for a local tool: loopback only by default, and static files served without DEBUG.

Django's development server serves static files only with DEBUG on or ``--insecure``. llm386web
runs with DEBUG off by default, so this command turns static serving on unless ``--nostatic``
is given; the address stays 127.0.0.1:8000 unless one is passed. While it starts, a thread
builds the sessions list's summary table so the first page is served from memory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver

log = logging.getLogger("llm386web")


def warm_up() -> None:
    """Build the sessions list's summary table now, so the first visitor does not wait for it."""
    from llm386web.store_access import get_store, get_traces
    from runtime.errors import Llm386Error
    from runtime.sessionlist import summary_table

    try:
        summary_table(get_store(), get_traces())
    except Llm386Error as exc:  # the store check and the first page report it properly
        log.warning("could not prepare the sessions list: %s", exc)


class Command(StaticRunserver):
    default_addr = "127.0.0.1"
    default_port = "8000"

    def get_handler(self, *args: Any, **options: Any) -> Any:
        options["insecure_serving"] = True
        threading.Thread(target=warm_up, name="llm386-warm-up", daemon=True).start()
        return super().get_handler(*args, **options)
