"""Prometheus' HTTP query API as a client: instant queries, a bearer token and a CA bundle as
Prometheus users have them, a deadline on every request, and answers validated (a Prometheus
behind a proxy can answer anything)."""

from __future__ import annotations

import math
import ssl
import urllib.parse
from typing import Any

from msgspec import Struct

from kata_top.httpget import server_text, without_credentials

MAX_BYTES = 64 << 20


class PrometheusError(Exception):
    """The query could not be answered; the message says why (never the token)."""


class Sample(Struct, frozen=True):
    labels: dict[str, str]
    value: float


def parse_vector(doc: Any) -> list[Sample]:
    """An instant-query answer (`resultType` vector or scalar) as samples; PrometheusError for
    anything else."""
    if not isinstance(doc, dict):
        raise PrometheusError("not a Prometheus API answer (not a JSON object)")
    if doc.get("status") != "success":
        err = doc.get("error") if isinstance(doc.get("error"), str) else "no reason given"
        raise PrometheusError(f"query failed: {server_text(str(err))}")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PrometheusError("answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Sample({}, _number(result[1]))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"expected a vector, got {server_text(str(kind), 40)}")
    out = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise PrometheusError("a result without labels")
        value = item.get("value")
        if not isinstance(value, list) or len(value) != 2:
            raise PrometheusError("a result without a value")
        labels = {str(k): str(v) for k, v in item["metric"].items()
                  if isinstance(v, str | int | float)}
        out.append(Sample(labels, _number(value[1])))
    return out


def _number(text: Any) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError) as exc:
        raise PrometheusError(f"not a number: {str(text)[:40]!r}") from exc
    return value if math.isfinite(value) else math.nan


class PrometheusClient:
    def __init__(self, url: str, token_file: str | None = None, ca_file: str | None = None,
                 timeout: float = 5.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PrometheusError("--prometheus takes http(s)://HOST:PORT, got "
                                  f"{server_text(without_credentials(url))!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token_file = token_file
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise PrometheusError(f"CA bundle {ca_file}: {exc}") from exc

    def _headers(self) -> dict[str, str]:
        if not self._token_file:
            return {}
        from kata_top.collectors.safeopen import read_file

        try:  # read at each request: tokens are rotated (a projected service-account token)
            token = read_file(self._token_file, 64 << 10).decode("utf-8", "replace").strip()
        except OSError as exc:
            raise PrometheusError(f"token file {self._token_file}: "
                                  f"{exc.strerror or exc}") from exc
        return {"Authorization": f"Bearer {token}"}

    def query(self, promql: str) -> list[Sample]:
        from kata_top.boundedjson import loads
        from kata_top.httpget import HttpError, TimedOut, fetch, where

        data = urllib.parse.urlencode({"query": promql}).encode()
        try:
            body = fetch(self.url + "/api/v1/query", timeout=self.timeout, max_bytes=MAX_BYTES,
                         data=data, context=self._context,
                         headers={**self._headers(), "Content-Type":
                                  "application/x-www-form-urlencoded"})
        except TimedOut as exc:
            raise PrometheusError(str(exc)) from exc
        except HttpError as exc:
            if exc.status in (401, 403):
                raise PrometheusError(f"{where(self.url)} refused the credentials "
                                      f"({exc.status})") \
                    from exc
            if exc.status is None or not exc.body or 300 <= exc.status < 400:
                raise PrometheusError(str(exc)) from exc
            try:  # Prometheus explains a 4xx/5xx in its JSON body
                doc = loads(exc.body)
            except ValueError:
                raise PrometheusError(str(exc)) from exc
            return parse_vector(doc)
        try:
            doc = loads(body)
        except ValueError as exc:
            raise PrometheusError("answer is not JSON") from exc
        return parse_vector(doc)
