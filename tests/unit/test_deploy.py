"""deploy/: manifests validated against Kubernetes' schemas, alert rules checked and unit-tested
with promtool, the Grafana dashboard's queries only naming series kata-top exports."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from kata_top.fleet.query import NODE_SUMS
from kata_top.formats import prometheus
from kata_top.formats.recording import load_recording
from tests.deploy_helpers import DEPLOY, ROOT, load, write_rules
from tests.helpers import require

K8S = kubernetes_validate.latest_version()
CORE = ("namespace.yaml", "serviceaccount.yaml", "daemonset.yaml", "service.yaml",
        "networkpolicy.yaml")


@pytest.mark.parametrize("name", CORE)
def test_core_manifests_validate(name: str) -> None:
    assert kubernetes_validate.validate(load(name), K8S, strict=True)


def test_validation_is_not_a_no_op() -> None:
    ds = copy.deepcopy(load("daemonset.yaml"))
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] \
        = True  # a typo must fail strict validation
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S, strict=True)


def test_daemonset_is_read_only_and_least_privilege() -> None:
    spec = load("daemonset.yaml")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    sc = c["securityContext"]
    assert spec["hostPID"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == {"SYS_ADMIN", "SYS_PTRACE"}  # no NET_ADMIN
    assert not sc.get("privileged") and sc["allowPrivilegeEscalation"] is False
    assert {"name": "KATA_TOP_READ_ONLY", "value": "1"} in c["env"]
    assert c["args"][0] == "serve"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in ("/host/run/vc", "/host/run/kata", "/run/netns"):
        assert mounts[path]["readOnly"] is True, path
    assert "--run-root=/host/run" in c["args"]
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]


def test_daemonset_shares_the_serve_socket_with_the_node() -> None:
    spec = load("daemonset.yaml")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/run/kata-top")
    assert not mount.get("readOnly")  # the serve makes its socket there
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["hostPath"] == {"path": "/run/kata-top", "type": "DirectoryOrCreate"}
    # the socket's name comes from the run root: the node's `kata-top` says /run
    assert "--host-run-root=/run" in c["args"]
    assert {"name": "KATA_TOP_RUN_ROOT", "value": "/host/run"} in c["env"]


def test_exporter_listens_on_the_pod_ip_and_only_prometheus_may_reach_it() -> None:
    """Not 0.0.0.0: the pod's own IP from the downward API, and a NetworkPolicy that admits
    one namespace to the metrics port, nothing else."""
    pod = load("daemonset.yaml")["spec"]["template"]
    c = pod["spec"]["containers"][0]
    listen = [a for a in c["args"] if a.startswith("--listen")]
    assert listen == ["--listen=$(POD_IP):9712"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert not pod["spec"].get("hostNetwork")
    port = c["ports"][0]["containerPort"]
    np = load("networkpolicy.yaml")["spec"]
    assert np["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert np["policyTypes"] == ["Ingress"]
    [rule] = np["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    [peer] = rule["from"]
    assert set(peer) == {"namespaceSelector"}  # no ipBlock, no podSelector-only peer
    assert peer["namespaceSelector"]["matchLabels"]  # one namespace, not all of them


def test_monitor_selects_the_daemonsets_pods() -> None:
    pods = load("daemonset.yaml")["spec"]["template"]["metadata"]["labels"]
    pm = load("podmonitor.yaml")["spec"]
    assert pm["selector"]["matchLabels"].items() <= pods.items()
    assert pm["podMetricsEndpoints"][0]["port"] == "metrics"
    svc = load("service.yaml")["spec"]
    assert svc["selector"].items() <= pods.items()


def _promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "needs promtool (Debian's prometheus package)")
    assert path is not None
    return path


def test_rules_check_and_unit_tests_pass(tmp_path: Any) -> None:
    promtool = _promtool()
    rules = write_rules(str(tmp_path / "rules.yaml"))
    out = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True,
                         check=False, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    shutil.copy(os.path.join(ROOT, "tests", "data", "rules-test.yaml"), tmp_path / "t.yaml")
    out = subprocess.run([promtool, "test", "rules", str(tmp_path / "t.yaml")],
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def _exported_names() -> set[str]:
    snaps, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))
    text = prometheus.render(snaps[-1])
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    return names | {"kata_top_exporter_collections_total",
                    "kata_top_exporter_collection_failures_total",
                    "kata_top_exporter_last_collection_seconds"}


def test_every_series_a_rule_or_dashboard_names_is_exported() -> None:
    exported = _exported_names()
    texts = [json.dumps(load("prometheusrule.yaml"))]
    with open(os.path.join(DEPLOY, "grafana-dashboard.json"), encoding="utf-8") as fh:
        dash = json.load(fh)
    texts.append(json.dumps(dash))
    # (recorded series, `level:kata_top_…:operation`, are the rules' own names)
    named = set(re.findall(r"(?<![:\w])kata_top_[a-z_]+(?!\w|:)", " ".join(texts)))
    assert named and named <= exported, sorted(named - exported)
    assert len([p for p in dash["panels"] if p.get("targets")]) >= 6


def test_containerfile_runs_the_read_only_exporter() -> None:
    with open(os.path.join(DEPLOY, "Containerfile"), encoding="utf-8") as fh:
        text = fh.read()
    assert "KATA_TOP_READ_ONLY=1" in text
    assert re.search(r'ENTRYPOINT \["kata-top"\]', text)
    assert re.search(r'CMD \["serve"', text)
    assert re.search(r"apt-get install .*\bbpftrace\b", text)  # for `kata-top drops`


def test_the_fleet_consoles_sums_are_recorded_by_the_rules() -> None:
    """The console reads `node:kata_top_…` series the PrometheusRule records, and computes the
    same expressions itself when they are absent: the two must stay one definition."""
    groups = {g["name"]: g for g in load("prometheusrule.yaml")["spec"]["groups"]}
    recorded = {r["record"]: " ".join(r["expr"].split()) for r in groups["kata-top.fleet"]["rules"]}
    assert recorded == {name: expr for _q, name, expr in NODE_SUMS}


def test_vm_traffic_panels_show_what_the_tap_delivered() -> None:
    """Traffic into/out of a VM is what its tap delivered (the recording rule where one
    exists), with mirred's attempts beside it, never the attempts alone; the packets the
    redirect failed and the tap dropped have a panel of their own."""
    with open(os.path.join(DEPLOY, "grafana-dashboard.json"), encoding="utf-8") as fh:
        panels = json.load(fh)["panels"]
    recorded = {r["record"] for g in load("prometheusrule.yaml")["spec"]["groups"]
                for r in g["rules"] if "record" in r}

    def exprs(p: dict[str, Any]) -> list[str]:
        return [t["expr"] for t in p.get("targets", [])]

    traffic = [p for p in panels if p["title"].startswith("Traffic ")]
    assert len(traffic) >= 3
    for p in traffic:
        first = exprs(p)[0]  # the delivered series leads; the attempts follow it
        assert "node:kata_top_vm_delivered_bits:rate2m" in first \
            or "kata_top_vm_delivered_bytes_total" in first, p["title"]
        assert any("kata_top_redirect_bytes_total" in e for e in exprs(p)[1:]), p["title"]
    node_level = [p for p in traffic if any("sum by (node)" in e for e in exprs(p))]
    assert node_level and all("node:kata_top_vm_delivered_bits:rate2m" in exprs(p)[0]
                              for p in node_level)
    used = {m for p in panels for e in exprs(p) for m in re.findall(r"\bnode:kata_top_\w+:\w+", e)}
    assert used and used <= recorded, sorted(used - recorded)
    lost = [" ".join(exprs(p)) for p in panels]
    assert any("kata_top_redirect_failed_packets_total" in e
               and "kata_top_vm_dropped_packets_total" in e for e in lost)  # per sandbox
    assert any("node:kata_top_redirect_failed_packets:rate2m" in e
               and "node:kata_top_vm_dropped_packets:rate2m" in e for e in lost)  # per node
