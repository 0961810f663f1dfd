"""One HTTP request to a server kata-top does not trust (Prometheus, a node's `serve`), bounded.

- A deadline for the whole request — connect, send, headers and body — not for each read: a
  server that trickles a byte every two seconds is cut off at the deadline (a timer shuts the
  socket down, which ends any read it is blocked in).
- A size cap, checked against Content-Length before reading and while reading, in chunks:
  an endless or huge body costs at most the cap.
- Redirects are never followed (credentials must not travel to another host, and the address
  given is the one meant): a 3xx is an error that says where it pointed.
- What the server wrote (a reason, a Location) reaches messages escaped (for_terminal) and
  cut short: it is printed on an operator's terminal.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping

from kata_top.formats.terminal import for_terminal

CHUNK = 1 << 16


class HttpError(Exception):
    """The request failed; the message says why (server text escaped). `status` is the HTTP
    status when there was an answer; `body` its first bytes (an error's explanation)."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class TimedOut(HttpError):
    """The deadline passed."""


def server_text(raw: bytes | str, limit: int = 300) -> str:
    """Text a server chose, safe to print: decoded, escaped, cut to `limit` characters."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = for_terminal(text.strip())
    return text if len(text) <= limit else text[:limit] + "…"


def where(url: str) -> str:
    """scheme://host:port of a URL, for messages: never its user:password, escaped."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return server_text(f"{parts.scheme}://{host}{port}")


def without_credentials(url: str) -> str:
    """The URL as given, its path kept, but never its user:password (for output)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def basic_auth(url: str) -> dict[str, str]:
    """An Authorization header from the URL's user:password (`http://user:pw@node:9712`)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return {}
    cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return {"Authorization": "Basic " + base64.b64encode(cred.encode()).decode()}


def _connection(parts: urllib.parse.SplitResult, timeout: float,
                context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout,
                                           context=context or ssl.create_default_context())
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


def fetch(url: str, *, timeout: float, max_bytes: int, data: bytes | None = None,
          headers: Mapping[str, str] | None = None,
          context: ssl.SSLContext | None = None) -> bytes:
    """The body of a 2xx answer to GET (POST with `data`); HttpError otherwise. A
    user:password in the URL is sent as basic authentication (to that host only: no
    redirect is followed) and never appears in a message."""
    parts = urllib.parse.urlsplit(url)
    site = where(url)
    try:
        parts.port  # noqa: B018 (a bad port raises here, not in the middle of the request)
    except ValueError as exc:
        raise HttpError(f"not an http(s) URL: {site}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {site}")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    headers = {**basic_auth(url), **(headers or {})}
    conn = _connection(parts, timeout, context)
    expired = threading.Event()
    opened: list[socket.socket] = []  # the connection drops it once the answer is read

    def cut() -> None:  # the deadline: whatever read or write is blocked ends now
        expired.set()
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, cut)
    timer.daemon = True
    timer.start()
    try:
        try:
            conn.connect()
            opened.append(conn.sock)
            if expired.is_set():
                cut()
            conn.request("POST" if data is not None else "GET", target, body=data,
                         headers=headers)
            resp = conn.getresponse()
            body = _read(resp, max_bytes, site)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise TimedOut(f"{site} did not answer within {timeout:g} s") from exc
            if isinstance(exc, HttpError):
                raise
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise HttpError(f"{site} unreachable: {server_text(reason)}") from exc
        if expired.is_set():
            raise TimedOut(f"{site} did not answer within {timeout:g} s")
    finally:
        timer.cancel()
        conn.close()
    if 300 <= resp.status < 400:
        to = server_text(resp.getheader("Location") or "nowhere", 200)
        raise HttpError(f"{site} answered {resp.status}, a redirect to {to}: not followed "
                        "(kata-top never follows redirects, so no credentials go elsewhere); "
                        "give the address it points to", resp.status)
    if not 200 <= resp.status < 300:
        raise HttpError(f"{site} answered {resp.status} {server_text(resp.reason, 80)}",
                        resp.status, body)
    return body


def _read(resp: http.client.HTTPResponse, max_bytes: int, site: str) -> bytes:
    limit = max_bytes if 200 <= resp.status < 300 else min(max_bytes, 1 << 20)
    length = resp.getheader("Content-Length")
    if length and length.strip().isdigit() and int(length) > max_bytes and limit == max_bytes:
        raise HttpError(f"{site} would send {int(length)} bytes, more than "
                        f"{max_bytes >> 20} MiB; not read", resp.status)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = resp.read1(CHUNK) if hasattr(resp, "read1") else resp.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            if limit < max_bytes:  # an error's explanation: its start is enough
                return b"".join(chunks)
            raise HttpError(f"{site} sent more than {max_bytes >> 20} MiB; stopped reading",
                            resp.status)
        chunks.append(chunk)

