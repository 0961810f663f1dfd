"""A real Prometheus scraping two `kata-top serve` instances, each on its own lab posing as a
node: PromQL through Prometheus' HTTP API names each node's planted faults on the right node,
and the alert for a lost redirect goes to firing."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from kata_top import actions
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.deploy_helpers import write_rules
from tests.helpers import need_root, require, running_lab
from tests.serve_helpers import http_get, prometheus, prometheus_binary, promql, serving, wait_for


def _by_node(result: list[dict[str, Any]], *labels: str) -> set[tuple[str, ...]]:
    return {tuple(r["metric"].get(k, "") for k in ("node", *labels)) for r in result}


def test_prometheus_names_each_nodes_faults(demo_lab: tuple[Layout, Manifest],
                                            tmp_path: Any) -> None:
    need_root()
    require(prometheus_binary() is not None, "needs Debian's prometheus package")
    alpha, _ = demo_lab
    with running_lab("p", build.UpOptions(sandboxes=2, scenario="plain")) as (
            beta, beta_man):
        # beta's fault: the in redirect of web-1 removed (with kata-top's own write path)
        victim = actions.find_sandbox(beta.run_root, beta_man.sandboxes[1].spec.id)
        assert actions.execute(actions.plan_redirect(victim, "remove", "in"), audit=False).ok
        rules = write_rules(str(tmp_path / "rules.yaml"), for_override="0s")
        with serving(alpha.run_root) as (a_url, _a), serving(beta.run_root) as (b_url, _b):
            status, _h, scrape = http_get(a_url + "/metrics")
            assert status == 200
            lint = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"],
                                  input=scrape, capture_output=True, check=False, timeout=60)
            assert lint.returncode == 0 and lint.stdout + lint.stderr == b"", lint
            prom_dir = tmp_path / "prom"
            prom_dir.mkdir()
            with prometheus(str(prom_dir), {"alpha": a_url[7:], "beta": b_url[7:]},
                            (rules,)) as prom:
                missing = wait_for(
                    lambda: (lambda r: r if {m["metric"]["node"] for m in r} == {"alpha", "beta"}
                             else None)(promql(prom, "kata_top_redirect_present == 0")),
                    90, "both nodes' missing redirects in Prometheus")
                assert _by_node(missing, "cri_name", "direction") == {
                    ("alpha", "no-out-redirect-3", "out"), ("beta", "web-1", "in")}
                stale = promql(prom, 'kata_top_sandbox_info{state="stale"} == 1')
                assert _by_node(stale, "cri_name") == {("alpha", "dead-vm-8")}
                per_node = promql(prom, "sum by (node) (kata_top_sandboxes)")
                assert {m["metric"]["node"]: float(m["value"][1]) for m in per_node} == {
                    "alpha": 10.0, "beta": 2.0}

                def firing() -> set[tuple[str, ...]]:
                    _s, _h, body = http_get(prom + "/api/v1/alerts")
                    import json

                    alerts = json.loads(body)["data"]["alerts"]
                    return {(a["labels"]["node"], a["labels"]["cri_name"])
                            for a in alerts if a["labels"]["alertname"] == "KataRedirectMissing"
                            and a["state"] == "firing"}

                assert wait_for(lambda: firing() == {("alpha", "no-out-redirect-3"),
                                                     ("beta", "web-1")}, 60,
                                "KataRedirectMissing firing on both nodes")
    assert not os.path.exists(beta.run_root)
