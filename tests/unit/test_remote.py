"""`--remote`: a node's /api/v1/snapshot read into the model, and whatever else a server sends
refused with a SourceError that says what came (the last good snapshot stays on screen)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kata_top.formats import jsonin, jsonout
from kata_top.sources.base import SourceError
from kata_top.sources.remote import RemoteSource
from tests.helpers import ROOT

with open(os.path.join(ROOT, "tests", "data", "demo.ndjson"), "rb") as _fh:
    LINE = next(line for line in _fh if line.strip())


@contextmanager
def serving(body: bytes, status: int = 200) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_nodes_snapshot_is_read_as_written() -> None:
    snap = jsonin.decode(LINE)
    with serving(jsonout.encode(snap)) as url:
        assert RemoteSource(url, timeout=5).next() == snap


DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.mark.parametrize(("body", "says"), [
    (b"<html>hello</html>", "not JSON"),
    (b'{"schema": "kata-top/check/1", "findings": []}', "not a kata-top snapshot"),
    (b"[1, 2]", "not a kata-top snapshot"),
    (LINE.replace(b'"mtu":1500', b'"mtu":"1500"', 1), "Expected `int`, got `str`"),
    (LINE[: len(LINE) // 2], "not JSON"),
    (b'{"schema": "kata-top/snapshot/1", "host": ' + DEEP + b"}", "nested too deep"),
    (b'{"schema": "kata-top/snapshot/1", "new": ' + DEEP + b"}", "nested too deep"),
], ids=["html", "check", "array", "wrong-type", "cut-off", "deep", "deep-unknown"])
def test_what_is_not_a_snapshot_is_a_source_error(body: bytes, says: str) -> None:
    with serving(body) as url, pytest.raises(SourceError, match="did not send a kata-top "
                                                                 "snapshot") as exc:
        RemoteSource(url, timeout=5).next()
    assert says in str(exc.value)


def test_the_dashboards_label_never_shows_the_urls_password() -> None:
    """The URL's user:password authenticate the drops POST; the header names the node only."""
    src = RemoteSource("https://ops:hunter2@node-7:9712/")
    assert "hunter2" not in src.label and "node-7:9712" in src.label
    assert src.url == "https://ops:hunter2@node-7:9712"  # still what requests are sent to
