"""A real `kata-top serve` on loopback against the crowds the exporter meets: a fleet of
scrapers at once, a slowloris flood, clients with huge heads. Each is answered or cut off
within bounds, and the process's threads, file descriptors and memory stay bounded."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kata_top.serve.front import Front, Limits
from tests.run_roots import persist, run_root
from tests.serve_helpers import http_get, proc_usage, serving, wait_for

HEAVY_HEADERS = 98  # with Host, 99: under http.server's 100, which it would refuse
HEADER_VALUE = 60_000  # under http.server's 64 KiB line limit: each head ~6 MB


def _addr(base: str) -> tuple[str, int]:
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _crafted_root(tmp: Any, n: int) -> str:
    return run_root(tmp, {f"{i:064x}": persist(name=f"web-{i}") for i in range(n)})


@contextmanager
def _held(base: str, n: int, partial: bytes = b"") -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(n):
            s = stack.enter_context(socket.create_connection(_addr(base), timeout=5))
            if partial:
                s.sendall(partial)
            socks.append(s)
        yield socks


def test_two_hundred_concurrent_scrapes_are_all_answered_within_2s(tmp_path: Any) -> None:
    root = _crafted_root(tmp_path, 200)
    with serving(root, "--min-interval", "30") as (base, _proc):
        status, _h, body = http_get(base + "/metrics", timeout=60)  # the first collection
        assert status == 200 and body.count(b"kata_top_sandbox_info{") == 200
        times: list[float] = []
        statuses: list[int] = []
        start = threading.Barrier(201)

        def scrape() -> None:
            start.wait()
            t0 = time.monotonic()
            try:
                statuses.append(http_get(base + "/metrics", timeout=30, headers={
                    "Accept-Encoding": "gzip"})[0])
            except OSError as exc:
                statuses.append(-1)
                raise AssertionError(exc) from exc
            finally:
                times.append(time.monotonic() - t0)

        threads = [threading.Thread(target=scrape) for _ in range(200)]
        for t in threads:
            t.start()
        start.wait()
        for t in threads:
            t.join()
        assert statuses == [200] * 200
        assert max(times) < 2.0, f"slowest {max(times):.2f} s, median {sorted(times)[100]:.2f}"


def test_a_trickled_request_head_is_cut_off(tmp_path: Any) -> None:
    """Slowloris: a byte every second keeps each read alive; the whole head has a deadline."""
    with serving(str(tmp_path)) as (base, _proc), \
            socket.create_connection(_addr(base), timeout=5) as s:
        t0 = time.monotonic()
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
            try:
                s.sendall(bytes([byte]))
                time.sleep(1.0)
            except OSError:
                closed = True
                break
            if time.monotonic() - t0 > 20:
                break
        assert closed, "the server still listens to a head trickled for 20 s"
        assert time.monotonic() - t0 < 15


def test_a_thousand_idle_connections_hold_no_thread_and_metrics_answer(tmp_path: Any) -> None:
    with serving(str(tmp_path)) as (base, proc):
        assert http_get(base + "/metrics")[0] == 200
        before = proc_usage(proc.pid)
        with _held(base, 500), _held(base, 500, b"GET /metrics HTTP/1.1\r\nX-A: b"):
            time.sleep(1.0)
            during = proc_usage(proc.pid)
            t0 = time.monotonic()
            status = http_get(base + "/metrics", timeout=10)[0]
            assert status == 200 and time.monotonic() - t0 < 2.0
            during = {k: max(v, proc_usage(proc.pid)[k]) for k, v in during.items()}
        assert during["threads"] <= before["threads"] + 10, (before, during)
        assert during["fds"] <= before["fds"] + 600, (before, during)
        assert during["vmrss"] - before["vmrss"] < 40_000, (before, during)
        assert http_get(base + "/healthz")[0] == 200
        evicted = re.search(rb'^kata_top_exporter_connections_dropped_total\{reason="evicted"\} '
                            rb'(\d+)', http_get(base + "/metrics")[2], re.M)
        assert evicted and int(evicted.group(1)) >= 400  # 1,000 + the scrape, 512 at a time


def test_forty_clients_with_huge_heads_get_431_and_memory_stays_flat(tmp_path: Any) -> None:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"a" * HEADER_VALUE) for i in range(HEAVY_HEADERS)) + b"\r\n"
    with serving(str(tmp_path)) as (base, proc):
        assert http_get(base + "/metrics")[0] == 200
        before = proc_usage(proc.pid)
        peak = dict(before)
        answers: list[bytes] = []

        def client() -> None:
            with socket.create_connection(_addr(base), timeout=30) as s:
                with contextlib.suppress(OSError):  # cut off mid-head: the answer may
                    s.sendall(head)                  # already be waiting
                try:
                    answers.append(s.recv(200))
                except OSError as exc:
                    answers.append(repr(exc).encode())

        threads = [threading.Thread(target=client) for _ in range(40)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak = {k: max(v, proc_usage(proc.pid)[k]) for k, v in peak.items()}
            time.sleep(0.05)
        assert len(answers) == 40
        assert sum(a.split(b" ", 2)[1:2] == [b"431"] for a in answers) >= 36, answers
        assert peak["vmrss"] - before["vmrss"] < 40_000, (before, peak)
        wait_for(lambda: http_get(base + "/healthz")[0] == 200, 10, "serve to answer again")
        metrics = http_get(base + "/metrics")[2]
        assert re.search(rb'^kata_top_exporter_connections_dropped_total\{reason="too-large"\} '
                         rb'(3[6-9]|40)(\.0)?$', metrics, re.M), metrics[-800:]


def test_a_reader_too_slow_for_the_write_deadline_is_cut_off() -> None:
    """A client that asks and then does not read holds its answer only until the deadline."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n" + b"x" * (64 << 20)
    sock = socket.create_server(("127.0.0.1", 0))
    front = Front(sock, Limits(write_timeout_s=1.0), lambda _raw, _peer, _cert: answer)
    thread = threading.Thread(target=front.run)
    thread.start()
    try:
        with socket.socket() as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.connect(sock.getsockname())
            c.sendall(b"GET / HTTP/1.1\r\n\r\n")
            time.sleep(3.0)  # past the deadline, not reading
            got = 0
            c.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                while chunk := c.recv(1 << 20):
                    got += len(chunk)
            assert 0 < got < len(answer)  # cut off, not left holding 64 MB
        assert front.stats.timed_out == 1
    finally:
        front.shutdown()
        front.close()
        thread.join()


