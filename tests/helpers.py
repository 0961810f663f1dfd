"""Helpers shared by the tests (fixtures live in conftest.py; everything else here).

Tests are split mechanically: `tests/unit/` needs no root, no lab and no QEMU and runs in
seconds; `tests/lab/` builds real namespaces, taps, tc and QEMU under a test-only prefix
(marked `lab` by tests/conftest.py, whatever the file says). A unit test that calls
need_root() fails, telling its author to move it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")
IN_CI = os.environ.get("CI") == "true"
# Short: run roots are /run/PREFIX… and QEMU sockets under them must fit in 107 bytes. Five
# digits always, so no run's prefix is the start of another's.
TEST_PREFIX = f"ktt{os.getpid() % 100000:05d}"
# Set by tests/unit/conftest.py while a unit test runs.
UNIT = {"running": False}


def child_pids() -> set[str]:
    """This process's children (a forked helper left behind would be one)."""
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return set(f.read().split())


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's laptop without `reason`; fail under CI, where it must be met."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def need_root() -> None:
    if UNIT["running"]:
        pytest.fail("a unit test needs root: move it to tests/lab/")
    require(os.geteuid() == 0, "needs root (network namespaces)")


def need_qemu() -> None:
    need_root()
    require(shutil.which("qemu-system-x86_64") is not None, "needs qemu-system-x86_64")


def make_layout(tag: str) -> Layout:
    # Short on purpose: QEMU's socket paths under the root must fit in 107 bytes.
    return Layout(run_root=f"/run/{TEST_PREFIX}{tag}", prefix=f"{TEST_PREFIX}{tag}")


@contextmanager
def running_lab(tag: str, opts: build.UpOptions) -> Iterator[tuple[Layout, Manifest]]:
    """A lab under the test prefix, taken down whatever happens in the body."""
    layout = make_layout(tag)
    build.down(layout)
    try:
        yield layout, build.up(layout, opts)
    finally:
        build.down(layout)


def ns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
