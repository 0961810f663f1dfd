"""GETs to a VMM's HTTP API over its unix socket: Cloud Hypervisor and Firecracker.

Both serve their API with micro_http (firecracker-microvm/micro-http src/server.rs): HTTP/1.1,
every response `Connection: keep-alive` with a Content-Length, the server never closes a
connection, and it holds at most MAX_CONNECTIONS = 10 — the 11th is answered `503` ("Too many
open connections") and closed. Kata's runtime holds one of them for the VM's life.

So a read here: one connection per VMM, the requests one after another on it, each response
read by its Content-Length (never to EOF: that never comes), everything under one deadline,
the connection closed at once. No two reads of the same socket from this process ever overlap
(`_in_use`), whatever threads ask. Only GETs: nothing here can change a VM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import threading
from collections.abc import Sequence

from kata_top.boundedjson import loads

MAX_HEAD = 16 << 10
MAX_BODY = 4 << 20

_in_use: set[str] = set()
_lock = threading.Lock()


class ApiError(Exception):
    pass


class ApiBusy(ApiError):
    """Not asked: another read of this socket is under way, or the server is full (503)."""


def _status_and_length(head: bytes) -> tuple[int, int]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ApiError(f"not an HTTP response: {lines[0][:60]!r}")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            value = value.strip()
            if not value.isdigit() or int(value) > MAX_BODY:
                raise ApiError(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise ApiError("chunked responses are not what micro_http sends")
    return int(parts[1]), length


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    path: str) -> tuple[int, bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json"
                 "\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ApiError("response headers too long") from exc
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("the VMM closed the connection") from exc
    status, length = _status_and_length(head[:-4])
    body = await reader.readexactly(length) if length else b""
    return status, body


def _check_socket(sock_path: str) -> None:
    """A socket file, not a symlink to one (connect() would follow it anywhere)."""
    try:
        st = os.lstat(sock_path)
    except FileNotFoundError as exc:
        raise ApiError(f"no API socket at {sock_path}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise ApiError(f"{sock_path} is not a socket")


async def get_many(sock_path: str, paths: Sequence[str],
                   deadline: float) -> dict[str, object]:
    """JSON of each path (None for a 204/404), on one connection within `deadline` s."""
    with _lock:
        if sock_path in _in_use:
            raise ApiBusy("another read of this VMM's API is under way")
        _in_use.add(sock_path)
    writer: asyncio.StreamWriter | None = None
    try:
        _check_socket(sock_path)

        async def run() -> dict[str, object]:
            nonlocal writer
            reader, writer = await asyncio.open_unix_connection(sock_path, limit=MAX_HEAD)
            out: dict[str, object] = {}
            for path in paths:
                try:
                    status, body = await _exchange(reader, writer, path)
                except (ConnectionResetError, BrokenPipeError) as exc:
                    if out:
                        raise ApiError(f"the VMM closed the connection ({exc})") from exc
                    # micro_http accepts a connection over its 10, writes its 503 and closes
                    # at once: a write can fail before that answer is read
                    raise ApiBusy("the VMM closed the connection at once, as micro_http does "
                                  "when its 10 connections are taken (503)") from exc
                if status == 503:
                    raise ApiBusy("the VMM's API serves no more connections (503)")
                if status in (204, 404):
                    out[path] = None
                elif status != 200:
                    raise ApiError(f"GET {path}: HTTP {status}")
                else:
                    try:
                        out[path] = loads(body) if body.strip() else None
                    except ValueError as exc:
                        raise ApiError(f"GET {path}: not JSON") from exc
            return out

        try:
            return await asyncio.wait_for(run(), deadline)
        except TimeoutError as exc:
            raise ApiError(f"no answer within {deadline * 1000:.0f} ms") from exc
        except OSError as exc:
            raise ApiError(exc.strerror or str(exc)) from exc
    finally:
        try:
            if writer is not None:
                writer.close()  # the socket is closed here; waiting only lets asyncio tidy up
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 0.1)
        finally:  # also when cancelled while waiting: never left marked as in use
            with _lock:
                _in_use.discard(sock_path)