@contextmanager
def _front(limits: Limits) -> Iterator[tuple[str, int]]:
    sock = socket.create_server(("127.0.0.1", 0))
    front = Front(sock, limits, lambda raw, _peer, _cert: b"HTTP/1.1 200 OK\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
    thread = threading.Thread(target=front.run)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        front.shutdown()
        front.close()
        thread.join()


def _exchange(addr: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(addr, timeout=5) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
        return out


_HEADISH = st.lists(st.one_of(
    st.binary(max_size=40), st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b"GET / HTTP/1.1",
                                             b"Content-Length: ", b"Transfer-Encoding: x",
                                             b"99999999999999999999", b"5", b":"])),
    max_size=30).map(b"".join)


@settings(max_examples=60, deadline=None)
@given(_HEADISH)
def test_any_bytes_get_a_whole_answer_a_refusal_or_a_close(data: bytes) -> None:
    """Untrusted request bytes: the front passes on exactly a head (and the body its one
    Content-Length names), refuses with 413/431, or closes; and serves the next client."""
    lim = Limits(max_head_bytes=256, max_headers=8, max_body_bytes=64, head_timeout_s=2.0)
    with _front(lim) as addr:
        out = _exchange(addr, data)
        assert out == b"" or out.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 413 ",
                                             b"HTTP/1.1 431 ")), out[:80]
        if out.startswith(b"HTTP/1.1 200 "):
            echoed = out.split(b"\r\n\r\n", 1)[1]
            assert data.startswith(echoed) and len(echoed) <= 256 + 64 + 4
        assert _exchange(addr, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_a_second_socket_is_answered_by_the_same_server(tmp_path: Any) -> None:
    """front_for: a unix socket beside the TCP one, same routes and answers."""
    from kata_top.serve.hub import SnapshotHub
    from kata_top.serve.server import ExporterServer
    from tests.unit.test_serve import CountingSource

    hub = SnapshotHub(lambda: CountingSource(), str(tmp_path))
    hub.start()
    server = ExporterServer(("127.0.0.1", 0), hub, 5.0)
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "serve.sock"))
    unix.listen()
    front = server.front_for(unix)
    thread = threading.Thread(target=front.run)
    thread.start()
    try:
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(10)
            c.connect(str(tmp_path / "serve.sock"))
            c.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            out = b""
            while chunk := c.recv(4096):
                out += chunk
        assert out.startswith(b"HTTP/1.0 200 ") and out.endswith(b"\r\n\r\nok\n")
    finally:
        front.shutdown()
        front.close()
        thread.join()
        server.server_close()
        hub.stop()


def test_an_answer_that_fails_is_a_500_not_a_reset() -> None:
    """A route's bug (any exception building the answer) is answered and counted in the log,
    not a connection dropped without a word."""

    def broken(_raw: bytes, _peer: Any, _cert: Any) -> bytes:
        raise RuntimeError("a route's bug")

    sock = socket.create_server(("127.0.0.1", 0))
    front = Front(sock, Limits(), broken)
    thread = threading.Thread(target=front.run)
    thread.start()
    try:
        out = _exchange(sock.getsockname(), b"GET / HTTP/1.1\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 500 "), out[:100]
    finally:
        front.shutdown()
        front.close()
        thread.join()
