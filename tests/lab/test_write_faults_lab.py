"""The write path under faults, on a real lab: SIGKILL at random points, two changes racing,
a full or read-only audit filesystem, a namespace that vanishes, a change left unfinished."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kata_top import actions
from kata_top.actions.apply import _apply
from kata_top.actions.audit import AuditLog, intent_for
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.helpers import ROOT, need_root, running_lab

DEVS = ("tap0_kata", "eth0")


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Layout, Manifest]]:
    need_root()
    with running_lab("w", build.UpOptions(sandboxes=10, qemu=False)) as made:
        yield made


def _ns(layout: Layout, pod: str) -> str:
    return os.path.basename(actions.find_sandbox(layout.run_root, pod).netns.path or "")


def _tc(ns: str, *args: str) -> str:
    return subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True,
                          check=False).stdout


def _htb(ns: str) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Per device: an htb at the root?, and its classes with their rates."""
    out = {}
    for dev in DEVS:
        root = "qdisc htb 1: root" in _tc(ns, "qdisc", "show", "dev", dev)
        classes = tuple(sorted(" ".join(m.groups()) for m in re.finditer(
            r"class htb (\S+) .*?rate (\S+)", _tc(ns, "class", "show", "dev", dev))))
        out[dev] = (root, classes)
    return out


def _kata_top(*args: str, env: dict[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "kata_top", *args], capture_output=True,
                          text=True, cwd=ROOT, check=False, env={**os.environ, **(env or {})},
                          timeout=60)


@contextlib.contextmanager
def _tc_events(netns_path: str) -> Iterator[socket.socket]:
    """A socket of the namespace's tc notifications (RTNLGRP_TC): the moment a change
    reaches the kernel, to kill the changer right then."""
    from kata_top.collectors import netns

    with netns.entered(netns_path):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 1 << (4 - 1)))
        yield sock
    finally:
        sock.close()


