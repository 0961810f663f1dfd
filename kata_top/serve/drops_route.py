"""`POST /api/v1/drops?seconds=N[&sandbox=X]`: one drop trace, only when asked.

The exporter's one route that attaches to the kernel, so it is refused unless the exporter
has authentication configured (`auth_configured`, decided by the server from its web
config), one trace runs at a time (a second gets 409), and nothing ever starts one but this
request. The body is the `kata-top/drops/1` document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from kata_top.model import Snapshot

PATH = "/api/v1/drops"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT


def _text(status: int, message: str) -> Response:
    return Response(status, f"{message}\n".encode())


def parse(target: str) -> tuple[int, str | None]:
    """(seconds, sandbox) of the target; ValueError with the reason otherwise."""
    from kata_top.drops.trace import DEFAULT_SECONDS, MAX_SECONDS

    if len(target) > 2048:
        raise ValueError("request target too long")
    parts = urlsplit(target)
    if (parts.path.rstrip("/") or "/") != PATH:
        raise ValueError(f"no such path; POST {PATH}?seconds=N")
    query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=4,
                     strict_parsing=bool(parts.query))
    unknown = sorted(set(query) - {"seconds", "sandbox"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}")
    seconds = DEFAULT_SECONDS
    if "seconds" in query:
        got = query["seconds"]
        if len(got) != 1 or not (got[0].isascii() and got[0].isdigit()) or \
                not 1 <= int(got[0][:6]) <= MAX_SECONDS:
            raise ValueError(f"seconds must be given once, 1..{MAX_SECONDS}")
        seconds = int(got[0])
    sandbox = None
    if "sandbox" in query:
        got = query["sandbox"]
        if len(got) != 1 or not got[0].strip() or len(got[0]) > 200:
            raise ValueError("give sandbox once, non-empty")
        sandbox = got[0]
    return seconds, sandbox


def handle(target: str, auth_configured: bool, snapshot: Callable[[], Snapshot],
           should_stop: Callable[[], bool] | None = None) -> Response:
    """Answer one POST to `target`. `snapshot()` gives the node's sandboxes (the exporter's
    shared collection); `should_stop()` true ends the trace early (the exporter stopping)."""
    if not auth_configured:
        return _text(403, "tracing drops needs the exporter's authentication: start serve "
                          "with a web config that sets basic auth users")
    try:
        seconds, sandbox = parse(target)
    except ValueError as exc:
        return _text(400, str(exc))
    from kata_top.drops.trace import TraceBusy, TraceUnavailable, busy, trace
    from kata_top.formats.dropsout import render_json
    from kata_top.select import SelectError

    if busy():
        return _text(409, "a drop trace is already running; one at a time")
    try:
        report = trace(snapshot(), seconds, sandbox, should_stop=should_stop)
    except SelectError as exc:
        return _text(404, str(exc))
    except TraceBusy as exc:
        return _text(409, str(exc))
    except TraceUnavailable as exc:
        return _text(503, str(exc))
    except Exception as exc:  # the collection behind snapshot() failed
        return _text(503, f"the trace could not run: {exc}")
    return Response(200, (render_json(report) + "\n").encode(), "application/json")

