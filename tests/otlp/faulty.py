"""A faulty OTLP/HTTP endpoint for the tests, standing in front of a real
receiver: by default it forwards every POST (path, headers, body) to the
upstream and returns the upstream's answer; a test switches it to answer
every request itself with an error status, with a partial success, or after
a delay, and reads back when each request arrived and what it was answered.

Usage: faulty.py --port PORT --upstream http://127.0.0.1:UPORT
Listens on 127.0.0.1 only. Prints one line {"ready":true,"port":N} on stdout
once listening; stops on SIGTERM / SIGINT.

Control endpoints (JSON bodies; never recorded as requests):
  POST /_mode  sets the mode for the requests that follow; answers the mode.
    {"status":"forward"}                      forward to the upstream (default)
    {"status":429,"retryAfter":"2"}           answer 429 with Retry-After: 2
    {"status":400}  {"status":503} ...        answer that status (text body)
    {"status":"partial","rejected":N,"message":"why"}
        answer 200 with an Export{Logs,Trace,Metrics}ServiceResponse whose
        partial_success has rejected_log_records / rejected_spans /
        rejected_data_points = N and error_message = message (protobuf, or
        OTLP/JSON when the request was JSON); nothing is forwarded
    {"status":"drop"}                         close the connection, no answer
  Optional in any mode:
    "delay": S     wait S seconds (a float) before answering each request
    "times": N     only the next N requests get this mode, then "forward"
  GET /_mode      the mode now in force
  GET /_requests  every OTLP request so far, oldest first:
    [{"n":1,"t":<CLOCK_MONOTONIC seconds at arrival>,"unixTime":<seconds>,
      "path":"/v1/logs","contentType":..., "contentEncoding":...,
      "bytes":<body length>,"mode":"forward"|"status"|"partial"|"drop",
      "status":<status answered, 0 for drop>,"retryAfter":<sent or null>,
      "upstreamError":<why forwarding failed, or null>}]
    "t" is the system-wide monotonic clock (the clock Rust's Instant reads
    on Linux), so differences between requests are exact retry intervals.
  POST /_reset    forgets the requests and sets the mode back to forward.

An upstream that cannot be reached is answered 502 (recorded so).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

# path -> (response type, name of its partial_success rejected count)
PARTIAL = {
    "/v1/logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "/v1/traces": (ExportTraceServiceResponse, "rejected_spans"),
    "/v1/metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
}

# Not copied when forwarding: hop-by-hop headers and what urllib sets itself.
SKIP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive", "accept-encoding"}
# Copied back from the upstream's answer.
ANSWER_HEADERS = ("content-type", "content-encoding", "retry-after")

STATE_LOCK = threading.Lock()
STATE: dict = {"mode": {"status": "forward"}, "left": None, "requests": []}
UPSTREAM = [""]
# No proxy from the environment: the upstream is on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def check_mode(mode: object) -> str | None:
    """Why `mode` is not a valid mode, or None."""
    if not isinstance(mode, dict):
        return "the mode is a JSON object"
    status = mode.get("status")
    if status not in ("forward", "partial", "drop") and not (isinstance(status, int) and 100 <= status <= 599):
        return 'status is "forward", "partial", "drop" or an HTTP status number'
    if status == "partial" and not isinstance(mode.get("rejected", 0), int):
        return "rejected is an integer"
    if not isinstance(mode.get("delay", 0), (int, float)):
        return "delay is a number of seconds"
    if mode.get("times") is not None and not (isinstance(mode["times"], int) and mode["times"] > 0):
        return "times is a positive integer"
    if mode.get("retryAfter") is not None and not isinstance(mode["retryAfter"], (str, int)):
        return "retryAfter is a string or integer"
    return None


def take_mode() -> dict:
    """The mode for one request, counting down "times"."""
    with STATE_LOCK:
        mode = STATE["mode"]
        if STATE["left"] is not None:
            STATE["left"] -= 1
            if STATE["left"] <= 0:
                STATE["mode"], STATE["left"] = {"status": "forward"}, None
        return mode


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-faulty"

    def log_message(self, *args) -> None:  # no access log on stderr
        pass

    def answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        headers = headers or {}
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "text/plain"
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_json(self, status: int, value: object) -> None:
        self.answer(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

    def do_GET(self) -> None:
        if self.path == "/_requests":
            with STATE_LOCK:
                self.answer_json(200, STATE["requests"])
        elif self.path == "/_mode":
            with STATE_LOCK:
                self.answer_json(200, {**STATE["mode"], "left": STATE["left"]})
        else:
            self.answer(404, b"GET /_requests or /_mode")

    def do_POST(self) -> None:
        arrived, unix = time.monotonic(), time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        if path == "/_mode":
            self.set_mode(body)
        elif path == "/_reset":
            with STATE_LOCK:
                STATE.update(mode={"status": "forward"}, left=None, requests=[])
            self.answer_json(200, {"status": "forward"})
        else:
            self.otlp(path, body, arrived, unix)

    def set_mode(self, body: bytes) -> None:
        try:
            mode = json.loads(body)
        except ValueError as e:
            self.answer(400, f"not JSON: {e}".encode())
            return
        why = check_mode(mode)
        if why:
            self.answer(400, why.encode())
            return
        with STATE_LOCK:
            STATE["mode"], STATE["left"] = mode, mode.get("times")
        self.answer_json(200, mode)

    def otlp(self, path: str, body: bytes, arrived: float, unix: float) -> None:
        mode = take_mode()
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        record = {
            "n": 0,
            "t": arrived,
            "unixTime": unix,
            "path": path,
            "contentType": content_type,
            "contentEncoding": self.headers.get("Content-Encoding"),
            "bytes": len(body),
            "mode": mode["status"] if isinstance(mode["status"], str) else "status",
            "status": 0,
            "retryAfter": None,
            "upstreamError": None,
        }
        if mode.get("delay"):
            time.sleep(float(mode["delay"]))
        status = mode["status"]
        try:
            if status == "forward":
                self.forward(path, body, record)
            elif status == "partial":
                self.partial(path, content_type, mode, record)
            elif status == "drop":
                self.close_connection = True
            else:
                headers = {}
                if mode.get("retryAfter") is not None:
                    headers["Retry-After"] = str(mode["retryAfter"])
                    record["retryAfter"] = headers["Retry-After"]
                record["status"] = status
                self.answer(status, f"faulty.py answers {status}".encode(), headers)
        finally:
            with STATE_LOCK:
                record["n"] = len(STATE["requests"]) + 1
                STATE["requests"].append(record)

    def forward(self, path: str, body: bytes, record: dict) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIP_HEADERS}
        request = urllib.request.Request(UPSTREAM[0] + path, data=body, headers=headers, method="POST")
        try:
            with OPENER.open(request, timeout=30) as up:
                status, answer, up_headers = up.status, up.read(), up.headers
        except urllib.error.HTTPError as e:
            status, answer, up_headers = e.code, e.read(), e.headers
        except (OSError, urllib.error.URLError) as e:
            record["status"], record["upstreamError"] = 502, str(e)
            self.answer(502, f"faulty.py: upstream {UPSTREAM[0]} unreachable: {e}".encode())
            return
        copied = {k: up_headers[k] for k in ANSWER_HEADERS if up_headers.get(k) is not None}
        record["status"], record["retryAfter"] = status, copied.get("retry-after")
        self.answer(status, answer, copied)

    def partial(self, path: str, content_type: str, mode: dict, record: dict) -> None:
        if path not in PARTIAL:
            record["status"] = 404
            self.answer(404, f"no such path {path}".encode())
            return
        response_type, field = PARTIAL[path]
        response = response_type()
        setattr(response.partial_success, field, int(mode.get("rejected", 0)))
        response.partial_success.error_message = str(mode.get("message", "rejected by faulty.py"))
        record["status"] = 200
        if content_type == "application/json":
            self.answer(200, json_format.MessageToJson(response).encode(), {"Content-Type": "application/json"})
        else:
            self.answer(200, response.SerializeToString(), {"Content-Type": "application/x-protobuf"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--upstream", required=True, help="base URL of the real receiver, e.g. http://127.0.0.1:4318")
    args = parser.parse_args()
    UPSTREAM[0] = args.upstream.rstrip("/")
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"ready": True, "port": server.server_address[1]}), flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
