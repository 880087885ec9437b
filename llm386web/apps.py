"""The llm386web app: registers its system checks when Django starts."""

from __future__ import annotations

from django.apps import AppConfig


class Llm386WebConfig(AppConfig):
    name = "llm386web"
    verbose_name = "llm386 trace browser"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - importing registers the checks
