"""Nothing of a drop trace outlives it: no bpftrace process, no BPF program on kfree_skb, no
tracefs mount — after a normal end, after Ctrl-C and after kata-top is SIGKILLed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import ROOT, need_root, require
from tests.lab.drops_lab import ENV, bpftrace_pids, kfree_skb_programs, tracefs_mounts


@pytest.fixture
def before() -> tuple[set[int], list[str], int]:
    need_root()
    require(shutil.which("bpftrace") is not None, "needs bpftrace")
    return bpftrace_pids(), kfree_skb_programs(), tracefs_mounts()


def _start(run_root: str, seconds: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kata_top", "drops", "--seconds",
                             str(seconds), "--run-root", run_root], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)


def _tracing(proc: subprocess.Popen[str]) -> int:
    """Wait until the trace is attached (the progress line) and return bpftrace's pid."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "tracing for" in line, line
    with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
        kids = [int(p) for p in fh.read().split()]
    tracer = [p for p in kids if p in bpftrace_pids()]
    assert len(tracer) == 1, kids
    return tracer[0]


def _nothing_left(before: tuple[set[int], list[str], int], tracer: int) -> None:
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{tracer}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{tracer}"), "bpftrace outlived the trace"
    assert bpftrace_pids() <= before[0]
    assert kfree_skb_programs() == before[1]
    assert tracefs_mounts() == before[2]


def test_normal_end(tmp_path: str, before: tuple[set[int], list[str], int]) -> None:
    proc = _start(str(tmp_path), 2)
    tracer = _tracing(proc)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "s of 2 s traced" in out
    _nothing_left(before, tracer)


def test_ctrl_c(tmp_path: str, before: tuple[set[int], list[str], int]) -> None:
    proc = _start(str(tmp_path), 60)
    tracer = _tracing(proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "stopped early" in out  # what was counted is still printed
    _nothing_left(before, tracer)


def test_sigkill_of_kata_top(tmp_path: str, before: tuple[set[int], list[str], int]) -> None:
    proc = _start(str(tmp_path), 60)
    tracer = _tracing(proc)
    proc.kill()
    proc.communicate(timeout=30)
    _nothing_left(before, tracer)


def test_a_tracer_that_does_not_stop_is_killed(tmp_path: Any, before: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A bpftrace that ignores SIGINT and never exits: killed once the time and the grace
    are up, and the call returns."""
    from kata_top.collectors import droptrace

    fake = tmp_path / "bpftrace"
    fake.write_text("#!/bin/sh\ntrap '' INT\n"
                    "echo '{\"type\": \"attached_probes\", \"data\": {\"probes\": 2}}'\n"
                    "exec sleep 600\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(droptrace, "EXIT_GRACE", 0.5)
    pids: list[int] = []
    t0 = time.monotonic()
    raw = droptrace.run(1, on_started=pids.append)
    assert time.monotonic() - t0 < 30
    assert raw.counts == () and not raw.interrupted
    assert not os.path.exists(f"/proc/{pids[0]}")
    assert tracefs_mounts() == before[2]
