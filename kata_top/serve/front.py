"""The exporter's front: every connection on one asyncio thread until its request is whole.

A thread per connection lets whoever reaches the port hold threads, file descriptors and
memory by connecting and sending nothing, or a byte at a time, or huge headers. Here an idle
or slow connection is a few kilobytes on the event loop, never a thread, and:

- the listen backlog is sized for a fleet of scrapers arriving on the same tick;
- at most `max_connections` are open; past that a new connection evicts the oldest one still
  sending its request (a slowloris flood cannot lock a scraper out), or is closed if every
  open one is being answered;
- the TLS handshake, the request head and any body must arrive within `head_timeout_s`
  (whatever the trickle), the head within `max_head_bytes` and `max_headers` lines (else
  431), a body within `max_body_bytes` (else 413);
- only a whole request goes to the fixed pool of `workers` threads that build answers
  (collections are shared by the hub, so the pool waits on one collection, not many); past
  `max_queued` waiting requests the answer is a 503 at once;
- the answer is written by the loop, and a reader slower than `write_timeout_s` is cut off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# (raw request head and body, peer address, verified client certificate) → raw answer
Answer = Callable[[bytes, tuple[str, int], dict[str, Any] | None], bytes]


@dataclass(frozen=True)
class Limits:
    backlog: int = 1024
    max_connections: int = 512
    max_head_bytes: int = 16 * 1024
    max_headers: int = 64
    max_body_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    write_timeout_s: float = 30.0
    workers: int = 8
    max_queued: int = 512


WRITE_SLICE = 256 * 1024


class _Reject(Exception):
    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(body)
        self.response = plain_response(status, reason, body)


def plain_response(status: int, reason: str, body: str, extra: str = "") -> bytes:
    data = (body + "\n").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n").encode() + data


@dataclass
class FrontStats:
    """Connections open now, and those dropped since the start, by why (the exporter's own
    /metrics: a flood shows in Prometheus)."""

    open: int = 0
    evicted: int = 0  # still sending their request when the cap was reached
    refused: int = 0  # at the cap with every open connection being answered
    timed_out: int = 0  # head or answer past its deadline
    too_large: int = 0  # 413 / 431
    busy: int = 0  # 503: too many requests waiting for a worker

    def dropped(self) -> dict[str, int]:
        return {"evicted": self.evicted, "refused": self.refused, "timed-out": self.timed_out,
                "too-large": self.too_large, "busy": self.busy}


class Front:
    def __init__(self, sock: socket.socket, limits: Limits, answer: Answer,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.sock = sock
        self.limits = limits
        self.answer = answer
        self.ssl_context = ssl_context
        self.stats = FrontStats()
        self._pool = concurrent.futures.ThreadPoolExecutor(limits.workers,
                                                           thread_name_prefix="kata-top-http")
        self._reading: dict[asyncio.Task[None], None] = {}  # still reading; oldest first
        self._open: set[asyncio.Task[None]] = set()
        self._queued = 0
        self._warned = -1e9
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._done = threading.Event()

    # ---- lifetime (serve_forever on one thread, shutdown from another) ----
    def run(self) -> None:
        self._done.clear()
        try:
            asyncio.run(self._main())
        finally:
            self._done.set()

    def shutdown(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            self._done.wait()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.sock.close()

    async def _main(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        # A failed TLS handshake or a reset is a client's problem, not an error of ours.
        loop.set_exception_handler(
            lambda _loop, ctx: log.debug("%s", ctx.get("message"), exc_info=ctx.get("exception")))
        self._stop = asyncio.Event()
        self.sock.setblocking(False)
        acceptor = loop.create_task(self._accept())
        try:
            await self._stop.wait()
        finally:
            acceptor.cancel()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(acceptor, *self._open, return_exceptions=True)
            self._loop = None

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _addr = await loop.sock_accept(self.sock)
            except OSError as exc:  # out of file descriptors: let some close first
                if loop.time() - self._warned > 60:
                    log.warning("cannot accept a connection: %s", exc)
                    self._warned = loop.time()
                await asyncio.sleep(0.1)
                continue
            if len(self._open) >= self.limits.max_connections:
                victim = next(iter(self._reading), None)
                if victim is None:  # every open connection is being answered
                    self.stats.refused += 1
                    conn.close()
                    continue
                self.stats.evicted += 1
                del self._reading[victim]
                victim.cancel()
            task = loop.create_task(self._client(conn))
            self._open.add(task)
            self._reading[task] = None
            self.stats.open = len(self._open)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._open.discard(task)
        self._reading.pop(task, None)
        self.stats.open = len(self._open)

    # ---- one connection ----
    async def _client(self, conn: socket.socket) -> None:
        """One request and its answer; cancelled when evicted or at shutdown."""
        loop = asyncio.get_running_loop()
        lim = self.limits
        transport: Any = None
        closing = False
        try:
            try:
                async with asyncio.timeout(lim.head_timeout_s):  # the handshake, head and body
                    reader = asyncio.StreamReader(limit=lim.max_head_bytes)
                    protocol = asyncio.StreamReaderProtocol(reader)
                    transport, _p = await loop.connect_accepted_socket(
                        lambda: protocol, conn, ssl=self.ssl_context,
                        ssl_handshake_timeout=lim.head_timeout_s if self.ssl_context else None)
                    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
                    cert = writer.get_extra_info("peercert") or None
                    raw = await self._request(reader)
            except TimeoutError:
                self.stats.timed_out += 1
                return
            except _Reject as exc:
                self.stats.too_large += 1
                await self._reject(reader, writer, exc.response)
                return
            if raw is None:
                return
            closing = await self._answer(writer, transport, raw, cert)
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            log.debug("client went away", exc_info=True)
        finally:
            if transport is None:
                conn.close()
            elif closing:
                # A TLS close still flushes through the socket: bounded, like any write.
                loop.call_later(lim.write_timeout_s, transport.abort)
            else:
                transport.abort()

    async def _answer(self, writer: asyncio.StreamWriter, transport: Any, raw: bytes,
                      cert: dict[str, Any] | None) -> bool:
        """True once the answer is written and the connection closing."""
        lim = self.limits
        task = asyncio.current_task()
        if task is not None:
            self._reading.pop(task, None)  # being answered: not evicted any more
        if self._queued >= lim.max_queued:
            self.stats.busy += 1
            response = plain_response(503, "Service Unavailable",
                                      "too many requests waiting; try again")
        else:
            self._queued += 1
            try:
                peer = writer.get_extra_info("peername") or ("", 0)
                response = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self.answer, raw, (str(peer[0]), int(peer[1])), cert)
            except Exception:  # a route's bug: said to the client and logged, not a reset
                log.exception("answering a request failed")
                response = plain_response(500, "Internal Server Error",
                                          "the exporter failed to answer; see its log")
            finally:
                self._queued -= 1
        try:
            await asyncio.wait_for(self._write(writer, transport, response), lim.write_timeout_s)
        except TimeoutError:
            self.stats.timed_out += 1
            return False
        writer.close()
        return True

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, transport: Any, response: bytes) -> None:
        """In slices, each handed to the kernel before the next: a slow reader holds one
        slice of its answer in this process, not a copy of all of it (answers are shared)."""
        transport.set_write_buffer_limits(high=0)
        view = memoryview(response)
        for i in range(0, len(view), WRITE_SLICE):
            writer.write(view[i:i + WRITE_SLICE])
            await writer.drain()

    async def _request(self, reader: asyncio.StreamReader) -> bytes | None:
        """The request head and body; None when the client closed before they were whole."""
        lim = self.limits
        buf = bytearray()
        while True:
            end = _head_end(buf)
            if end >= 0:
                break
            if len(buf) > lim.max_head_bytes or buf.count(b"\n") > lim.max_headers + 1:
                raise _Reject(431, "Request Header Fields Too Large",
                              f"request head over {lim.max_head_bytes} bytes or "
                              f"{lim.max_headers} header lines")
            chunk = await reader.read(4096)
            if not chunk:
                return None
            buf += chunk
        head = bytes(buf[:end])
        if len(head) > lim.max_head_bytes or head.count(b"\n") > lim.max_headers + 1:
            raise _Reject(431, "Request Header Fields Too Large",
                          f"request head over {lim.max_head_bytes} bytes or "
                          f"{lim.max_headers} header lines")
        length = _content_length(head)
        if length > lim.max_body_bytes:
            raise _Reject(413, "Content Too Large",
                          f"request body over {lim.max_body_bytes} bytes (or unreadable "
                          "Content-Length / Transfer-Encoding)")
        body = bytes(buf[end:end + length])
        if len(body) < length:
            body += await reader.readexactly(length - len(body))
        return head + body

    async def _reject(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      response: bytes) -> None:
        """Answer, then read and drop what the client is still sending for a moment, so it
        reads the answer instead of a reset (closing with unread input sends an RST)."""
        writer.write(response)
        with contextlib.suppress(TimeoutError, ConnectionError, OSError, ssl.SSLError):
            await asyncio.wait_for(self._drain_then_discard(reader, writer), 1.0)

    @staticmethod
    async def _drain_then_discard(reader: asyncio.StreamReader,
                                  writer: asyncio.StreamWriter) -> None:
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        left = 1 << 20
        while left > 0:
            chunk = await reader.read(65536)
            if not chunk:
                return
            left -= len(chunk)


def _head_end(buf: bytearray) -> int:
    """Where the body starts (after the blank line ending the head), or -1."""
    i = buf.find(b"\r\n\r\n")
    j = buf.find(b"\n\n")
    ends = [k + n for k, n in ((i, 4), (j, 2)) if k >= 0]
    return min(ends) if ends else -1


def _content_length(head: bytes) -> int:
    """The body's length from the head: 0 without one; past any limit (so the request is
    refused) when it is unreadable, repeated differently or chunked, which no route takes."""
    values: set[bytes] = set()
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return 1 << 62
        if name == b"content-length":
            values.add(value.strip())
    if not values:
        return 0
    if len(values) != 1:
        return 1 << 62
    text = values.pop()
    return int(text) if text.isdigit() and len(text) < 19 else 1 << 62
