"""A tiny OTLP/HTTP trace receiver on 127.0.0.1, so tests can read the spans a worker process
exports through the production exporter (OTEL_TRACES_EXPORTER=otlp)."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    status_message: str
    service: str


@dataclass
class OtlpCollector:
    spans: list[ReceivedSpan] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # every request body, decompressed
    as_json: list[str] = field(default_factory=list)  # the same, as protobuf's JSON

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector._receive(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/traces"

    def _receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            events=[
                                {"name": e.name, "attributes": _attributes(e.attributes)}
                                for e in span.events
                            ],
                            status_message=span.status.message,
                            service=service,
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.as_json.append(MessageToJson(request))
            self.spans.extend(received)

    def wait_for(
        self, predicate: Callable[[ReceivedSpan], bool], *, timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """The received spans matching `predicate`, once at least one has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                matching = [s for s in self.spans if predicate(s)]
            if matching or time.monotonic() >= deadline:
                if not matching:
                    raise AssertionError(f"no matching span received after {timeout} s")
                return matching
            time.sleep(0.02)

    def text(self) -> str:
        """Everything received, as text to scan (JSON renders bytes as base64: raw too)."""
        with self._lock:
            return "\n".join(self.as_json) + "\n" + b"\n".join(self.raw).decode("utf-8", "replace")

    def start(self) -> OtlpCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
