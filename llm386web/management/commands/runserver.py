"""`runserver` for a local tool: loopback only by default, and static files served without DEBUG.

Django's development server serves static files only with DEBUG on or ``--insecure``. llm386web
runs with DEBUG off by default, so this command turns static serving on unless ``--nostatic``
is given; the address stays 127.0.0.1:8000 unless one is passed.
"""

from __future__ import annotations

from typing import Any

from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver


class Command(StaticRunserver):
    default_addr = "127.0.0.1"
    default_port = "8000"

    def get_handler(self, *args: Any, **options: Any) -> Any:
        options["insecure_serving"] = True
        return super().get_handler(*args, **options)
