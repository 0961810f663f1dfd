"""Shared fixtures: real labs under a test-only prefix and run root, always taken down.

Tests that need root or QEMU skip only on a developer's machine; under CI (CI=true) a missing
prerequisite is a failure, so nothing is silently skipped there.
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

IN_CI = os.environ.get("CI") == "true"
# Snapshot tests must not depend on how far an animation got on a loaded machine.
os.environ["TEXTUAL_ANIMATIONS"] = "none"
TEST_PREFIX = f"kttest{os.getpid() % 100000}"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def need_root() -> None:
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


@pytest.fixture(scope="session")
def demo_lab() -> Iterator[tuple[Layout, Manifest]]:
    """The default demo mix with QEMU, shared read-only by the tests that only look."""
    need_qemu()
    with running_lab("d", build.UpOptions(sandboxes=10, scenario="demo")) as lab:
        yield lab


@pytest.fixture
def scratch_lab(request: pytest.FixtureRequest) -> Iterator[Layout]:
    """A lab of the test's own to break: the test calls build.up with what it needs."""
    need_root()
    layout = make_layout("s")
    build.down(layout)
    try:
        yield layout
    finally:
        build.down(layout)


def ns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever happened, no namespace of ours may outlive the run."""
    if os.geteuid() != 0:
        return
    left = [n for n in ns_names() if n.startswith(TEST_PREFIX)]
    for name in left:
        subprocess.run(["ip", "netns", "del", name], check=False)
    if left:
        print(f"\nWARNING: removed namespaces a test left behind: {left}")
        session.exitstatus = 1
