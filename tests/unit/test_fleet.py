"""The fleet's Prometheus client and console without a lab: answers of every shape
(hypothesis), faults of a Prometheus that is down, slow, failing or refusing the token, and
the console drawn from a fixed fleet (SVG snapshot + Pilot)."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from kata_top.fleet.model import FleetNode, FleetSandbox, FleetSnapshot
from kata_top.fleet.promql import PrometheusClient, PrometheusError, Sample, parse_vector
from kata_top.fleet.query import (
    RULES_HINT,
    collect,
    fold_nodes,
    fold_sandboxes,
    node_matcher,
    sandboxes_query,
)
from kata_top.fleet.report import problems, render
from kata_top.settings import Settings
from kata_top.sources.base import SourceError

JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10)
                       | st.floats(), lambda i: st.lists(i, max_size=3)
                       | st.dictionaries(st.sampled_from(["status", "data", "resultType",
                                                         "result", "metric", "value", "error",
                                                         "x"]), i, max_size=4), max_leaves=15)


@given(JSONISH)
def test_any_answer_is_samples_or_a_clean_error(doc: Any) -> None:
    try:
        samples = parse_vector(doc)
    except PrometheusError as exc:
        assert str(exc)
    else:
        assert all(isinstance(s.value, float) for s in samples)
        assert all(isinstance(k, str) and isinstance(v, str) for s in samples
                   for k, v in s.labels.items())


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4),
       st.floats(allow_nan=False, allow_infinity=False))
def test_a_vector_reads_back(labels: dict[str, str], value: float) -> None:
    doc = {"status": "success", "data": {"resultType": "vector",
                                         "result": [{"metric": labels,
                                                     "value": [1.5, repr(value)]}]}}
    (s,) = parse_vector(doc)
    assert s.labels == labels and s.value == value


class _Handler(http.server.BaseHTTPRequestHandler):
    behave: Any = None

    def log_message(self, *_a: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.behave(self)


@contextmanager
def fake_prometheus(behave: Any) -> Iterator[str]:
    """A loopback HTTP server answering as a sick Prometheus (or a proxy in front) would."""
    handler = type("H", (_Handler,), {"behave": staticmethod(behave)})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()


def _reply(status: int, body: bytes) -> Any:
    def behave(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return behave


def test_prometheus_faults_are_reasons(tmp_path: Any) -> None:
    with fake_prometheus(_reply(401, b"")) as url:
        token = tmp_path / "token"
        token.write_text("s3cret-token\n")
        with pytest.raises(PrometheusError, match="refused the credentials") as info:
            PrometheusClient(url, token_file=str(token)).query("up")
        assert "s3cret" not in str(info.value)
        with pytest.raises(PrometheusError, match="refused the credentials") as info:
            PrometheusClient(url.replace("://", "://ops:s3cret-pw@")).query("up")
        assert "s3cret" not in str(info.value)
    err = json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"})
    with fake_prometheus(_reply(400, err.encode())) as url, \
            pytest.raises(PrometheusError, match="parse error"):
        PrometheusClient(url).query("up")
    with fake_prometheus(_reply(200, b"<html>a login page</html>")) as url, \
            pytest.raises(PrometheusError, match="not JSON"):
        PrometheusClient(url).query("up")
    release = threading.Event()

    def slow(h: http.server.BaseHTTPRequestHandler) -> None:
        release.wait(20)

    with fake_prometheus(slow) as url:
        t0 = time.monotonic()
        with pytest.raises(PrometheusError, match="did not answer within"):
            PrometheusClient(url, timeout=0.5).query("up")
        assert time.monotonic() - t0 < 10  # the deadline ended it, not the server
        release.set()
    with fake_prometheus(_reply(200, b"")) as url:
        pass  # the port is closed again: nothing listens
    with pytest.raises(PrometheusError, match="unreachable"):
        PrometheusClient(url, timeout=2).query("up")
    with pytest.raises(PrometheusError, match="http"):
        PrometheusClient("prometheus:9090")


def test_empty_answers_are_an_empty_fleet_and_missing_node_labels_are_said() -> None:
    empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
    with fake_prometheus(_reply(200, empty.encode())) as url:
        snap = collect(PrometheusClient(url))
    # no recorded sums → the computed ones (also empty) → the sandboxes: three queries
    assert snap.nodes == () and snap.sandboxes == () and snap.queries == 3
    assert not snap.errors  # nothing to sum: no word about recording rules
    info = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "kata_top_sandbox_info", "instance": "10.0.0.7:9712",
                    "sandbox_id": "a" * 64, "cri_name": "web", "cri_namespace": "default",
                    "state": "running", "q": "info"}, "value": [1, "1"]},
        {"metric": {"instance": "10.0.0.7:9712", "q": "sandboxes"}, "value": [1, "1"]}]}})
    with fake_prometheus(_reply(200, info.encode())) as url:
        snap = collect(PrometheusClient(url))
    assert [n.node for n in snap.nodes] == ["10.0.0.7:9712"]
    assert snap.nodes[0].sandboxes == 1 and [s.pod_name for s in snap.sandboxes] == ["web"]
    assert snap.errors and "node" in snap.errors[0]


def test_a_node_is_selected_by_a_quoted_matcher() -> None:
    assert node_matcher('we"ird\\node', False) == 'node="we\\"ird\\\\node"'
    assert node_matcher("10.0.0.7:9712", True) == 'node="",instance="10.0.0.7:9712"'
    q = sandboxes_query(node_matcher("n1", False))
    assert 'kata_top_sandbox_info{node="n1"}' in q and '{kind="htb",node="n1"}' in q
    assert "kata_top_sandbox_info{}" in sandboxes_query()


@given(st.lists(st.builds(Sample, st.dictionaries(
    st.sampled_from(["q", "node", "instance", "sandbox_id", "severity", "direction", "code",
                     "state"]), st.sampled_from(["up", "seen", "sandboxes", "stale", "findings",
                                                 "bps", "oneway", "htbdrops", "info", "missing",
                                                 "failed", "tapdrops",
                                                 "in", "out", "critical", "warning", "n1", ""])),
    st.floats(allow_nan=True, allow_infinity=False)), max_size=30))
def test_any_rows_fold_into_nodes_and_sandboxes(samples: list[Sample]) -> None:
    """Whatever a (proxied, misconfigured) Prometheus answers, the fold never crashes and the
    node sums stay numbers."""
    missing: set[str] = set()
    for node in fold_nodes(samples, 1e9, missing):
        assert isinstance(node.sandboxes, int)
        assert node.in_bps == node.in_bps
    for row in fold_sandboxes(samples, missing):
        assert row.in_bps == row.in_bps and isinstance(row.codes, tuple)


FIXED = FleetSnapshot(
    taken_at=1795500000.0, prometheus="http://prometheus:9090",
    nodes=(FleetNode("alpha", True, 1.0, sandboxes=10, critical=2, warning=1, in_bps=8e6,
                     out_bps=2e6, one_way=1, dead_vmms=1),
           FleetNode("beta", True, 1.0, sandboxes=2, critical=1, one_way=1),
           FleetNode("gamma", False, 400.0, sandboxes=1)),
    sandboxes=(FleetSandbox("alpha", "a" * 64, "monitoring", "no-out-redirect-3", "running",
                            "tcfilter", critical=1, codes=("KT-S002",),
                            missing_redirects=("out",)),
               FleetSandbox("alpha", "b" * 64, "default", "dead-vm-8", "stale", "tcfilter",
                            critical=1, codes=("KT-S020",)),
               FleetSandbox("alpha", "c" * 64, "default", "web-0", "running", "tcfilter",
                            in_bps=8e6, out_bps=2e6),
               FleetSandbox("beta", "d" * 64, "default", "web-1", "running", "tcfilter",
                            critical=1, codes=("KT-S002",), missing_redirects=("in",)),
               FleetSandbox("gamma", "e" * 64, "default", "web-0", "running", "tcfilter")),
    serve_urls=(("alpha", "http://127.0.0.1:1"),), queries=2)


def test_fleet_check_names_each_nodes_faults() -> None:
    text = render(FIXED)
    assert problems(FIXED)
    assert "CRIT alpha: monitoring/no-out-redirect-3: redirect out missing" in text
    assert "CRIT alpha: default/dead-vm-8: VMM dead" in text
    assert "CRIT beta: default/web-1: redirect in missing" in text
    assert "CRIT gamma: kata-top on this node does not answer scrapes (last seen 400 s ago)" \
        in text


def test_fleet_check_of_one_node_or_from_the_sums_alone() -> None:
    beta = render(replace(FIXED, sandboxes_of="beta"))
    assert "CRIT beta: default/web-1: redirect in missing" in beta and "alpha" not in beta
    assert problems(replace(FIXED, sandboxes_of="beta"))
    nowhere = replace(FIXED, sandboxes_of="delta")
    assert problems(nowhere) and "no node 'delta'" in render(nowhere)
    sums = render(replace(FIXED, sandboxes=(), sandboxes_of=None))  # the node round alone
    assert "CRIT alpha: 1 sandbox(es) with a redirect missing" in sums
    assert "CRIT alpha: 1 sandbox(es) whose VMM is dead" in sums
    assert "CRIT beta: 1 critical and 0 warning findings" in sums


def test_packets_lost_at_the_redirect_and_the_tap_are_their_own_column() -> None:
    """IN/OUT are what the taps delivered; what the redirect failed to hand over and what the
    tap dropped come in the same two rounds (no query per row) and are shown and checked."""
    assert "kata_top_redirect_failed_packets_total" in sandboxes_query() and \
        "kata_top_vm_dropped_packets_total" in sandboxes_query()
    sid = "f" * 64
    rows = [Sample({"q": "info", "node": "n1", "sandbox_id": sid, "cri_name": "web-0",
                    "cri_namespace": "default", "state": "running"}, 1.0),
            Sample({"q": "failed", "node": "n1", "sandbox_id": sid}, 12.0),
            Sample({"q": "tapdrops", "node": "n1", "sandbox_id": sid}, 0.5)]
    sums = [Sample({"q": "failed", "node": "n1"}, 12.0),
            Sample({"q": "tapdrops", "node": "n1"}, 0.5)]  # the nodes' round
    [sb] = fold_sandboxes(rows, set())
    [node] = fold_nodes(sums, 1e9, set())
    assert (sb.redirect_failed_ps, sb.tap_dropped_ps) == (12.0, 0.5)
    assert (node.redirect_failed_ps, node.tap_dropped_ps) == (12.0, 0.5)
    snap = replace(FIXED, nodes=(node,), sandboxes=(sb,))
    text = render(snap)
    assert "CRIT n1: default/web-0: redirects fail 12.0 pkt/s" in text
    assert "WARN n1: default/web-0: taps drop 0.5 pkt/s" in text
    assert "CRIT n1: its sandboxes: redirects fail 12.0 pkt/s" in render(
        replace(snap, sandboxes=(), sandboxes_of=None))
    from kata_top.widgets.fleet_columns import NODES, SANDBOXES_OF_NODE

    def lost(model: Any, row: Any) -> Any:
        cols = [c for c in model.columns if c.key == "lost"]
        return model.cells(cols, row, [])[0]

    assert lost(SANDBOXES_OF_NODE, sb) == ("12/s", "bad")
    assert lost(NODES, replace(node, redirect_failed_ps=0.0)) == ("0.5/s", "warn")
    assert lost(NODES, FIXED.nodes[0]) == ("-", "muted")


class FixedSource:
    serve_urls: dict[str, str] = {}
    read_only = True

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail

    def next(self) -> FleetSnapshot:
        if self.fail:
            raise SourceError(self.fail)
        return FIXED


def fleet_app(fail: str | None = None) -> Any:
    from kata_top.widgets.fleet_app import FleetApp

    return FleetApp(FixedSource(fail), refresh=3600, theme="kata-dark", settings=Settings())


def test_snapshot_fleet_console(snap_compare: Any) -> None:
    async def settle(pilot: Any) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(fleet_app(), terminal_size=(120, 30), run_before=settle)


async def test_fleet_console_drills_down_to_a_node() -> None:
    from kata_top.widgets.fleet_app import NodeScreen
    from kata_top.widgets.sandbox_table import SandboxTable

    app = fleet_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = app.screen.query_one(SandboxTable)
        rows = [table.row_text(i) for i in range(table.row_count)]
        assert [r.split()[0] for r in rows] == ["alpha", "beta", "gamma"]
        assert "DOWN" in rows[2]
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen) and app.screen.node == "alpha"
        table = app.screen.query_one(SandboxTable)
        texts = [table.row_text(i) for i in range(table.row_count)]
        assert any("no-out-redirect-3" in t and "out MISSING" in t for t in texts)
        assert not any("web-1" in t for t in texts)  # beta's sandbox is not alpha's
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, NodeScreen)


async def test_prometheus_down_keeps_a_banner_not_a_traceback() -> None:
    app = fleet_app(fail="http://prometheus:9090 unreachable: Connection refused")
    async with app.run_test(size=(120, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.error and "unreachable" in app.error
        banner = app.screen.query_one("#banner")
        assert "unreachable" in str(banner.render())


def test_without_recording_rules_the_node_sums_are_computed_and_said() -> None:
    def behave(h: http.server.BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(h.rfile.read(int(h.headers["Content-Length"])).decode())
        computed = "count by (node, instance) (kata_top_sandbox_info)" in query["query"][0]
        rows = [{"metric": {"node": "n1", "q": "up", "instance": "10.0.0.1:9712"},
                 "value": [1, "1"]}]
        if computed:  # the recorded series are absent: only the raw expressions answer
            rows.append({"metric": {"node": "n1", "q": "sandboxes"}, "value": [1, "7"]})
        _reply(200, json.dumps({"status": "success", "data": {
            "resultType": "vector", "result": rows}}).encode())(h)

    with fake_prometheus(behave) as url:
        snap = collect(PrometheusClient(url), sandboxes=None)
    assert [(n.node, n.sandboxes, n.up) for n in snap.nodes] == [("n1", 7, True)]
    assert snap.queries == 2 and snap.sandboxes_of is None
    assert snap.errors == (RULES_HINT,)
    assert snap.serve_urls == (("n1", "http://10.0.0.1:9712"),)


def test_the_prometheus_url_never_shows_its_password() -> None:
    """A fleet snapshot (JSON and the console) and a refused URL keep the path but never
    the user:password an operator put in --prometheus."""
    from kata_top.fleet.promql import PrometheusClient, PrometheusError
    from kata_top.httpget import without_credentials

    assert without_credentials("http://u:s3cret@prom:9090/sub") == "http://prom:9090/sub"
    assert without_credentials("https://prom:9090") == "https://prom:9090"
    with pytest.raises(PrometheusError) as err:
        PrometheusClient("ftp://u:s3cret@prom:9090")
    assert "s3cret" not in str(err.value)
