"""OTLP/HTTP on the wire: request bodies in, response bodies out, always through protobuf.

Owns: ``OtlpLimits``, ``OtlpRejected`` (an HTTP status and a message saying what was wrong),
``decode_request`` (content type, gzip, protobuf or OTLP JSON into an
``ExportTraceServiceRequest``) and the response encoders (``export_response``,
``status_response``).

Invariants:
- Every body is decoded by the official ``opentelemetry-proto`` classes: protobuf with
  ``FromString``, JSON with protobuf's ``json_format`` after the two rewrites the OTLP JSON
  mapping makes (trace and span ids as hex, not base64; enum values may be integers), so
  there is no hand-written decoder. JSON is first read by ``runtime.limits.loads``.
- Sizes are checked before work: the body as sent (``max_body_bytes``) and, for gzip, the
  inflated size, inflated at most one byte past ``max_decoded_bytes`` (a gzip bomb is refused
  after that much, never inflated whole). A gzip body of several members is read whole, as
  ``gzip.decompress`` reads it (one limit for all); anything else after a member is refused.
- Error bodies are ``google.rpc.Status`` messages (what OTLP/HTTP asks for), built from a
  descriptor at import, in protobuf or JSON as the request was.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from runtime import limits
from runtime.errors import InvalidInput

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CONTENT_TYPES = (PROTOBUF, JSON)


@dataclass(frozen=True)
class OtlpLimits:
    """The most one export request may hold; over a limit it is refused whole, never cut."""

    max_body_bytes: int = 16 * 1024 * 1024  # as sent (compressed or not)
    max_decoded_bytes: int = 64 * 1024 * 1024  # after gzip
    max_spans: int = 100_000
    max_depth: int = 32  # of JSON nesting, in the body and in message attributes

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OtlpLimits.{name} must be a positive integer, not {value!r}")

    def json_limits(self) -> limits.Limits:
        return limits.Limits(max_bytes=self.max_decoded_bytes, max_depth=self.max_depth)


DEFAULT_OTLP_LIMITS = OtlpLimits()


class OtlpRejected(InvalidInput):
    """An export request refused whole: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type[OtlpRejected], tuple[int, str]]:
        return OtlpRejected, (self.status, str(self))  # raised again after a worker's refusal


def media_type(content_type: str | None) -> str:
    """Return the media type of a Content-Type header, lower-cased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_request(
    body: bytes, content_type: str | None, content_encoding: str | None, lim: OtlpLimits
) -> ExportTraceServiceRequest:
    """Return the export request a body holds, or raise OtlpRejected saying what is wrong."""
    kind = media_type(content_type)
    if kind not in CONTENT_TYPES:
        raise OtlpRejected(
            415,
            f"Content-Type {kind or '(none)'!r} is not an OTLP body; send {PROTOBUF} or {JSON}",
        )
    if len(body) > lim.max_body_bytes:
        raise OtlpRejected(
            413,
            f"the body is {len(body):,} bytes, over the limit of {lim.max_body_bytes:,}; "
            "export smaller batches (the SDK's max_export_batch_size)",
        )
    data = _inflate(body, content_encoding, lim)
    request = _protobuf(data) if kind == PROTOBUF else _json(data, lim)
    count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
    if count > lim.max_spans:
        raise OtlpRejected(
            413, f"the request holds {count:,} spans, over the limit of {lim.max_spans:,}"
        )
    return request


def _inflate(body: bytes, encoding: str | None, lim: OtlpLimits) -> bytes:
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise OtlpRejected(
            415, f"Content-Encoding {coding!r} is not supported; send gzip or no encoding"
        )
    parts: list[bytes] = []
    size, rest = 0, body
    while True:  # one gzip member after another, as gzip.decompress reads them
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(rest, lim.max_decoded_bytes + 1 - size)
        except zlib.error as exc:
            raise OtlpRejected(400, f"the body is not valid gzip ({exc})") from None
        size += len(data)
        parts.append(data)
        if size > lim.max_decoded_bytes:
            raise OtlpRejected(
                413,
                f"the gzip body inflates to more than {lim.max_decoded_bytes:,} bytes; "
                "export smaller batches",
            )
        if not inflater.eof:
            raise OtlpRejected(400, "the gzip body is truncated (no end of stream)")
        rest = inflater.unused_data.lstrip(b"\0")  # zeros may pad a member
        if not rest:
            return b"".join(parts)


def _protobuf(data: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(data)
    except (DecodeError, RecursionError) as exc:
        raise OtlpRejected(
            400, f"the body is not a protobuf ExportTraceServiceRequest ({exc})"
        ) from None


def _json(data: bytes, lim: OtlpLimits) -> ExportTraceServiceRequest:
    try:
        value = limits.loads(data, "the JSON body", lim.json_limits())
    except limits.InputRejected as exc:
        raise OtlpRejected(400, str(exc)) from None
    if not isinstance(value, dict):
        raise OtlpRejected(400, "the JSON body is not an object with resourceSpans")
    _ids_to_base64(value)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(value, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpRejected(400, f"the JSON body is not an OTLP trace export ({exc})") from None
    return request


_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _ids_to_base64(value: dict[str, Any]) -> None:
    """Rewrite OTLP JSON's hex ids as the base64 protobuf's JSON mapping reads for bytes."""
    for rs in _items(value, "resourceSpans", "resource_spans"):
        for ss in _items(rs, "scopeSpans", "scope_spans"):
            for span in _items(ss, "spans"):
                _hex_fields(span)
                for link in _items(span, "links"):
                    _hex_fields(link)


def _items(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for key in keys:
        found = obj.get(key)
        if isinstance(found, list):
            return [item for item in found if isinstance(item, dict)]
    return []


def _hex_fields(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        text = obj.get(key)
        if isinstance(text, str) and text:
            try:
                obj[key] = base64.b64encode(bytes.fromhex(text)).decode()
            except ValueError:
                raise OtlpRejected(400, f"{key} {text[:40]!r} is not hex") from None


# -- responses -------------------------------------------------------------------------------


def _status_class() -> type[Message]:
    """Build ``google.rpc.Status`` from its descriptor (the package ships no generated class)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="llm386/google_rpc_status.proto", package="google.rpc", syntax="proto3"
    )
    msg = proto.message_type.add(name="Status")
    label, t = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto
    msg.field.add(name="code", number=1, type=t.TYPE_INT32, label=label.LABEL_OPTIONAL)
    msg.field.add(name="message", number=2, type=t.TYPE_STRING, label=label.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


Status = _status_class()
_GRPC_CODE = {400: 3, 401: 16, 413: 8, 415: 3, 405: 12, 404: 5, 500: 13, 503: 14}


def _encode(msg: Message, kind: str) -> tuple[str, bytes]:
    if kind == JSON:
        return JSON, json_format.MessageToJson(msg, indent=None).encode()
    return PROTOBUF, msg.SerializeToString()


def export_response(rejected: int, message: str, content_type: str | None) -> tuple[str, bytes]:
    """Return (content type, body) of a successful export: partial success if any was refused."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return _encode(response, media_type(content_type))


def status_response(status: int, message: str, content_type: str | None) -> tuple[str, bytes]:
    """Return (content type, body) of a refused request: a ``google.rpc.Status``."""
    msg = Status(code=_GRPC_CODE.get(status, 2), message=message)
    kind = media_type(content_type)
    return _encode(msg, kind if kind in CONTENT_TYPES else JSON)


def hex_id(raw: bytes) -> str:
    """Return a trace or span id as OTLP shows it: lower-case hex."""
    return binascii.hexlify(raw).decode()
