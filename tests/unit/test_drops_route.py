"""serve's `POST /api/v1/drops`: refused without authentication, one at a time, parameters
from an untrusted target."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kata_top.drops import trace as trace_mod
from kata_top.drops.attribute import build_report
from kata_top.drops.model import RawTrace
from kata_top.formats.recording import load_recording
from kata_top.serve import drops_route
from tests.helpers import RECORDING
from tests.unit.test_serve import CountingSource, http_server

SNAP = load_recording(RECORDING)[0][0]


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str | None]]:
    """The tracer replaced: records each call, answers with an empty trace."""
    calls: list[tuple[int, str | None]] = []

    def fake(snap: Any, seconds: int, sandbox: str | None = None, *a: Any, **k: Any) -> Any:
        calls.append((seconds, sandbox))
        return build_report(RawTrace((), float(seconds), float(seconds)), snap)

    monkeypatch.setattr(trace_mod, "trace", fake)
    return calls


def test_refused_without_authentication(traced: list[Any]) -> None:
    res = drops_route.handle("/api/v1/drops?seconds=5", False, lambda: SNAP)
    assert res.status == 403 and b"authentication" in res.body
    assert traced == []


def test_traces_when_authenticated(traced: list[Any]) -> None:
    res = drops_route.handle("/api/v1/drops?seconds=5&sandbox=default/web-0", True,
                             lambda: SNAP)
    assert res.status == 200 and res.content_type == "application/json"
    assert json.loads(res.body)["schema"] == "kata-top/drops/1"
    assert traced == [(5, "default/web-0")]


@pytest.mark.parametrize("target", ["/api/v1/drops?seconds=0", "/api/v1/drops?seconds=301",
                                    "/api/v1/drops?seconds=5&seconds=6",
                                    "/api/v1/drops?x=1", "/api/v1/drops?seconds=%C2%B2"])
def test_bad_parameters(target: str, traced: list[Any]) -> None:
    assert drops_route.handle(target, True, lambda: SNAP).status == 400
    assert traced == []


def test_one_trace_at_a_time(traced: list[Any]) -> None:
    with trace_mod._ONE:
        assert drops_route.handle("/api/v1/drops", True, lambda: SNAP).status == 409
    assert traced == []


@given(st.text(max_size=300))
def test_any_target_parses_or_says_why(target: str) -> None:
    try:
        seconds, sandbox = drops_route.parse(drops_route.PATH + "?" + target)
    except ValueError:
        return
    assert 1 <= seconds <= 300 and (sandbox is None or sandbox.strip())


def test_todays_server_refuses_it_without_authentication(tmp_path: Any,
                                                         traced: list[Any]) -> None:
    with http_server(CountingSource(), str(tmp_path)) as base:
        conn = http.client.HTTPConnection(base[7:], timeout=5)
        conn.request("POST", "/api/v1/drops?seconds=2")
        resp = conn.getresponse()
        assert resp.status == 403
        conn.close()
    assert traced == []
