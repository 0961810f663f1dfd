"""kata-top's HTTP clients (fleet's Prometheus client, --remote) against hostile servers on
loopback: a redirect to another host, a body trickled a byte every 2 s, 200 MB of valid
JSON, and server text that would drive a terminal."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from kata_top.fleet.promql import PrometheusClient, PrometheusError
from kata_top.sources.base import SourceError
from kata_top.sources.remote import RemoteSource
from tests.helpers import ROOT

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def serving(handle: Handler) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A threaded server on loopback calling `handle` for every request; yields its URL and
    the headers of every request it got."""
    seen: list[dict[str, str]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            with suppress(BrokenPipeError, ConnectionResetError):  # the client hung up
                handle(self)

        do_POST = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _token(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("s3cret-token")
    return str(path)


def test_a_redirect_to_another_host_is_not_followed_and_the_token_stays(
        tmp_path: Path) -> None:
    with serving(lambda h: (h.send_response(200), h.end_headers())) as (other, other_seen):
        def redirect(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", other.replace("127.0.0.1", "localhost") + h.path)
            h.end_headers()

        with serving(redirect) as (url, seen):
            client = PrometheusClient(url, token_file=_token(tmp_path), timeout=3)
            with pytest.raises(PrometheusError, match=r"302.*not followed"):
                client.query("up")
            assert seen[0]["Authorization"] == "Bearer s3cret-token"
            with pytest.raises(SourceError, match=r"302.*not followed"):
                RemoteSource(url, timeout=3).next()
    assert other_seen == []  # nothing, and no token, went to the other host


def _trickle(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.end_headers()
    for _ in range(60):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(2)


def test_a_trickled_body_ends_at_the_timeout() -> None:
    with serving(_trickle) as (url, _seen):
        for call, error in ((lambda: PrometheusClient(url, timeout=3).query("up"),
                             PrometheusError),
                            (lambda: RemoteSource(url, timeout=3).next(), SourceError)):
            started = time.monotonic()
            with pytest.raises(error, match="within 3 s"):
                call()
            assert time.monotonic() - started < 4.5


def test_fleet_cli_with_a_trickling_prometheus_exits_at_its_timeout() -> None:
    with serving(_trickle) as (url, _seen):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "kata_top", "fleet", "--prometheus", url,
                               "--timeout", "3", "--json"], capture_output=True, text=True,
                              cwd=ROOT, timeout=60, check=False)
        assert time.monotonic() - started < 8
    assert proc.returncode == 2 and "within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr


def _huge(h: http.server.BaseHTTPRequestHandler) -> None:
    """200 MB of valid JSON (a snapshot-shaped object with one huge array), no length."""
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.end_headers()
    h.wfile.write(b'{"schema":"kata-top/snapshot/1","taken_at":1,"sandboxes":[],"pad":[')
    block = b"{},[0],[1]," * 6000
    for _ in range((200 << 20) // len(block)):
        h.wfile.write(block)
    h.wfile.write(b"0]}")


def test_200_mb_of_valid_json_is_refused_with_little_memory() -> None:
    code = textwrap.dedent("""
        import sys
        from kata_top.sources.base import SourceError
        from kata_top.sources.remote import RemoteSource
        try:
            RemoteSource(sys.argv[1], timeout=30).next()
            print("accepted")
        except SourceError as exc:
            print(exc)
        # VmHWM: this process's own peak (ru_maxrss keeps the forking parent's across exec)
        with open("/proc/self/status") as fh:
            hwm = next(ln for ln in fh if ln.startswith("VmHWM:"))
        print(int(hwm.split()[1]) // 1024)
    """)
    with serving(_huge) as (url, _seen):
        proc = subprocess.run([sys.executable, "-c", code, url], capture_output=True,
                              text=True, cwd=ROOT, timeout=120, check=False,
                              env={**os.environ, "PYTHONPATH": ROOT})
    message, rss_mb = proc.stdout.strip().splitlines()
    assert "more than 32 MiB" in message, proc.stdout + proc.stderr
    # the cap (32 MiB) and the interpreter; reading the whole body took gigabytes
    assert int(rss_mb) < 200, rss_mb


def test_a_declared_huge_body_is_not_read() -> None:
    def declared(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(1 << 40))
        h.end_headers()

    with serving(declared) as (url, _seen), pytest.raises(SourceError, match="not read"):
        RemoteSource(url, timeout=3).next()


def test_server_text_is_escaped_before_it_reaches_a_terminal() -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J[bold red]x[/]"

    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        body = ('{"status":"error","error":"' + evil.replace("\x1b", "\\u001b").replace(
            "\x07", "\\u0007") + '"}').encode()
        if h.path.startswith("/api/v1/snapshot"):
            body = evil.encode()
        h.send_response(500 if h.path.startswith("/api/v1/snapshot") else 400)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    with serving(answer) as (url, _seen):
        with pytest.raises(PrometheusError) as prom:
            PrometheusClient(url, timeout=3).query("up")
        with pytest.raises(SourceError) as remote:
            RemoteSource(url, timeout=3).next()
    for exc in (prom.value, remote.value):
        text = str(exc)
        assert "pwned" in text and "\\x1b" in text
        assert "\x1b" not in text and "\x07" not in text


def test_url_credentials_go_to_that_host_only_and_never_into_a_message() -> None:
    def refuse(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(401)
        h.end_headers()

    with serving(refuse) as (url, seen):
        authed = url.replace("http://", "http://ops:pa%3Ass@")
        with pytest.raises(SourceError) as exc:
            RemoteSource(authed, timeout=3).next()
    assert seen[0]["Authorization"] == "Basic b3BzOnBhOnNz"  # ops:pa:ss
    assert "401" in str(exc.value)
    assert not any(w in str(exc.value) for w in ("ops", "pa:ss", "pa%3Ass"))