def _entries(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    # every line is whole JSON: no kill leaves half an entry
    return [json.loads(line) for line in log.read_text().splitlines() if line]


def test_sigkill_at_random_points_leaves_before_or_after_with_its_record(
        lab: tuple[Layout, Manifest], tmp_path: Path) -> None:
    layout, _ = lab
    path = actions.find_sandbox(layout.run_root, "web-0").netns.path or ""
    ns = os.path.basename(path)
    log = tmp_path / "audit.jsonl"
    env = {"KATA_TOP_AUDIT_LOG": str(log)}
    args = ("ratelimit", "set", "web-0", "--in", "5mbit", "--out", "7mbit", "--yes",
            "--run-root", layout.run_root)
    before = _htb(ns)
    assert before == {d: (False, ()) for d in DEVS}

    def reset() -> None:
        for dev in DEVS:
            subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"],
                           capture_output=True, check=False)

    started = time.monotonic()
    assert _kata_top(*args, env=env).returncode == 0
    whole = time.monotonic() - started
    after = _htb(ns)
    assert after == {"tap0_kata": (True, ("1:1 5Mbit", "1:2 5Mbit")),
                     "eth0": (True, ("1:1 7Mbit", "1:2 7Mbit"))}
    reset()
    rng = random.Random(31)
    seen = {"before": 0, "after": 0}
    try:
        for i in range(20):
            n = len(_entries(log))
            with _tc_events(path) as events:
                proc = subprocess.Popen([sys.executable, "-m", "kata_top", *args], cwd=ROOT,
                                        env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                if i % 2:  # at any point of the run
                    time.sleep(rng.uniform(0.05, 1.0) * whole)
                else:  # as the kernel reports the change's first message, or just after
                    events.settimeout(whole * 3)
                    with contextlib.suppress(TimeoutError):
                        events.recv(1 << 16)
                    time.sleep(rng.choice((0, 0, 0.0005, 0.001, 0.002)))
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            state = _htb(ns)
            assert state in (before, after), state  # never half a change
            new = _entries(log)[n:]
            intents = [e for e in new if e.get("phase") == "intent"]
            seen["after" if state == after else "before"] += 1
            if state == after:  # a change made is a change recorded (its intent, at least)
                assert [e["operation"][:9] for e in new][:1] == ["ratelimit"], new
            for e in new:  # an outcome is always of this run's intent
                if e.get("phase") == "outcome":
                    assert [i["id"] for i in intents] == [e["id"]]
            reset()
    finally:
        reset()
    print(f"SIGKILL loop: {seen}, a run {whole:.2f} s")
    assert seen["before"] and seen["after"], seen


def test_two_racing_adds_leave_one_filter_and_one_change(lab: tuple[Layout, Manifest],
                                                         tmp_path: Path) -> None:
    layout, _ = lab
    ns = _ns(layout, "web-9")
    log = tmp_path / "audit.jsonl"
    env = {**os.environ, "KATA_TOP_AUDIT_LOG": str(log)}
    cmd = [sys.executable, "-m", "kata_top", "redirect", "add", "web-9", "--direction", "out",
           "--yes", "--run-root", layout.run_root]
    for _ in range(4):
        subprocess.run(["tc", "-n", ns, "filter", "del", "dev", "tap0_kata", "ingress"],
                       check=True)
        n = len(_entries(log))
        procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        filters = _tc(ns, "filter", "show", "dev", "tap0_kata", "ingress")
        assert filters.count("mirred") == 1, filters
        outcomes = [e for e in _entries(log)[n:] if e.get("phase", "outcome") == "outcome"]
        assert [e["changed"] for e in outcomes] == [True]
        assert any("already" in out for out, _err in outs)


SHELL_FULL = """set -e
mount -t tmpfs -o size=64k,mode=0700 kt-audit "$1"
dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null || true
shift
exec "$@"
"""
SHELL_RO = """set -e
mount -t tmpfs -o size=1m,mode=0700 kt-audit "$1"
: > "$1/audit.jsonl"
mount -o remount,ro "$1"
shift
exec "$@"
"""


@pytest.mark.parametrize("script,words", [(SHELL_FULL, "No space left on device"),
                                          (SHELL_RO, "Read-only file system")],
                         ids=["full", "read-only"])
def test_an_audit_that_cannot_be_written_changes_nothing(
        lab: tuple[Layout, Manifest], tmp_path: Path, script: str, words: str) -> None:
    """A tmpfs of the test's own in a private mount namespace (gone with the command)."""
    layout, _ = lab
    ns = _ns(layout, "web-0")
    before = _htb(ns), _tc(ns, "filter", "show", "dev", "eth0", "ingress")
    mnt = tmp_path / "audit"
    mnt.mkdir()
    for args in (("ratelimit", "set", "web-0", "--in", "5mbit", "--out", "7mbit"),
                 ("redirect", "remove", "web-0", "--direction", "in")):
        proc = _kata_top(*args, "--yes", "--run-root", layout.run_root,
                         env={"KATA_TOP_AUDIT_LOG": str(mnt / "audit.jsonl")},
                         prefix=("unshare", "-m", "--propagation", "private", "sh", "-c",
                                 script, "sh", str(mnt)))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr
        assert "refusing to change anything" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert (_htb(ns), _tc(ns, "filter", "show", "dev", "eth0", "ingress")) == before
    assert not os.path.ismount(mnt)


def _unmount_netns(layout: Layout, pod: str) -> tuple[str, str]:
    """The namespace's bind mount taken away, its file left: what `ip netns del` leaves for a
    moment, and what kata-top finds when it reads there (not a namespace: UnsafeFile)."""
    sb = actions.find_sandbox(layout.run_root, pod)
    path = sb.netns.path or ""
    subprocess.run(["umount", path], check=True)
    assert os.path.isfile(path)
    return path, os.path.basename(path)


def test_a_vanishing_namespace_is_a_clear_error(scratch_lab: Layout, tmp_path: Path) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    pods = [s.spec.id[:12] for s in man.sandboxes]
    # mid-apply: planned, then the namespace goes before the change is applied
    plan = actions.plan_ratelimit(actions.find_sandbox(scratch_lab.run_root, pods[0]),
                                  {"in": 5_000_000, "out": 7_000_000})
    _unmount_netns(scratch_lab, pods[0])
    with pytest.raises(actions.ActionError, match="gone"):
        actions.execute(plan, audit_path=str(tmp_path / "audit.jsonl"))
    out = actions.execute(plan, audit=False)  # no re-plan: the apply itself meets it
    assert not out.ok and "vanished" in out.message and not out.changed
    # the CLI, with --dry-run and without: one line, no traceback
    _unmount_netns(scratch_lab, pods[1])
    for extra in (("--dry-run",), ("--yes",)):
        proc = _kata_top("ratelimit", "set", pods[1], "--in", "5mbit", *extra,
                         "--run-root", scratch_lab.run_root,
                         env={"KATA_TOP_AUDIT_LOG": str(tmp_path / "audit.jsonl")})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "gone" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr


@pytest.mark.parametrize("how", ["rollback", "finish"])
def test_an_unfinished_change_is_reported_and_resolved(lab: tuple[Layout, Manifest],
                                                       tmp_path: Path, how: str) -> None:
    """A run killed after its batch (rollback) or before it (finish): the intent is on disk,
    the outcome is not. The next run says so; `kata-top actions` resolves it."""
    layout, _ = lab
    ns = _ns(layout, "web-0")
    log = tmp_path / "audit.jsonl"
    env = {"KATA_TOP_AUDIT_LOG": str(log)}
    before = _htb(ns)
    plan = actions.plan_ratelimit(actions.find_sandbox(layout.run_root, "web-0"),
                                  {"in": 5_000_000, "out": 7_000_000})
    book = AuditLog(str(log))
    intent = intent_for(plan)
    book.append(intent)
    book.close()
    if how == "rollback":
        assert _apply(plan, None, actions.ActionError)[0].changed  # then the kill
    half = _htb(ns)
    listing = _kata_top("actions", env=env)
    assert listing.returncode == 1 and "UNFINISHED " + intent["id"][:12] in listing.stdout
    assert f"kata-top actions {how} {intent['id'][:12]}" in listing.stdout
    other = _kata_top("redirect", "add", "web-0", "--yes", "--run-root", layout.run_root,
                      env=env)
    assert "unfinished change" in other.stderr and "ratelimit" in other.stderr
    dry = _kata_top("actions", how, intent["id"][:8], "--dry-run", "--run-root",
                    layout.run_root, env=env)
    assert dry.returncode == 0 and "tc" in dry.stdout and _htb(ns) == half
    done = _kata_top("actions", how, intent["id"][:8], "--yes", "--run-root",
                     layout.run_root, env=env)
    assert done.returncode == 0, done.stderr
    if how == "rollback":
        assert _htb(ns) == before
    else:
        assert _htb(ns)["eth0"] == (True, ("1:1 7Mbit", "1:2 7Mbit"))
        for dev in DEVS:
            subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=True)
    assert _kata_top("actions", env=env).returncode == 0
    assert [e.get("resolves") for e in _entries(log) if e["phase"] == "outcome"] == [
        intent["id"]]
