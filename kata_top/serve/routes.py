"""Request targets (untrusted input) parsed into a route and its parameters.

Only GET/HEAD of a few fixed paths exist; the exporter has no route that changes anything.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs, urlsplit

from msgspec import Struct

Route = Literal["metrics", "snapshot", "check", "events", "healthz", "index"]
ROUTES: dict[str, Route] = {"/metrics": "metrics", "/api/v1/snapshot": "snapshot",
                            "/api/v1/check": "check", "/api/v1/events": "events",
                            "/healthz": "healthz", "/": "index"}
PARAMS: dict[Route, frozenset[str]] = {"snapshot": frozenset({"sandbox"}),
                                       "check": frozenset({"sandbox"}),
                                       "events": frozenset({"since", "sandbox"})}
MAX_TARGET = 2048


class BadRequest(ValueError):
    """The request target is not one the exporter serves; `status` says which error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request(Struct, frozen=True):
    route: Route
    sandbox: str | None = None
    since: str | None = None


def parse_target(target: str) -> Request:
    """`/api/v1/snapshot?sandbox=web-0` → Request("snapshot", "web-0"); BadRequest (400/404)
    for anything else: unknown paths, unknown or repeated parameters, over-long targets."""
    if len(target) > MAX_TARGET:
        raise BadRequest(414, "request target too long")
    try:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query),
                         max_num_fields=8, errors="strict")
    except ValueError as exc:
        raise BadRequest(400, f"bad query string: {exc}") from exc
    path = parts.path.rstrip("/") or "/"
    route = ROUTES.get(path)
    if route is None:
        raise BadRequest(404, f"no such path {path!r}; try /metrics, /api/v1/snapshot, "
                              "/api/v1/check or /healthz")
    allowed = PARAMS.get(route, frozenset())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise BadRequest(400, f"unknown parameter {unknown[0]!r} for {path}")
    sandbox = None
    if "sandbox" in query:
        values = query["sandbox"]
        if len(values) != 1 or not values[0].strip():
            raise BadRequest(400, "give sandbox once, non-empty")
        sandbox = values[0]
    since = None
    if "since" in query:
        values = query["since"]
        if len(values) != 1 or not values[0].strip() or len(values[0]) > 40:
            raise BadRequest(400, "give since once: 10m, 2h, 90 or an ISO time")
        since = values[0]
    return Request(route, sandbox, since)
