"""Write actions on a real lab: Kata's exact shapes, idempotence, dry runs, rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kata_top import actions
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.model import Sandbox
from tests.helpers import ROOT, need_root, running_lab


@pytest.fixture(scope="module")
def action_lab() -> Iterator[tuple[Layout, Manifest]]:
    """No QEMU: actions must work whether or not QEMU runs. Demo mix for the shapes."""
    need_root()
    with running_lab("a", build.UpOptions(sandboxes=10, qemu=False)) as lab:
        yield lab


def _sb(layout: Layout, pod: str) -> Sandbox:
    return actions.find_sandbox(layout.run_root, pod)


def _tc_dump(layout: Layout, sb: Sandbox) -> str:
    ns = os.path.basename(sb.netns.path or "")
    out = []
    for what in (["qdisc", "show"], ["class", "show", "dev", "eth0"],
                 ["class", "show", "dev", "tap0_kata"],
                 ["filter", "show", "dev", "eth0", "ingress"],
                 ["filter", "show", "dev", "tap0_kata", "ingress"]):
        out.append(subprocess.run(["tc", "-n", ns, *what], capture_output=True, text=True,
                                  check=False).stdout)
    return "\n".join(out)


def _shape(sb: Sandbox) -> tuple[object, ...]:
    """What Kata's shape is made of, without counters, ids or ages."""
    filters = sorted((f.dev, f.parent, f.kind, f.prio, f.protocol, f.match_all,
                      tuple((a.kind, a.action, a.direction, a.target) for a in f.actions))
                     for f in sb.filters)
    qdiscs = sorted((q.dev, q.kind, q.handle, q.parent, q.default_class) for q in sb.qdiscs
                    if q.kind in ("ingress", "htb"))
    classes = sorted((c.dev, c.handle, c.parent, c.rate_bps, c.ceil_bps) for c in sb.classes)
    return (filters, qdiscs, classes)


def _kata_like(layout: Layout, reference: str, subject: str) -> None:
    assert _shape(_sb(layout, subject)) == _shape(_sb(layout, reference))


def test_restore_missing_redirect_equals_kata(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "no-out-redirect-3")
    plan = actions.plan_redirect(sb, "add", "both")
    assert len(plan.steps) == 1 and "tap0_kata" in plan.commands()[0]
    assert actions.execute(plan, audit=False).ok
    _kata_like(layout, "web-0", "no-out-redirect-3")
    again = actions.plan_redirect(_sb(layout, "no-out-redirect-3"), "add", "both")
    assert again.noop and "already" in again.noop


