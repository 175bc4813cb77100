"""An OTLP/HTTP receiver for the tests: prints every log record, span and
metric it receives as one JSON line on stdout, with its resource and scope.

Usage: receiver.py --port PORT   (listens on 127.0.0.1 only)

Why not oteltap's own output: `oteltap --port N` and its Python API
(`OtelTapHttpProtobufReceiver.stream_logs()` / `stream_traces()`) hand out
bare LogRecord / Span messages, so the resource (service.name and the other
resource attributes) and the instrumentation scope are lost; oteltap also
answers 400 to gzip-compressed and to JSON bodies. This receiver decodes the
same way a collector does, with the opentelemetry-proto package (installed as
oteltap's dependency by install.sh), and keeps everything.

Accepted: POST /v1/logs, /v1/traces, /v1/metrics with Content-Type
application/x-protobuf (or application/json, OTLP/JSON with hex ids), body
optionally Content-Encoding: gzip or deflate. Answers 200 with an empty
Export*ServiceResponse in the request's encoding, 400 when the body does not
decode, 404 for other paths, 415 for other content types.

Output, one JSON object per line, flushed at once (lines of one request are
printed together, before the answer is sent):
  {"signal":"ready","port":N}                          once listening
  {"signal":"log", <request fields>, <record fields>}  per log record
  {"signal":"span", <request fields>, <span fields>}   per span
  {"signal":"metric", <request fields>, "name":..., "metric":{...}}
  {"signal":"error","path":...,"status":400,"error":"..."} per rejected request

Request fields: "request" (1, 2, ... per accepted POST, so a test can tell
batches apart), "path", "contentType", "contentEncoding" (null when none),
"headers" (lower-cased names), "resource" (attribute map),
"resourceDroppedAttributesCount", "resourceSchemaUrl", "scope"
({"name","version","attributes","droppedAttributesCount"}), "scopeSchemaUrl".

Log record fields: "timeUnixNano", "observedTimeUnixNano" (integers, ns),
"severityNumber" (integer), "severityText", "body" (a value), "attributes"
(map), "droppedAttributesCount", "flags", "traceId", "spanId" (lower-case
hex, "" when unset), "eventName".

Span fields: "traceId", "spanId", "parentSpanId" (hex, "" when unset),
"traceState", "flags", "name", "kind" (integer, 1 internal .. 5 consumer),
"startTimeUnixNano", "endTimeUnixNano", "attributes",
"droppedAttributesCount", "events" ([{"timeUnixNano","name","attributes",
"droppedAttributesCount"}]), "droppedEventsCount", "links" ([{"traceId",
"spanId","traceState","attributes","droppedAttributesCount","flags"}]),
"droppedLinksCount", "status" ({"code": 0 unset / 1 ok / 2 error,
"message"}).

Values (body, attribute values) map to JSON as: string -> string, bool ->
bool, int -> integer, double -> float, bytes -> {"bytes": "<hex>"}, array ->
list, kvlist -> object, unset -> null. An attribute map whose key repeats in
the message keeps the last value and lists the key under
"repeatedAttributeKeys" next to it, so a duplicate is never silent.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import signal
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# path -> (request type, response type)
SIGNALS = {
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}

# OTLP/JSON writes these bytes fields as hex; protobuf's JSON mapping wants base64.
HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")

OUT_LOCK = threading.Lock()
REQUESTS = [0]


def emit(lines: list[dict]) -> None:
    """Prints `lines` together, one JSON object each, and flushes."""
    with OUT_LOCK:
        for line in lines:
            sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()


def value(v) -> object:
    """An AnyValue as plain JSON (see the module doc)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return {"bytes": v.bytes_value.hex()}
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attrs(v.kvlist_value.values)
    return {"unknown": kind}


def attrs(kvs) -> dict:
    """A repeated KeyValue as a map; a repeated key is listed, not lost."""
    out: dict = {}
    repeated = []
    for kv in kvs:
        if kv.key in out:
            repeated.append(kv.key)
        out[kv.key] = value(kv.value)
    if repeated:
        out["repeatedAttributeKeys"] = repeated
    return out


def resource_fields(rx) -> dict:
    """Fields of a ResourceLogs / ResourceSpans / ResourceMetrics."""
    return {
        "resource": attrs(rx.resource.attributes),
        "resourceDroppedAttributesCount": rx.resource.dropped_attributes_count,
        "resourceSchemaUrl": rx.schema_url,
    }


def scope_fields(sx) -> dict:
    """Fields of a ScopeLogs / ScopeSpans / ScopeMetrics."""
    return {
        "scope": {
            "name": sx.scope.name,
            "version": sx.scope.version,
            "attributes": attrs(sx.scope.attributes),
            "droppedAttributesCount": sx.scope.dropped_attributes_count,
        },
        "scopeSchemaUrl": sx.schema_url,
    }


