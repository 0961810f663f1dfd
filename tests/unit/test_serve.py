"""`kata-top serve` without a lab: request parsing (hypothesis), the collection hub's sharing
and deadlines, and the HTTP server's answers to scrapers good and bad, over real loopback."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kata_top.cli.serve import parse_listen
from kata_top.formats.recording import load_recording
from kata_top.model import Snapshot
from kata_top.serve.gzip_parts import PartsGzip
from kata_top.serve.hub import SnapshotHub, Unavailable
from kata_top.serve.routes import ROUTES, BadRequest, parse_target
from kata_top.serve.server import ExporterServer
from kata_top.serve.webconfig import WebConfig
from kata_top.sources.base import Source
from tests.serve_helpers import ROOT, http_get, serving

DEMO, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))


class CountingSource(Source):
    """Serves the demo recording's last snapshot, counting collections; can be slowed down
    or made to fail, to drive the hub like a sick node would."""

    kind = "live"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self.fail: str | None = None
        self.threads: set[int] = set()

    def next(self) -> Snapshot:
        self.calls += 1
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError(self.fail)
        return DEMO[-1]


@contextmanager
def hub_with(source: CountingSource, run_root: str, min_interval: float = 1.0
             ) -> Iterator[SnapshotHub]:
    hub = SnapshotHub(lambda: source, run_root, min_interval)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


# ---- request targets (untrusted input) ------------------------------------------------------
@given(st.text(max_size=300))
def test_any_target_parses_or_is_a_clean_bad_request(target: str) -> None:
    try:
        req = parse_target(target)
    except BadRequest as exc:
        assert exc.status in (400, 404, 414) and str(exc)
    else:
        assert req.route in ROUTES.values()


def test_targets_that_are_served() -> None:
    assert parse_target("/metrics").route == "metrics"
    assert parse_target("/api/v1/snapshot?sandbox=default%2Fweb-0").sandbox == "default/web-0"
    assert parse_target("/healthz/").route == "healthz"
    for bad, status in (("/api/v1/snapshot?sandbox=a&sandbox=b", 400), ("/metrics?x=1", 400),
                        ("/etc/passwd", 404), ("/api/v1/snapshot?sandbox=", 400),
                        ("/" + "a" * 3000, 414), ("/metrics?%ZZ", 400)):
        with pytest.raises(BadRequest) as info:
            parse_target(bad)
        assert info.value.status == status, bad


@given(st.text(max_size=40))
def test_any_listen_text_parses_or_says_why(text: str) -> None:
    try:
        host, port = parse_listen(text)
    except ValueError as exc:
        assert "--listen" in str(exc)
    else:
        assert 0 <= port <= 65535 and host


def test_listen_forms() -> None:
    assert parse_listen("127.0.0.1:9712") == ("127.0.0.1", 9712)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("localhost:80") == ("127.0.0.1", 80)
    for bad in ("9712", ":9712", "127.0.0.1:99999", "example.com:80", "1.2.3.4:x"):
        with pytest.raises(ValueError):
            parse_listen(bad)


# ---- the hub ------------------------------------------------------------------------------
def test_concurrent_requests_share_one_collection(tmp_path: Any) -> None:
    source = CountingSource(delay=0.3)
    with hub_with(source, str(tmp_path), min_interval=5.0) as hub:
        results: list[Snapshot] = []
        threads = [threading.Thread(target=lambda: results.append(hub.get(30)))
                   for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 20 and all(r is DEMO[-1] for r in results)
        assert source.calls == 1
        hub.get(30)  # within min_interval: the same collection again
        assert source.calls == 1
        assert len(source.threads) == 1  # every collection on the hub's own thread


def test_min_interval_bounds_collections(tmp_path: Any) -> None:
    source = CountingSource()
    with hub_with(source, str(tmp_path), min_interval=0.0) as hub:
        for _ in range(3):
            hub.get(30)
        assert source.calls == 3  # 0 s: every request collects (one at a time)


def test_slow_collection_is_a_503_reason_and_never_stacks(tmp_path: Any) -> None:
    source = CountingSource(delay=1.0)
    with hub_with(source, str(tmp_path), min_interval=0.0) as hub:
        with pytest.raises(Unavailable, match="no collection finished"):
            hub.get(0.2)
        with pytest.raises(Unavailable):
            hub.get(0.2)
        assert source.calls == 1  # the second request waited on the running one
        assert hub.get(30) is DEMO[-1]


def test_failure_and_vanished_run_root_are_reasons_then_recover(tmp_path: Any) -> None:
    root = tmp_path / "root"
    root.mkdir()
    source = CountingSource()
    source.fail = "netlink said no"
    with hub_with(source, str(root), min_interval=0.0) as hub:
        with pytest.raises(Unavailable, match="netlink said no"):
            hub.get(30)
        source.fail = None
        assert hub.get(30) is DEMO[-1]
        root.rmdir()
        with pytest.raises(Unavailable, match="does not exist"):
            hub.get(30)
        assert hub.stats().failures == 2


# ---- the HTTP server over loopback ---------------------------------------------------------
@contextmanager
def http_server(source: CountingSource, run_root: str, web: WebConfig | None = None
                ) -> Iterator[str]:
    with hub_with(source, run_root, min_interval=1.0) as hub:
        server = ExporterServer(("127.0.0.1", 0), hub, deadline=5.0, web=web)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def test_routes_answer_and_nothing_writes(tmp_path: Any) -> None:
    with http_server(CountingSource(), str(tmp_path)) as base:
        status, headers, body = http_get(base + "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert b"kata_top_redirect_present{" in body
        status, headers, body = http_get(base + "/metrics", headers={
            "Accept": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        plain = http_get(base + "/metrics")[2]
        first = b""
        for step in ("render", "cached"):  # the same snapshot: the first answer again
            status, headers, body = http_get(base + "/metrics",
                                             headers={"Accept-Encoding": "gzip"})
            assert headers.get("Content-Encoding") == "gzip" and body[:2] == b"\x1f\x8b"
            assert _without_exporter_lines(gzip.decompress(body)) == \
                _without_exporter_lines(plain)
            assert f"{step};dur=" in headers["Server-Timing"]
            assert body == (first or body)
            first = body
        # an independent decoder agrees (gzip(1) checks the CRC and the length)
        out = subprocess.run(["gzip", "-dc"], input=body, capture_output=True, check=False)
        assert out.returncode == 0 and out.stdout == gzip.decompress(body)
        status, _h, body = http_get(base + "/api/v1/snapshot?sandbox=default/web-0")
        assert status == 200 and body.startswith(b'{"schema":"kata-top/snapshot/1",')
        assert [sb["pod"]["name"] for sb in json.loads(body)["sandboxes"]] == ["web-0"]
        assert http_get(base + "/api/v1/snapshot?sandbox=nosuch")[0] == 404
        assert http_get(base + "/api/v1/check")[0] == 200
        health = http_get(base + "/healthz")
        assert (health[0], health[2]) == (200, b"ok\n")
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            conn = http.client.HTTPConnection(base[7:], timeout=5)
            conn.request(method, "/api/v1/snapshot", body=b"{}")
            resp = conn.getresponse()
            assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
            conn.close()


def _without_exporter_lines(text: bytes) -> list[bytes]:
    # the exporter's own counters (collections, …) move between two answers
    return [line for line in text.splitlines() if b"kata_top_exporter_" not in line]


@given(st.lists(st.lists(st.binary(max_size=3000), max_size=6), min_size=1, max_size=4),
       st.integers(0, 9))
def test_parts_gzip_is_one_gzip_member_of_the_whole(rounds: list[list[bytes]],
                                                    level: int) -> None:
    """Whatever the parts, and whichever of them are reused from the last answer, the result
    decodes to their concatenation (the CRC and length checked by the decoder)."""
    pg = PartsGzip(level)
    kept: list[bytes] = []
    for parts in rounds:
        answer = kept[: len(parts) // 2] + parts  # some parts the very same objects as before
        assert gzip.decompress(pg.compress(answer)) == b"".join(answer)
        kept = answer
    assert pg.reused >= sum(len(r) // 2 for r in rounds[:-1]) * 0  # counted, never negative


def test_parts_gzip_reuses_only_identical_objects() -> None:
    pg = PartsGzip()
    a, b = b"x" * 5000, bytearray(b"y" * 5000)
    first = pg.compress([a, bytes(b)])
    assert pg.reused == 0
    second = pg.compress([a, bytes(b)])  # a is the same object; the second part a new one
    assert pg.reused == 1 and gzip.decompress(second) == gzip.decompress(first)


def test_fifty_concurrent_scrapers_and_a_rude_one(tmp_path: Any) -> None:
    source = CountingSource(delay=0.1)
    with http_server(source, str(tmp_path)) as base:
        statuses: list[int] = []

        def scrape() -> None:
            statuses.append(http_get(base + "/metrics", timeout=30)[0])

        threads = [threading.Thread(target=scrape) for _ in range(50)]
        for t in threads:
            t.start()
        # One client asks and leaves before reading the body.
        s = socket.create_connection((base[7:].split(":")[0], int(base.rsplit(":", 1)[1])))
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        s.close()
        for t in threads:
            t.join()
        assert statuses == [200] * 50
        assert source.calls <= 2  # shared, not fifty collections
        assert http_get(base + "/healthz")[0] == 200  # still serving


def test_serve_command_faults(tmp_path: Any) -> None:
    """Bad input and a taken port: one line, exit 2, no traceback."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kata_top", "serve", *argv], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for argv, words in ((["--listen", "nonsense"], "HOST:PORT"),
                            (["--listen", f"127.0.0.1:{port}"], "cannot listen"),
                            (["--run-root", str(tmp_path / "nope")], "does not exist"),
                            (["--min-interval", "nan"], "--min-interval")):
            out = run("--run-root", str(tmp_path), *argv) if "--run-root" not in argv else \
                run(*argv)
            assert out.returncode == 2, (argv, out.stderr)
            assert words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_run_root_that_vanishes_under_a_live_serve(tmp_path: Any) -> None:
    root = tmp_path / "root"
    (root / "vc" / "sbs").mkdir(parents=True)
    with serving(str(root), "--min-interval", "0") as (base, proc):
        assert http_get(base + "/healthz")[0] == 200
        (root / "vc" / "sbs").rmdir()
        (root / "vc").rmdir()
        root.rmdir()
        status, _h, body = http_get(base + "/healthz")
        assert status == 503 and b"does not exist" in body
        assert http_get(base + "/metrics")[0] == 503
        assert proc.poll() is None
