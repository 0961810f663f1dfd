"""The shim's management socket, looked at the way kata-top may: a connect and a close,
never following a symlink, never waiting."""

from __future__ import annotations

import os
import socket
from typing import Any

from kata_top.collectors import shimsock


def test_each_state_of_the_socket(tmp_path: Any) -> None:
    d = str(tmp_path)
    listening = os.path.join(d, "live.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(listening)
    srv.listen(1)
    stale = os.path.join(d, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)
    dead.close()  # the file stays, nobody listens: what a dead shim leaves
    plain = os.path.join(d, "file")
    open(plain, "w").close()
    link = os.path.join(d, "link.sock")
    os.symlink(listening, link)
    try:
        assert shimsock.probe(listening) == "listening"
        assert shimsock.probe(stale) == "refused"
        assert shimsock.probe(os.path.join(d, "none.sock")) == "missing"
        assert shimsock.probe(plain) == "not-a-socket"
        assert shimsock.probe(link) == "not-a-socket"  # never followed
        # a connect and a close only: the listener holds one finished connection, no more
        conn, _ = srv.accept()
        assert conn.recv(1) == b""  # closed by kata-top, nothing was sent
        conn.close()
    finally:
        srv.close()


def test_a_full_backlog_is_busy_not_a_wait(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), "full.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    held = []
    try:
        state = "listening"
        for _ in range(64):  # fill the backlog without accepting
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except BlockingIOError:
                c.close()
                state = shimsock.probe(path)
                break
            held.append(c)
        assert state == "busy"
    finally:
        for c in held:
            c.close()
        srv.close()