def test_remove_then_add_round_trip(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    reference = _shape(_sb(layout, "web-0"))
    out = actions.execute(actions.plan_redirect(_sb(layout, "web-0"), "remove", "in"),
                          audit=False)
    assert out.ok and out.changed
    sb = _sb(layout, "web-0")
    assert {r.direction: r.present for r in sb.redirects} == {"in": False, "out": True}
    assert actions.execute(actions.plan_redirect(sb, "add", "in"), audit=False).ok
    assert _shape(_sb(layout, "web-0")) == reference


def test_rate_limit_equals_kata_shape(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "throttled-2")
    rl = {r.direction: r.rate_bps for r in sb.rate_limits}
    plan = actions.plan_ratelimit(_sb(layout, "mtu-mismatch-4"),
                                  {"in": rl["in"], "out": rl["out"]})
    assert actions.execute(plan, audit=False).ok
    mine = _shape(_sb(layout, "mtu-mismatch-4"))
    kata = _shape(sb)
    assert mine[1:] == kata[1:]  # qdiscs and classes identical to Kata's
    cleared = actions.execute(actions.plan_ratelimit(_sb(layout, "mtu-mismatch-4"),
                                                     {"in": None, "out": None}), audit=False)
    assert cleared.ok
    assert not _sb(layout, "mtu-mismatch-4").rate_limits


def test_dry_run_changes_nothing(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-0")
    before = _tc_dump(layout, sb)
    for args in (["redirect", "remove", "web-0", "--direction", "both"],
                 ["ratelimit", "set", "web-0", "--in", "5mbit", "--out", "1gbit"]):
        proc = subprocess.run([sys.executable, "-m", "kata_top", *args, "--run-root",
                               layout.run_root, "--dry-run"], capture_output=True, text=True,
                              cwd=ROOT, check=False)
        assert proc.returncode == 0 and "dry run: nothing changed" in proc.stdout
        assert "ip netns exec" in proc.stdout
    assert _tc_dump(layout, sb) == before


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_fault_between_steps_rolls_back(action_lab: tuple[Layout, Manifest],
                                        fail_at: int) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-0")
    before = _tc_dump(layout, sb)
    plan = actions.plan_ratelimit(sb, {"in": 3_000_000, "out": 4_000_000})
    assert len(plan.steps) == 6
    out = actions.execute(plan, fail_at=fail_at, audit=False)
    assert not out.ok and "injected failure" in out.message and "undone" in out.message
    assert _tc_dump(layout, sb) == before


def test_kernel_error_is_reported_and_rolled_back(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-9")
    before = _tc_dump(layout, sb)
    plan = actions.plan_ratelimit(sb, {"in": 2_000_000})
    # Someone adds an htb between planning and applying: the kernel refuses our qdisc.
    ns = os.path.basename(sb.netns.path or "")
    subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "tap0_kata", "root", "handle", "1:",
                    "htb"], check=True)
    out = actions.execute(plan, audit=False)
    subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", "tap0_kata", "root"], check=True)
    assert not out.ok and "errno" in out.message
    assert _tc_dump(layout, sb) == before


def test_foreign_qdisc_is_refused(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-9")
    ns = os.path.basename(sb.netns.path or "")
    subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
                    "1mbit", "burst", "32kbit", "latency", "400ms"], check=True)
    try:
        with pytest.raises(actions.ActionError, match="not Kata's shape"):
            actions.plan_ratelimit(_sb(layout, "web-9"), {"out": 1_000_000})
    finally:
        subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"], check=True)


