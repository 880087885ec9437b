"""The web app's own tables (in the login database, never in the trace store).

`Action` is the audit log: one row per replay, re-page, experiment or variance run started
from the web, with who started it, when, on which turn, where it went and what it cost.
`SavedView` is a list page's query string a user saved under a name, seen by that user only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Action(models.Model):
    """One spending or recording action a user started from the web."""

    REPLAY = "replay"
    REPAGE = "repage"
    EXPERIMENT = "experiment"
    SAMPLES = "samples"
    KINDS = ((REPLAY, "replay"), (REPAGE, "re-page"), (EXPERIMENT, "experiment"),
             (SAMPLES, "variance samples"))  # fmt: skip

    kind = models.CharField(max_length=16, choices=KINDS)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150)  # kept when the account is deleted
    at = models.DateTimeField()
    call_id = models.CharField(max_length=64)  # the turn acted on
    target = models.CharField(max_length=64, blank=True)  # where a replay went / re-page model
    job_id = models.CharField(max_length=32, blank=True)
    result_call_id = models.CharField(max_length=64, blank=True)  # the record it made
    outcome = models.CharField(max_length=200, blank=True)  # "" while running
    cost_usd = models.FloatField(null=True)

    class Meta:
        ordering = ("-at", "-id")
        indexes = [models.Index(fields=["-at"]), models.Index(fields=["job_id"])]

    def __str__(self) -> str:
        return f"{self.username} {self.kind} {self.call_id} at {self.at:%Y-%m-%d %H:%M}"


class SavedView(models.Model):
    """A list page's query string a user saved under a name (only that user sees it)."""

    SESSIONS = "sessions"
    TRIAGE = "triage"
    PAGES = ((SESSIONS, "sessions"), (TRIAGE, "triage"))
    MAX_QUERY = 2000

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    page = models.CharField(max_length=16, choices=PAGES)
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=MAX_QUERY, blank=True)  # without "?", offset dropped
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("page", "name", "id")
        constraints = [
            models.UniqueConstraint(fields=["user", "page", "name"], name="saved_view_name")
        ]

    def __str__(self) -> str:
        return f"{self.page} view {self.name!r} of user {self.user_id}"
