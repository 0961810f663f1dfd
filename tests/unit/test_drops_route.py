"""serve's `POST /api/v1/drops`: refused without authentication, one at a time, parameters
from an untrusted target."""

from __future__ import annotations

import contextlib
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


# ---- --remote: a node's serve asked for one trace -------------------------------------------
def _report() -> Any:
    from kata_top.drops.model import DropCount

    web = next(sb for sb in SNAP.sandboxes if sb.pod.name == "web-0")
    raw = RawTrace((DropCount(web.netns.inode or 0, "tap0_kata", "FULL_RING", 80,
                              "tun_net_xmit", 812),), 10.0, 10.0, started_at=5.0)
    return build_report(raw, SNAP)


def test_a_report_reads_back_as_it_was_written() -> None:
    from kata_top.drops.reader import report_from_dict
    from kata_top.formats.dropsout import to_plain

    rep = _report()
    assert report_from_dict(json.loads(json.dumps(to_plain(rep)))) == rep


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["schema", "node", "sandboxes", "drops", "hop", "count", "other",
                         "notes", "total", "side"]), inner, max_size=6), max_leaves=30))
def test_any_document_reads_or_is_a_value_error(doc: Any) -> None:
    from kata_top.drops.reader import report_from_dict

    with contextlib.suppress(ValueError):
        report_from_dict(doc)


def test_remote_asks_the_nodes_serve(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kata_top.sources.base import SourceError
    from kata_top.sources.remote import RemoteSource

    seen: list[str | None] = []

    def fake(snap: Any, seconds: int, sandbox: str | None = None, *a: Any, **k: Any) -> Any:
        seen.append(sandbox)
        return _report()

    monkeypatch.setattr(trace_mod, "trace", fake)
    with http_server(CountingSource(), str(tmp_path)) as base, \
            pytest.raises(SourceError, match="403"):
        RemoteSource(base).trace_drops(2)
    import bcrypt

    from kata_top.serve.webconfig import WebConfig

    web = WebConfig(users={"u": bcrypt.hashpw(b"p", bcrypt.gensalt(4))})
    with http_server(CountingSource(), str(tmp_path), web=web) as base:
        for who in ("", "u:wrong@", "x:p@"):  # authentication configured, not given
            with pytest.raises(SourceError, match="401"):
                RemoteSource(base.replace("http://", f"http://{who}")).trace_drops(2)
        got = RemoteSource(base.replace("http://", "http://u:p@")).trace_drops(2, "abc")
    assert got == _report() and seen == ["abc"]


def test_a_trace_running_when_the_exporter_stops_is_ended(tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's SIGTERM closes the server while a POST's trace may run on a worker: the trace
    is told to stop (bpftrace SIGINTed) instead of running out its seconds."""
    import bcrypt

    from kata_top.serve.webconfig import WebConfig

    stops: list[Any] = []

    def fake(snap: Any, seconds: int, sandbox: str | None = None, *a: Any,
             should_stop: Any = None, **k: Any) -> Any:
        stops.append(should_stop)
        return _report()

    monkeypatch.setattr(trace_mod, "trace", fake)
    web = WebConfig(users={"u": bcrypt.hashpw(b"p", bcrypt.gensalt(4))})
    import base64

    auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    with http_server(CountingSource(), str(tmp_path), web=web) as base:
        conn = http.client.HTTPConnection(base[7:], timeout=5)
        conn.request("POST", "/api/v1/drops?seconds=2", headers=auth)
        assert conn.getresponse().status == 200
        conn.close()
        assert len(stops) == 1 and stops[0] is not None and not stops[0]()
    assert stops[0]()
