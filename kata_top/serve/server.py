"""The exporter's HTTP server: /metrics, /api/v1/snapshot, /api/v1/check, /healthz.

Connections are accepted and read on one event loop (kata_top/serve/front.py: bounded in
number, size and time, no thread per connection); a whole request is answered by `Handler` on
a small pool of worker threads, which writes into memory for the loop to send. With a web
config (kata_top/serve/webconfig.py) the loop speaks TLS and `Handler` asks for basic auth on
every path but /healthz (a kubelet probe carries no password; it tells only whether the
exporter can read the node). No route changes anything. Failures are 503s with the reason in
the body.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, cast

from prometheus_client.exposition import choose_encoder

from kata_top.formats.prom_cache import TextCache
from kata_top.formats.prom_text import Exposition
from kata_top.model import Snapshot
from kata_top.serve.front import Front, Limits
from kata_top.serve.gzip_parts import PartsGzip
from kata_top.serve.hub import SnapshotHub, Unavailable
from kata_top.serve.routes import BadRequest, Request, parse_target
from kata_top.serve.webconfig import WebConfig

log = logging.getLogger(__name__)

INDEX = b"""kata-top exporter (read-only)
  /metrics           Prometheus text, or OpenMetrics when asked
  /api/v1/snapshot   kata-top/snapshot/1 JSON   (?sandbox=ID|PREFIX|NS/POD)
  /api/v1/check      kata-top/check/1 JSON      (?sandbox=...)
  /api/v1/events     kata-top/event/1 NDJSON   (?since=10m&sandbox=...)
  /healthz           200 while collections succeed and can read the node, 503 with the reason
