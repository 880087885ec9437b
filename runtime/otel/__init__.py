"""OpenTelemetry in and out: OTLP/HTTP trace exports of GenAI spans become sessions and turns.

Modules: ``wire`` (bodies and responses, through opentelemetry-proto), ``spans`` (spans as
kept and shown), ``genai`` (the GenAI semantic conventions read into model calls), ``ingest``
(one request into one write), ``tokens`` (ingest tokens, stored hashed) and ``receiver`` (the
``/v1/traces`` endpoint as a plain function any server can call).
"""
