"""The fleet against real parts: a real Prometheus scraping three `kata-top serve` on three
labs posing as nodes; `fleet --json`, `fleet check` and the console name each node's planted
faults on the right node; a stopped exporter shows as down with its last-seen age; the node
dashboard fed by `--remote` shows what the local one shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from kata_top import actions
from kata_top.fleet.promql import PrometheusClient
from kata_top.fleet.query import fold_nodes, nodes_query
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.settings import Settings
from kata_top.sources.fleet import FleetSource
from tests.deploy_helpers import write_rules
from tests.helpers import ROOT, need_root, require, running_lab
from tests.serve_helpers import prometheus, prometheus_binary, promql, serving, stop, wait_for


def fleet(prom: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kata_top", "fleet", *argv, "--prometheus",
                           prom, "--log-file", os.devnull], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "KATA_TOP_CONFIG": os.devnull})


async def _rows(app: Any) -> dict[str, tuple[str, str]]:
    from kata_top.widgets.sandbox_table import SandboxTable

    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(600):
            await pilot.pause(0.05)
            snap = app.snapshot
            if snap is not None and app.screen.query_one(SandboxTable).row_count == \
                    len(snap.sandboxes) and snap.sandboxes:
                break
        assert app.snapshot is not None, "no snapshot reached the dashboard"
        return {sb.id: (sb.state, sb.network_model) for sb in app.snapshot.sandboxes}


async def _console(source: Any) -> tuple[list[str], bool]:
    """The fleet console on `source`: its node names, and whether opening beta shows
    web-1's lost inbound redirect."""
    from kata_top.widgets.fleet_app import FleetApp, NodeScreen
    from kata_top.widgets.sandbox_table import SandboxTable

    app = FleetApp(source, refresh=3600, theme="kata-dark", settings=Settings())
    async with app.run_test(size=(160, 48)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if app.screen.query_one(SandboxTable).row_count == 3:
                break
        table = app.screen.query_one(SandboxTable)
        names = [table.row_text(i).split()[0] for i in range(table.row_count)]
        assert source.focus is None and app.snapshot is not None
        assert app.snapshot.sandboxes == ()  # the fleet screen asked for nodes only
        await pilot.press("down", "enter")
        seen = False
        for _ in range(200):
            await pilot.pause(0.05)
            if isinstance(app.screen, NodeScreen):
                t = app.screen.query_one(SandboxTable)
                texts = [t.row_text(i) for i in range(t.row_count)]
                seen = any("web-1" in x and "in MISSING" in x for x in texts)
                if seen:
                    assert source.focus == "beta" and len(texts) == 2
                    break
        return names, seen


def test_fleet_on_three_nodes(demo_lab: tuple[Layout, Manifest], tmp_path: Any) -> None:
    need_root()
    require(prometheus_binary() is not None, "needs Debian's prometheus package")
    alpha, _ = demo_lab
    with running_lab("b", build.UpOptions(sandboxes=2, scenario="plain")) as (beta, beta_man), \
            running_lab("c", build.UpOptions(sandboxes=1, scenario="plain")) as (gamma, _g):
        victim = actions.find_sandbox(beta.run_root, beta_man.sandboxes[1].spec.id)
        assert actions.execute(actions.plan_redirect(victim, "remove", "in"), audit=False).ok
        with serving(alpha.run_root) as (a_url, _a), serving(beta.run_root) as (b_url, _b), \
                serving(gamma.run_root) as (c_url, c_proc):
            (tmp_path / "prom").mkdir()
            rules = write_rules(str(tmp_path / "rules.yaml"))
            with prometheus(str(tmp_path / "prom"), {"alpha": a_url[7:], "beta": b_url[7:],
                                                     "gamma": c_url[7:]}, (rules,)) as prom:
                wait_for(lambda: len(promql(prom, "kata_top_sandboxes")) == 3, 90,
                         "all three nodes scraped")
                wait_for(lambda: len(promql(prom, "node:kata_top_sandboxes:count")) == 3, 60,
                         "the recording rules evaluated")
                # the recorded node sums (deploy/'s rules) say what computing them says
                client = PrometheusClient(prom)
                recorded, computed = (
                    {(n.node, n.sandboxes, n.critical, n.warning, n.one_way, n.dead_vmms)
                     for n in fold_nodes(client.query(nodes_query(recorded=r)), 0, set())}
                    for r in (True, False))
                assert recorded == computed and len(recorded) == 3
                doc = json.loads(fleet(prom, "--json").stdout)
                nodes = {n["node"]: n for n in doc["nodes"]}
                assert set(nodes) == {"alpha", "beta", "gamma"}
                assert (nodes["alpha"]["sandboxes"], nodes["beta"]["sandboxes"],
                        nodes["gamma"]["sandboxes"]) == (10, 2, 1)
                assert nodes["alpha"]["one_way"] == 1 and nodes["alpha"]["dead_vmms"] == 1
                assert nodes["beta"]["one_way"] == 1 and nodes["beta"]["dead_vmms"] == 0
                assert nodes["gamma"]["one_way"] == 0 and nodes["gamma"]["up"] is True
                one_way = {(s["node"], s["pod_name"], tuple(s["missing_redirects"]))
                           for s in doc["sandboxes"] if s["missing_redirects"]}
                assert one_way == {("alpha", "no-out-redirect-3", ("out",)),
                                   ("beta", "web-1", ("in",))}
                check = fleet(prom, "check")
                assert check.returncode == 1, check.stderr
                assert "alpha: monitoring/no-out-redirect-3: redirect out missing" in check.stdout
                assert "beta: payments/web-1: redirect in missing" in check.stdout
                assert "gamma:" not in check.stdout

                beta_only = fleet(prom, "check", "--node", "beta")
                assert beta_only.returncode == 1, beta_only.stderr
                assert "beta: payments/web-1: redirect in missing" in beta_only.stdout
                assert "alpha" not in beta_only.stdout

                # the console: nodes from the recorded sums, then beta's sandboxes when
                # opened (asked for only then)
                assert asyncio.run(_console(FleetSource(client))) == \
                    (["alpha", "beta", "gamma"], True)

                # --remote: the node dashboard through alpha's serve shows what it shows
                from kata_top.engine import EngineOptions
                from kata_top.sources.live import LiveSource
                from kata_top.sources.remote import RemoteSource
                from kata_top.widgets.app import KataTopApp

                # (sync test, apps run on their own loops: pyroute2 above needs no running one)
                remote = asyncio.run(_rows(KataTopApp(RemoteSource(a_url), refresh=1.0,
                                                      theme="kata-dark", settings=Settings())))
                local = asyncio.run(_rows(KataTopApp(LiveSource(EngineOptions(
                    run_root=alpha.run_root)), refresh=1.0, theme="kata-dark",
                    settings=Settings())))
                assert remote == local

                # gamma's exporter stops: down, with the age of its last sample
                stop(c_proc)
                wait_for(lambda: any(float(r["value"][1]) == 0 for r in promql(
                    prom, 'up{node="gamma"}')), 60, "gamma seen down")
                doc = json.loads(fleet(prom, "--json").stdout)
                gamma_node = next(n for n in doc["nodes"] if n["node"] == "gamma")
                assert gamma_node["up"] is False and gamma_node["last_seen_age_s"] >= 0
                check = fleet(prom, "check")
                assert "gamma: kata-top on this node does not answer scrapes" in check.stdout


def test_fleet_says_the_packets_a_down_tap_loses(tmp_path: Any) -> None:
    """UDP into the `faults` lab's sandbox whose tap is down: IN (what the taps delivered)
    stays 0 while the LOST split shows the redirect's failures, on that sandbox and in the
    node's recorded sum, through a real Prometheus and deploy/'s rules; `fleet check` says it."""
    import threading

    from kata_top.lab import traffic

    need_root()
    require(prometheus_binary() is not None, "needs Debian's prometheus package")
    with running_lab("l", build.UpOptions(sandboxes=4, scenario="faults")) as (lab, man), \
            serving(lab.run_root) as (url, _p):
        spec = next(s.spec for s in man.sandboxes if s.spec.pod_name == "tap-down-3")
        (tmp_path / "prom").mkdir()
        rules = write_rules(str(tmp_path / "rules.yaml"))
        with prometheus(str(tmp_path / "prom"), {"lost": url[7:]}, (rules,)) as prom:
            sender = threading.Thread(target=traffic.run, args=(
                lab.node_ns, [spec.ip]), kwargs={"seconds": 20.0, "rate_pps": 100},
                daemon=True)
            sender.start()
            try:
                def lost() -> bool:
                    return bool(promql(prom, "node:kata_top_redirect_failed_packets:rate2m"
                                             " > 10"))
                wait_for(lost, 60, "the node's recorded redirect failures")
                doc = json.loads(fleet(prom, "--json").stdout)
                check = fleet(prom, "check")
            finally:
                sender.join(30)
        [node] = doc["nodes"]
        assert node["redirect_failed_ps"] > 10
        rows = {s["pod_name"]: s for s in doc["sandboxes"]}
        assert rows["tap-down-3"]["redirect_failed_ps"] > 10
        assert rows["tap-down-3"]["in_bps"] == 0  # nothing reached the VM
        assert all(r["redirect_failed_ps"] == 0 for p, r in rows.items() if p != "tap-down-3")
        assert f"{spec.pod_namespace}/tap-down-3: redirects fail" in check.stdout, check.stdout
