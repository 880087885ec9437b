"""URL map. Every page requires login (LoginRequiredMiddleware) but /v1/traces, which takes an
ingest token instead; every id in a URL is a permalink."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from .views import (
    blocks,
    compare,
    connect,
    errors,
    experiments,
    login,
    otel,
    playground,
    replay,
    search,
    sessions,
    turns,
)
from .views.audit import audit_list
from .views.dashboard import dashboard_csv, dashboard_page
from .views.picker import compare_pick
from .views.savedviews import view_delete, view_list, view_rename, view_save
from .views.triage import triage_list

urlpatterns = [
    path("", sessions.session_list, name="home"),
    path("sessions/", sessions.session_list, name="sessions"),
    path("sessions/<str:session_id>/", sessions.session_detail, name="session"),
    path("sessions/<str:session_id>/blocks/", sessions.session_blocks, name="session-blocks"),
    path("sessions/<str:session_id>/export.jsonl", sessions.session_export, name="session-export"),
    path("sessions/<str:session_id>/live", sessions.session_live, name="session-live"),
    path("sessions/<str:session_id>/turns/<int:turn>/", sessions.session_turn, name="session-turn"),
    path("traces/<str:call_id>/", turns.turn_detail, name="turn"),
    path("traces/<str:call_id>/sections/<str:section>/", turns.turn_section, name="turn-section"),
    path("traces/<str:call_id>/omitted/", turns.turn_omitted, name="turn-omitted"),
    path("traces/<str:call_id>/messages/", turns.turn_messages, name="turn-messages"),
    path("traces/<str:call_id>/json/", turns.turn_json, name="turn-json"),
    path("traces/<str:call_id>/request", turns.turn_request_raw, name="turn-request-raw"),
    path("traces/<str:call_id>/response", turns.turn_response_raw, name="turn-response-raw"),
    path("traces/<str:call_id>/flag", turns.turn_flag, name="turn-flag"),
    path("traces/<str:call_id>/replay", replay.turn_replay, name="turn-replay"),
    path("replays/<str:job_id>/", replay.replay_job, name="replay-job"),
    path("replays/<str:job_id>/cancel", replay.replay_job_cancel, name="replay-job-cancel"),
    path("traces/<str:call_id>/repage", replay.turn_repage, name="turn-repage"),
    path("traces/<str:call_id>/experiment", experiments.turn_experiment, name="turn-experiment"),
    path("traces/<str:call_id>/playground/", playground.turn_playground, name="turn-playground"),
    path(
        "traces/<str:call_id>/playground/send",
        playground.turn_playground_send,
        name="turn-playground-send",
    ),  # fmt: skip
    path("traces/<str:call_id>/samples", playground.turn_samples, name="turn-samples"),
    path("samples/<str:job_id>/", playground.sample_job, name="sample-job"),
    path("experiments/", experiments.experiment_list, name="experiments"),
    path("experiments/<str:child>/", experiments.experiment_detail, name="experiment"),
    path("traces/<str:call_id>/compare/", compare.compare_previous, name="compare-previous"),
    path("compare/pick/", compare_pick, name="compare-pick"),
    path("compare/<str:a>/<str:b>/", compare.compare, name="compare"),
    path("blocks/<str:block_id>/", blocks.block_detail, name="block"),
    path("blocks/<str:block_id>/raw", blocks.block_raw, name="block-raw"),
    path("blocks/<str:block_id>/turns/", blocks.block_turns, name="block-turns"),
    path("search/", search.search, name="search"),
    path("triage/", triage_list, name="triage"),
    path("views/", view_list, name="saved-views"),
    path("views/save", view_save, name="saved-view-save"),
    path("views/<int:pk>/rename", view_rename, name="saved-view-rename"),
    path("views/<int:pk>/delete", view_delete, name="saved-view-delete"),
    path("dashboard/", dashboard_page, name="dashboard"),
    path("dashboard/<str:chart>.csv", dashboard_csv, name="dashboard-csv"),
    path("v1/traces", otel.otlp_traces, name="otlp-traces"),
    path("otel/tokens/", otel.token_list, name="otel-tokens"),
    path("sessions/<str:session_id>/otlp-export", otel.session_export, name="session-otlp-export"),
    path("otel/tokens/create", otel.token_create, name="otel-token-create"),
    path("otel/tokens/<str:name>/revoke", otel.token_revoke, name="otel-token-revoke"),
    path("connect/", connect.connect, name="connect"),
    path("audit/", audit_list, name="audit"),
    path("login/", login.ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
