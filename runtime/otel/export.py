"""Sending sessions to an OTLP/HTTP collector with the official OpenTelemetry SDK.

Owns: ``export_sessions`` (sessions to a URL, one request per session, progress reported),
``ExportReport`` and ``ExportFailed`` (the collector could not be reached or refused the spans;
the message names the URL and what it answered).

Invariants:
- Spans are made by the SDK's ``TracerProvider`` from ``outgoing.session_spans``: the ids
  come from a ``RecordIds`` id generator primed with the span's derived id just before the
  SDK asks for it, and every start and end time is given explicitly, so the same session is
  the same spans on every export (and a collector keeps one copy of a span sent twice).
- They are sent by the SDK's ``OTLPSpanExporter`` (protobuf over HTTP), whose retries and
  timeouts are the SDK's. Its log lines are caught while it runs and become the error's
  message: a failed export raises ``ExportFailed``, never prints a traceback.
- Sessions are sent in order; a failure stops the export, and the report of what was sent
  before it is in the error (``ExportFailed.sent``).
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from runtime import __version__
from runtime.errors import Llm386Error
from runtime.otel.outgoing import SCOPE, OutSpan, session_spans
from runtime.tracing.records import TraceStore

SERVICE = "llm386"
DEFAULT_TIMEOUT_S = 10.0
_SDK_LOGGER = "opentelemetry.exporter"


class ExportFailed(Llm386Error):
    """The collector could not be reached, or refused the spans."""

    def __init__(self, message: str, sent: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class ExportReport:
    url: str
    sessions: tuple[str, ...]
    spans: int

    def to_json(self) -> dict[str, object]:
        return {"url": self.url, "sessions": list(self.sessions), "spans": self.spans}


class RecordIds(IdGenerator):
    """Hands the SDK the ids derived from the records: set ``trace_id``/``span_id`` first."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def sdk_spans(spans: Sequence[OutSpan]) -> list[ReadableSpan]:
    """Return ``spans`` (parents before children) as spans the SDK made and ended."""
    ids, memory = RecordIds(), InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": SERVICE}), id_generator=ids)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(SCOPE, __version__)
    made: dict[int, trace.Span] = {}
    for span in spans:
        ids.trace_id, ids.span_id = span.trace_id, span.span_id
        parent = made.get(span.parent_id) if span.parent_id is not None else None
        context = trace.set_span_in_context(parent) if parent is not None else None
        kind = trace.SpanKind.CLIENT if span.client else trace.SpanKind.INTERNAL
        made[span.span_id] = tracer.start_span(span.name, context=context, kind=kind,
                                               attributes=dict(span.attributes),
                                               start_time=span.start_ns)  # fmt: skip
        if span.error is not None:
            made[span.span_id].set_status(trace.Status(trace.StatusCode.ERROR, span.error))
    for span in reversed(spans):  # children end before their parents
        made[span.span_id].end(end_time=span.end_ns)
    provider.shutdown()
    return list(memory.get_finished_spans())


class _Caught(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _sdk_log() -> Iterator[_Caught]:
    """Catch the exporter's log lines (it reports failures only there) instead of printing them."""
    logger, caught = logging.getLogger(_SDK_LOGGER), _Caught()
    propagate = logger.propagate
    logger.addHandler(caught)
    logger.propagate = False
    try:
        yield caught
    finally:
        logger.removeHandler(caught)
        logger.propagate = propagate


def _unreachable(url: str) -> list[str]:
    """Say why ``url``'s host and port take no connection (the SDK's log may not say)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=2).close()
    except OSError as exc:
        return [f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"]
    return []


def check_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL, or raise ExportFailed saying what to give."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExportFailed(f"{url!r} is not an OTLP/HTTP URL: give http(s)://HOST:PORT/v1/traces")
    return url


def export_sessions(
    traces: TraceStore, sessions: Sequence[str], url: str, *,
    headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:  # fmt: skip
    """Send each session's turns to the OTLP/HTTP endpoint ``url``; raise ExportFailed if refused."""
    check_url(url)
    # No headers given: the SDK reads OTEL_EXPORTER_OTLP_TRACES_HEADERS, as it does for any agent.
    exporter = OTLPSpanExporter(endpoint=url, headers=dict(headers) if headers else None,
                                timeout=timeout)  # fmt: skip
    sent: list[str] = []
    total = 0
    try:
        for i, session in enumerate(sessions, start=1):
            spans = sdk_spans(session_spans(traces, session))
            with _sdk_log() as caught:
                result = exporter.export(spans)
            if result is not SpanExportResult.SUCCESS:
                why = "; ".join([*caught.lines, *_unreachable(url)])
                raise ExportFailed(
                    f"the OTLP collector at {url} did not take session {session!r} ({why}); "
                    "check the URL, that the collector is up and the headers it needs",
                    tuple(sent),
                )
            sent.append(session)
            total += len(spans)
            if progress is not None:
                progress(f"[{i}/{len(sessions)}] {session}: {len(spans)} spans sent to {url}")
    finally:
        exporter.shutdown()
    return ExportReport(url, tuple(sent), total)
