"""The exporter's HTTP server: /metrics, /api/v1/snapshot, /api/v1/check, /healthz.

Standard library HTTP with one thread per connection (bounded: past MAX_INFLIGHT requests the
answer is a 503 at once), a socket timeout per connection so a stalled client cannot hold a
thread, and no route that changes anything. Failures are 503s with the reason in the body; a
client that disconnects mid-body is logged at debug, never a traceback on stderr.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from kata_top.formats.prometheus import Exposition, TextCache
from kata_top.model import Snapshot
from kata_top.serve.gzip_parts import PartsGzip
from kata_top.serve.hub import SnapshotHub, Unavailable
from kata_top.serve.routes import BadRequest, Request, parse_target

log = logging.getLogger(__name__)

MAX_INFLIGHT = 64
CLIENT_TIMEOUT_S = 10.0
INDEX = b"""kata-top exporter (read-only)
  /metrics           Prometheus text, or OpenMetrics when asked
  /api/v1/snapshot   kata-top/snapshot/1 JSON   (?sandbox=ID|PREFIX|NS/POD)
  /api/v1/check      kata-top/check/1 JSON      (?sandbox=...)
  /api/v1/events     kata-top/event/1 NDJSON   (?since=10m&sandbox=...)
  /healthz           200 while collections succeed, 503 with the reason
"""


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted exporter must bind again at once (TIME_WAIT from the last scrapes).
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: SnapshotHub, deadline: float) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, Handler)
        self.hub = hub
        self.deadline = deadline
        self.inflight = threading.BoundedSemaphore(MAX_INFLIGHT)
        self.text_cache = TextCache()
        self.parts_gzip = PartsGzip()
        self.text_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback to stderr by default; a dropped client is normal.
        log.debug("request from %s failed", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    timeout = CLIENT_TIMEOUT_S
    server_version = "kata-top"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._timing: list[tuple[str, float]] = []
        if not self.server.inflight.acquire(blocking=False):
            self._send(503, b"too many requests in flight; try again\n", "text/plain")
            return
        try:
            self._route()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            log.debug("client %s went away", self.client_address[0])
        finally:
            self.server.inflight.release()

    def _refuse(self) -> None:
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        body = b"kata-top serve is read-only: only GET and HEAD\n"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_DELETE = do_PATCH = _refuse

    def do_POST(self) -> None:
        """Only `POST /api/v1/drops` (kata_top/serve/drops_route.py), refused unless the
        server has authentication configured (`auth_configured`)."""
        from kata_top.serve import drops_route

        if self.path.split("?", 1)[0].rstrip("/") != drops_route.PATH:
            self._refuse()
            return
        self._timing = []
        res = drops_route.handle(self.path, getattr(self.server, "auth_configured", False),
                                 lambda: self.server.hub.get(self.server.deadline))
        self._send(res.status, res.body, res.content_type)

    def _route(self) -> None:
        try:
            req = parse_target(self.path)
        except BadRequest as exc:
            self._send(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        if req.route == "index":
            self._send(200, INDEX, "text/plain; charset=utf-8")
            return
        if req.route == "events":
            self._events(req)
            return
        t0 = time.perf_counter()
        try:
            snap = self.server.hub.get(self.server.deadline)
        except Unavailable as exc:
            self._send(503, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        self._timing = [("collect", time.perf_counter() - t0)]
        if req.route == "healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif req.route == "metrics":
            self._metrics(snap)
        else:
            self._json(req, snap)

    def _metrics(self, snap: Snapshot) -> None:
        # prometheus_client negotiates the format; kata-top's encoder writes it (see
        # kata_top/formats/prometheus.py: same series, several times faster).
        _encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        ex = Exposition()
        st = self.server.hub.stats()
        ex.add("exporter_collections", "counter", "Collections the exporter ran.", None,
               st.collections)
        ex.add("exporter_collection_failures", "counter", "Collections that failed (the "
               "scrape then answered 503).", None, st.failures)
        ex.add("exporter_last_collection_seconds", "gauge", "How long the last collection "
               "took.", None, st.last_duration_s)
        counts = dict(getattr(self.server.hub.source, "event_counts", {}))
        for kind, n in sorted(counts.items()):
            ex.add("events", "counter", "Changes seen on this node since the exporter "
                   "started, by kind (see /api/v1/events).", None, n, kind=kind)
        openmetrics = content_type.startswith("application/openmetrics-text")
        gzipped = self._gzip_wanted()
        t0 = time.perf_counter()
        with self.server.text_lock:  # the caches are shared by the request threads
            parts = self.server.text_cache.parts(snap, openmetrics, tail=ex)
            self._timing.append(("render", time.perf_counter() - t0))
            if gzipped:
                t0 = time.perf_counter()
                body = self.server.parts_gzip.compress(parts)
                self._timing.append(("gzip", time.perf_counter() - t0))
        # written outside the lock: a slow reader holds its own thread, not the other scrapes
        self._send(200, body if gzipped else b"".join(parts), content_type, gzipped=gzipped)

    def _events(self, req: Request) -> None:
        """The events this exporter has seen (newest last), NDJSON kata-top/event/1."""
        from kata_top.events import event_line, event_matches, parse_since

        try:
            since = parse_since(req.since, time.time()) if req.since else None
        except ValueError as exc:
            self._send(400, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        history = list(getattr(self.server.hub.source, "history", ()))
        lines = []
        for e in history:
            line = event_line(e)
            if event_matches(json.loads(line), since, req.sandbox):
                lines.append(line)
        self._send(200, ("\n".join(lines) + "\n" if lines else "").encode(),
                   "application/x-ndjson")

    def _json(self, req: Request, snap: Snapshot) -> None:
        from kata_top.cli.check import check_document
        from kata_top.cli.common import narrow
        from kata_top.formats.jsonout import encode
        from kata_top.select import SelectError

        try:
            snap = narrow(snap, req.sandbox)
        except SelectError as exc:
            self._send(404, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        body = (json.dumps(check_document(snap)).encode() if req.route == "check" else
                encode(snap))
        self._send(200, body, "application/json")

    def _gzip_wanted(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "")

    def _send(self, status: int, body: bytes, content_type: str,
              gzipped: bool = False) -> None:
        encoding: str | None = "gzip" if gzipped else None
        if not gzipped and self._gzip_wanted() and len(body) > 1024:
            t0 = time.perf_counter()
            body = gzip.compress(body, compresslevel=1)
            self._timing.append(("gzip", time.perf_counter() - t0))
            encoding = "gzip"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        if self._timing:
            # Where the answer's time went, as browsers' and curl -v's Server-Timing shows it
            # (bench/serve.py reads it: the time at the server, not at the client).
            self.send_header("Server-Timing", ", ".join(
                f"{name};dur={sec * 1000:.2f}" for name, sec in self._timing))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
