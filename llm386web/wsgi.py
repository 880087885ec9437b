"""WSGI entry point for llm386web."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llm386web.settings")

application = get_wsgi_application()