def log_fields(r) -> dict:
    return {
        "timeUnixNano": r.time_unix_nano,
        "observedTimeUnixNano": r.observed_time_unix_nano,
        "severityNumber": r.severity_number,
        "severityText": r.severity_text,
        "body": value(r.body) if r.HasField("body") else None,
        "attributes": attrs(r.attributes),
        "droppedAttributesCount": r.dropped_attributes_count,
        "flags": r.flags,
        "traceId": r.trace_id.hex(),
        "spanId": r.span_id.hex(),
        "eventName": r.event_name,
    }


def span_fields(s) -> dict:
    return {
        "traceId": s.trace_id.hex(),
        "spanId": s.span_id.hex(),
        "parentSpanId": s.parent_span_id.hex(),
        "traceState": s.trace_state,
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind,
        "startTimeUnixNano": s.start_time_unix_nano,
        "endTimeUnixNano": s.end_time_unix_nano,
        "attributes": attrs(s.attributes),
        "droppedAttributesCount": s.dropped_attributes_count,
        "events": [
            {
                "timeUnixNano": e.time_unix_nano,
                "name": e.name,
                "attributes": attrs(e.attributes),
                "droppedAttributesCount": e.dropped_attributes_count,
            }
            for e in s.events
        ],
        "droppedEventsCount": s.dropped_events_count,
        "links": [
            {
                "traceId": link.trace_id.hex(),
                "spanId": link.span_id.hex(),
                "traceState": link.trace_state,
                "attributes": attrs(link.attributes),
                "droppedAttributesCount": link.dropped_attributes_count,
                "flags": link.flags,
            }
            for link in s.links
        ],
        "droppedLinksCount": s.dropped_links_count,
        "status": {"code": s.status.code, "message": s.status.message},
    }


def lines_of(path: str, msg, common: dict) -> list[dict]:
    """One output line per record of the decoded request `msg`."""
    out = []
    if path == "/v1/logs":
        for rl in msg.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    out.append({"signal": "log", **common, **resource_fields(rl), **scope_fields(sl), **log_fields(r)})
    elif path == "/v1/traces":
        for rs in msg.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append({"signal": "span", **common, **resource_fields(rs), **scope_fields(ss), **span_fields(s)})
    else:
        for rm in msg.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.append(
                        {
                            "signal": "metric",
                            **common,
                            **resource_fields(rm),
                            **scope_fields(sm),
                            "name": m.name,
                            "metric": json_format.MessageToDict(m),
                        }
                    )
    return out


def hex_ids_to_base64(node):
    """OTLP/JSON (hex ids) to protobuf's JSON mapping (base64 bytes)."""
    if isinstance(node, dict):
        return {
            k: (base64.b64encode(bytes.fromhex(v)).decode() if k in HEX_ID_FIELDS and isinstance(v, str) else hex_ids_to_base64(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids_to_base64(x) for x in node]
    return node


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-test-receiver"

    def log_message(self, *args) -> None:  # no access log on stderr
        pass

    def answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reject(self, status: int, error: str) -> None:
        emit([{"signal": "error", "path": self.path, "status": status, "error": error}])
        self.answer(status, error.encode())

    def do_GET(self) -> None:
        self.answer(404, b"POST OTLP to /v1/logs, /v1/traces or /v1/metrics")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if path not in SIGNALS:
            self.reject(404, f"no such path {path}")
            return
        request_type, response_type = SIGNALS[path]
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower() or None
        try:
            if encoding == "gzip":
                body = gzip.decompress(raw)
            elif encoding == "deflate":
                body = zlib.decompress(raw)
            elif encoding in (None, "identity"):
                body = raw
            else:
                self.reject(415, f"unsupported Content-Encoding {encoding}")
                return
        except (OSError, zlib.error, EOFError) as e:
            self.reject(400, f"cannot decompress {encoding} body: {e}")
            return
        msg = request_type()
        try:
            if content_type == "application/x-protobuf":
                msg.ParseFromString(body)
            elif content_type == "application/json":
                json_format.ParseDict(hex_ids_to_base64(json.loads(body)), msg)
            else:
                self.reject(415, f"unsupported Content-Type {content_type!r}")
                return
        except (DecodeError, json_format.ParseError, ValueError) as e:
            self.reject(400, f"cannot decode {content_type} body: {e}")
            return
        with OUT_LOCK:
            REQUESTS[0] += 1
            number = REQUESTS[0]
        common = {
            "request": number,
            "path": path,
            "contentType": content_type,
            "contentEncoding": encoding,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        emit(lines_of(path, msg, common))
        if content_type == "application/json":
            self.answer(200, b"{}", "application/json")
        else:
            self.answer(200, response_type().SerializeToString(), "application/x-protobuf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args()
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        # shutdown() waits for serve_forever() to return: call it off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emit([{"signal": "ready", "port": server.server_address[1]}])
    server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