def test_macvtap_out_limit_uses_an_ifb_and_clears_it(action_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = action_lab
    assert actions.execute(actions.plan_ratelimit(_sb(layout, "macvtap-5"), {"out": 3_000_000}),
                           audit=False).ok
    sb = _sb(layout, "macvtap-5")
    assert {(r.direction, r.dev, r.rate_bps) for r in sb.rate_limits} == {
        ("out", "ifb0", 3_000_000)}
    assert any(a.target == "ifb0" for f in sb.filters for a in f.actions)
    assert actions.execute(actions.plan_ratelimit(sb, {"out": None}), audit=False).ok
    sb = _sb(layout, "macvtap-5")
    assert not sb.rate_limits and "ifb0" not in {lk.name for lk in sb.links}
    assert not sb.filters


@pytest.mark.parametrize("args,needle,code", [
    (["ratelimit", "set", "web-0", "--in", "fast"], "not a rate", 2),
    (["ratelimit", "set", "web-0", "--in=-5"], "not a rate", 2),
    (["ratelimit", "set", "web-0", "--in", "0"], "above zero", 2),
    (["ratelimit", "set", "web-0", "--in", "1e99bit"], "not a rate", 2),
    (["redirect", "add", "nosuchpod"], "no sandbox matches", 1),
    (["redirect", "add", "hostnet-6"], "none model", 1),
])
def test_bad_input_changes_nothing(action_lab: tuple[Layout, Manifest], args: list[str],
                                   needle: str, code: int) -> None:
    layout, _ = action_lab
    before = _tc_dump(layout, _sb(layout, "web-0"))
    proc = subprocess.run([sys.executable, "-m", "kata_top", *args, "--run-root",
                           layout.run_root, "--yes"], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert _tc_dump(layout, _sb(layout, "web-0")) == before


def test_vanished_namespace_is_refused(scratch_lab: Layout) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    sb = actions.find_sandbox(scratch_lab.run_root, man.sandboxes[0].spec.id[:10])
    subprocess.run(["ip", "netns", "del", scratch_lab.pod_ns(man.sandboxes[0].spec)],
                   check=True)
    with pytest.raises(actions.ActionError, match="gone"):
        actions.plan_redirect(sb, "remove", "both")


def test_cli_is_idempotent_and_audited(action_lab: tuple[Layout, Manifest],
                                       tmp_path: object) -> None:
    layout, _ = action_lab

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kata_top", *args, "--run-root",
                               layout.run_root, "--yes"], capture_output=True, text=True,
                              cwd=ROOT, check=False)

    from kata_top.settings import audit_log_path

    log = audit_log_path()
    size = os.path.getsize(log) if os.path.exists(log) else 0
    first = run("ratelimit", "set", "web-0", "--in", "7mbit")
    assert first.returncode == 0 and "done" in first.stdout
    second = run("ratelimit", "set", "web-0", "--in", "7mbit")
    assert second.returncode == 0 and "already" in second.stdout
    assert run("ratelimit", "clear", "web-0").returncode == 0
    with open(log) as fh:
        fh.seek(size)
        entries = [json.loads(line) for line in fh.read().splitlines() if line]
    # each change: its intent, then its outcome; the no-op is not an applied action
    assert [e["phase"] for e in entries] == ["intent", "outcome"] * 2
    # the log serves every run root on the node: each line names its own
    assert {e["run_root"] for e in entries} == {os.path.normpath(layout.run_root)}
    assert entries[0]["id"] == entries[1]["id"] != entries[2]["id"] == entries[3]["id"]
    e = entries[1]
    assert e["ok"] and e["plan"] and e["before"] and e["after"]["rate_limits"]["in"][
        "rate_bps"] == 7_000_000


def test_ctrl_c_mid_apply_rolls_back_and_is_audited(action_lab: tuple[Layout, Manifest],
                                                    tmp_path: Any) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-0")
    before = _tc_dump(layout, sb)
    log = tmp_path / "audit.jsonl"
    plan = actions.plan_ratelimit(sb, {"in": 3_000_000, "out": 4_000_000})
    with pytest.raises(KeyboardInterrupt):
        actions.execute(plan, fail_at=3, fail_with=KeyboardInterrupt, audit_path=str(log))
    assert _tc_dump(layout, sb) == before  # the node is back as it was
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["ok"] is False and "interrupted" in entry["result"]
    assert os.stat(log).st_mode & 0o777 == 0o600


def test_an_audit_log_that_cannot_be_opened_refuses_before_any_change(
        action_lab: tuple[Layout, Manifest], tmp_path: Any) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-0")
    before = _tc_dump(layout, sb)
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "audit.jsonl"
    os.symlink(target, link)
    plan = actions.plan_redirect(sb, "remove", "in")
    with pytest.raises(actions.ActionError, match="audit log"):
        actions.execute(plan, audit_path=str(link))
    assert _tc_dump(layout, sb) == before and target.read_text() == ""


def test_read_only_deployment_refuses_writes(action_lab: tuple[Layout, Manifest],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    layout, _ = action_lab
    sb = _sb(layout, "web-0")
    before = _tc_dump(layout, sb)
    monkeypatch.setenv("KATA_TOP_READ_ONLY", "1")
    with pytest.raises(actions.ActionError, match="read-only"):
        actions.execute(actions.plan_redirect(sb, "remove", "in"), audit=False)
    proc = subprocess.run([sys.executable, "-m", "kata_top", "redirect", "remove", "web-0",
                           "--yes", "--run-root", layout.run_root], capture_output=True,
                          text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1 and "read-only" in proc.stderr
    assert _tc_dump(layout, sb) == before
