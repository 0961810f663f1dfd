"""Monitor faults on real unix sockets: each is an error within the deadline, no fd left."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from kata_top.collectors import qmp

GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
            b'"package": ""}, "capabilities": []}}\n')


# A misbehaving server holds its connection this long (or until the test ends). A query
# that returns well before it proves its own deadline ended it: no wall-clock threshold on
# a shared machine, only a bound that a hang would cross.
HOLD_S = 20.0
RELEASE = threading.Event()


def hold() -> None:
    RELEASE.wait(HOLD_S)


def _server(path: str, behave: Callable[[socket.socket], None]) -> Iterator[None]:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    stop = threading.Event()
    RELEASE.clear()

    def loop() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                behave(conn)
            finally:
                conn.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        RELEASE.set()
        t.join()
        srv.close()


def _query(path: str, deadline: float = 0.3) -> tuple[BaseException | qmp.MonitorFacts, float]:
    t0 = time.monotonic()
    try:
        res: BaseException | qmp.MonitorFacts = asyncio.run(qmp.query_monitor(path, deadline))
    except Exception as exc:
        res = exc
    return res, time.monotonic() - t0


@pytest.fixture
def sock_path(tmp_path: object) -> str:
    return os.path.join(str(tmp_path), "m.sock")


def test_nothing_listening(sock_path: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)  # a socket file with nobody accepting
    s.close()
    res, took = _query(sock_path)
    assert isinstance(res, qmp.MonitorError) and "nothing listening" in str(res)
    assert took < HOLD_S / 2


def test_held_monitor_is_busy(sock_path: str) -> None:
    def silent(conn: socket.socket) -> None:
        hold()  # accepted, never greeted: what a second QMP client sees

    fds = len(os.listdir("/proc/self/fd"))
    for _ in _server(sock_path, silent):
        res, took = _query(sock_path, 0.3)
        assert isinstance(res, qmp.MonitorBusy)
        assert took < HOLD_S / 2
    assert len(os.listdir("/proc/self/fd")) == fds


def test_garbage_greeting(sock_path: str) -> None:
    def garbage(conn: socket.socket) -> None:
        conn.sendall(b"\x00\xffHELLO THERE\n")
        hold()

    for _ in _server(sock_path, garbage):
        res, took = _query(sock_path)
        assert isinstance(res, qmp.MonitorError) and "not a QEMU monitor" in str(res)
        assert took < HOLD_S / 2


def test_qmp_greets_then_answers_garbage(sock_path: str) -> None:
    def bad(conn: socket.socket) -> None:
        conn.sendall(GREETING)
        conn.recv(4096)
        conn.sendall(b"this is not json\n")
        hold()

    for _ in _server(sock_path, bad):
        res, took = _query(sock_path, 0.4)
        assert isinstance(res, qmp.MonitorError)
        assert took < HOLD_S / 2


def test_monitor_that_dies_mid_query(sock_path: str) -> None:
    def dies(conn: socket.socket) -> None:
        conn.sendall(GREETING)
        conn.recv(4096)
        conn.sendall(b'{"return": {}}\n')
        conn.recv(4096)  # query-status arrives... and the VMM is killed
        conn.shutdown(socket.SHUT_RDWR)

    for _ in _server(sock_path, dies):
        res, took = _query(sock_path, 0.5)
        assert isinstance(res, qmp.MonitorError)
        assert took < HOLD_S / 2