"""


class ExporterServer:
    """Listens on `address`; `serve_forever()` on one thread, `shutdown()` from another.

    `auth_required` says whether every request must prove who it is (basic auth or a verified
    client certificate, from the web config): a route that must not be open to whoever
    reaches the port checks it and refuses when it is false (Handler.require_authentication).
    """

    def __init__(self, address: tuple[str, int], hub: SnapshotHub, deadline: float,
                 web: WebConfig | None = None, limits: Limits | None = None,
                 redact_cmdlines: bool = False) -> None:
        from kata_top.serve.auth import BasicAuth

        self.hub = hub
        self.deadline = deadline
        self.web = web or WebConfig()
        self.limits = limits or Limits()
        self.redact_cmdlines = redact_cmdlines
        self.basic_auth = BasicAuth(self.web.users) if self.web.users else None
        self.handler_class: type[Handler] = Handler
        self.text_cache = TextCache()
        self.parts_gzip = PartsGzip()
        self.text_lock = threading.Lock()
        # (openmetrics, gzip) → the last /metrics answer and what it was made from
        self.answers: dict[tuple[bool, bool], tuple[Snapshot, object, bytes]] = {}
        # set when the server stops: a drop trace still running ends now, not at its time
        self.stopping = threading.Event()
        ssl_context = self.web.ssl_context()  # WebConfigError before anything listens
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        # SO_REUSEADDR: a restarted exporter binds again at once (TIME_WAIT of last scrapes).
        sock = socket.create_server(address, family=family, backlog=self.limits.backlog)
        self.server_address: tuple[str, int] = sock.getsockname()[:2]
        self.front = Front(sock, self.limits, self._answer, ssl_context)

    @property
    def auth_required(self) -> bool:
        return self.web.auth_required

    @property
    def scheme(self) -> str:
        return "https" if self.web.tls is not None else "http"

    def front_for(self, sock: socket.socket) -> Front:
        """Another listening socket (a unix socket, say) answered by this server: the same
        routes, limits and caches, plain (no TLS), on its own loop: `front.run()` on a thread,
        `front.shutdown()` and `front.close()` after."""
        return Front(sock, self.limits, self._answer)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        del poll_interval  # the event loop wakes on events, not on a poll
        self.front.run()

    def shutdown(self) -> None:
        self.stopping.set()
        self.front.shutdown()

    def server_close(self) -> None:
        self.stopping.set()
        self.front.close()

    def _answer(self, raw: bytes, peer: tuple[str, int], cert: dict[str, Any] | None) -> bytes:
        handler = self.handler_class(raw, peer, self, cert)
        return handler.wfile.getvalue()


class Handler(BaseHTTPRequestHandler):
    """One request, read from memory and answered into memory (`wfile`)."""

    server: ExporterServer  # type: ignore[assignment]
    wfile: io.BytesIO
    server_version = "kata-top"
    sys_version = ""

    def __init__(self, raw: bytes, peer: tuple[str, int], server: ExporterServer,
                 cert: dict[str, Any] | None) -> None:
        self.peer_cert = cert
        self._timing: list[tuple[str, float]] = []
        super().__init__(cast(Any, raw), peer, cast(Any, server))

    def setup(self) -> None:
        self.rfile = io.BytesIO(cast(bytes, self.request))
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        pass  # wfile is read by ExporterServer._answer

    def authorized(self) -> bool:
        """True when the request may be served; else a 401 is written."""
        tls = self.server.web.tls
        if tls is not None and tls.client_auth_type == "RequireAndVerifyClientCert" and \
                self.peer_cert is None:
            # a plain socket beside the TLS one (front_for) carries no certificate to verify
            self._send(403, b"this exporter needs a verified client certificate (TLS)\n",
                       "text/plain; charset=utf-8")
            return False
        auth = self.server.basic_auth
        if auth is None or auth.check(self.headers.get("Authorization")) is not None:
            return True
        self._send(401, b"authentication required\n", "text/plain; charset=utf-8",
                   extra={"WWW-Authenticate": 'Basic realm="kata-top", charset="UTF-8"'})
        return False

    def require_authentication(self) -> bool:
        """For a route that must never be open to anyone: True when the exporter is
        configured to authenticate every request and this one did; else 403 or 401."""
        if not self.server.auth_required:
            self._send(403, b"this route needs authentication: start serve with "
                       b"--web.config.file naming basic_auth_users or client certificates\n",
                       "text/plain; charset=utf-8")
            return False
        return self.authorized()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._route()

    def _refuse(self) -> None:
        self._send(405, b"kata-top serve is read-only: only GET and HEAD\n",
                   "text/plain; charset=utf-8", extra={"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = _refuse

    def do_POST(self) -> None:
        """Only `POST /api/v1/drops` (kata_top/serve/drops_route.py), refused unless the
        server authenticates every request (`auth_required`) and this one proved who it is."""
        from kata_top.serve import drops_route

        if self.path.split("?", 1)[0].rstrip("/") != drops_route.PATH:
            self._refuse()
            return
        self._timing = []
        if self.server.auth_required and not self.authorized():
            return
        res = drops_route.handle(self.path, self.server.auth_required,
                                 lambda: self.server.hub.get(self.server.deadline),
                                 self.server.stopping.is_set)
        self._send(res.status, res.body, res.content_type)

    def _route(self) -> None:
        try:
            req = parse_target(self.path)
        except BadRequest as exc:
            self._send(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        if req.route != "healthz" and not self.authorized():
            return
        if req.route == "index":
            self._send(200, INDEX, "text/plain; charset=utf-8")
            return
        if req.route == "events":
            self._events(req)
            return
        t0 = time.perf_counter()
        try:
            # only scrapes have a cadence worth collecting ahead of (serve/cadence.py)
            snap = self.server.hub.get(self.server.deadline, paced=req.route == "metrics")
        except Unavailable as exc:
            self._send(503, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        self._timing = [("collect", time.perf_counter() - t0)]
        if req.route == "healthz":
            from kata_top.serve.health import unreadable

            problem = unreadable(snap, self.server.hub.run_root)
            if problem:
                self._send(503, f"{problem}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
        elif req.route == "metrics":
            self._metrics(snap)
        else:
            self._json(req, snap)

    def _metrics(self, snap: Snapshot) -> None:
        # prometheus_client negotiates the format; kata-top's encoder writes it (see
        # kata_top/formats/prom_text.py: the same series, each sandbox's labels written once).
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
        dropped = self.server.front.stats.dropped()
        for reason, n in dropped.items():
            ex.add("exporter_connections_dropped", "counter", "Connections the exporter "
                   "closed without an answer or refused, by reason.", None, n, reason=reason)
        openmetrics = content_type.startswith("application/openmetrics-text")
        gzipped = self._gzip_wanted()
        # Scrapers on the same tick share a snapshot and the exporter's own counters: the
        # first one's answer is every other one's, byte for byte.
        stamp = (st.collections, st.failures, st.last_duration_s, tuple(sorted(counts.items())),
                 tuple(dropped.values()))
        t0 = time.perf_counter()
        with self.server.text_lock:  # the caches are shared by the request threads
            last = self.server.answers.get((openmetrics, gzipped))
            if last is not None and last[0] is snap and last[1] == stamp:
                body = last[2]
                self._timing.append(("cached", time.perf_counter() - t0))
            else:
                parts = self.server.text_cache.parts(snap, openmetrics, tail=ex)
                self._timing.append(("render", time.perf_counter() - t0))
                t0 = time.perf_counter()
                if gzipped:
                    body = self.server.parts_gzip.compress(parts)
                    self._timing.append(("gzip", time.perf_counter() - t0))
                else:
                    body = b"".join(parts)
                self.server.answers[(openmetrics, gzipped)] = (snap, stamp, body)
        self._send(200, body, content_type, gzipped=gzipped)

    def _events(self, req: Request) -> None:
        """The events this exporter has seen (newest last), NDJSON kata-top/event/1."""
        from kata_top.events.journal import event_line
        from kata_top.events.query import event_matches, parse_since

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

        if req.sandbox is None:  # the whole node: the same bytes for every client
            self._whole_json(req, snap)
            return
        try:
            snap = narrow(snap, req.sandbox)
        except SelectError as exc:
            self._send(404, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return
        if self.server.redact_cmdlines:
            from kata_top.serve.redact import without_cmdlines

            snap = without_cmdlines(snap)
        body = (json.dumps(check_document(snap)).encode() if req.route == "check" else
                encode(snap))
        self._send(200, body, "application/json")

    def _whole_json(self, req: Request, snap: Snapshot) -> None:
        """/api/v1/snapshot or /check of the whole node: encoded (and gzipped) once per
        collection, whoever asks (kata_top/serve/encoded.py; the local socket shares them)."""
        from kata_top.serve.local_socket import encode_whole

        cache, redact = self.server.hub.encoded, self.server.redact_cmdlines
        key = ("json", req.route, redact)
        t0 = time.perf_counter()
        body = cache.get(snap, key, lambda: encode_whole(snap, req.route, redact))
        self._timing.append(("encode", time.perf_counter() - t0))
        if self._gzip_wanted() and len(body) > 1024:
            t0 = time.perf_counter()
            gz = cache.get(snap, (*key, "gzip"), lambda: gzip.compress(body, compresslevel=1))
            self._timing.append(("gzip", time.perf_counter() - t0))
            self._send(200, gz, "application/json", gzipped=True)
        else:
            self._send(200, body, "application/json")

    def _gzip_wanted(self) -> bool:
        return "gzip" in self.headers.get("Accept-Encoding", "")

    def _send(self, status: int, body: bytes, content_type: str,
              gzipped: bool = False, extra: dict[str, str] | None = None) -> None:
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
        for name, value in (*self.server.web.headers.items(), *(extra or {}).items()):
            self.send_header(name, value)
        if self._timing:
            # Where the answer's time went, as browsers' and curl -v's Server-Timing shows it
            # (bench/serve.py reads it: the time at the server, not at the client).
            self.send_header("Server-Timing", ", ".join(
                f"{name};dur={sec * 1000:.2f}" for name, sec in self._timing))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
