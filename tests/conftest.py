"""Fixtures, the unit/lab split and the leftover check.

Every test under tests/lab/ is marked `lab` here (so `-m "not lab"` or `tests/unit` runs the
fast half); a lab test skips only on a developer's machine without root or QEMU, never under
CI=true, where a missing prerequisite fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.helpers import TEST_PREFIX, make_layout, need_qemu, need_root, ns_names, running_lab

# Snapshot tests must not depend on how far an animation got on a loaded machine.
os.environ["TEXTUAL_ANIMATIONS"] = "none"
# Every serve a test starts (in this process or a child, which inherits the environment) puts
# its local socket here, never in the node's /run/kata-top; removed when the session ends,
# whatever happened.
SERVE_DIR = tempfile.mkdtemp(prefix=f"{TEST_PREFIX}-serve-")
os.environ["KATA_TOP_SERVE_DIR"] = SERVE_DIR
LAB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab") + os.sep


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).startswith(LAB_DIR):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def demo_lab() -> Iterator[tuple[Layout, Manifest]]:
    """The default demo mix with QEMU, shared read-only by the tests that only look."""
    need_qemu()
    with running_lab("d", build.UpOptions(sandboxes=10, scenario="demo")) as lab:
        yield lab


@pytest.fixture
def scratch_lab() -> Iterator[Layout]:
    """A lab of the test's own to break: the test calls build.up with what it needs."""
    need_root()
    layout = make_layout("s")
    build.down(layout)
    try:
        yield layout
    finally:
        build.down(layout)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever happened, no namespace or serve socket of ours may outlive the run."""
    shutil.rmtree(SERVE_DIR, ignore_errors=True)
    if os.geteuid() != 0:
        return
    left = [n for n in ns_names() if n.startswith(TEST_PREFIX)]
    for name in left:
        subprocess.run(["ip", "netns", "del", name], check=False)
    if left:
        print(f"\nWARNING: removed namespaces a test left behind: {left}")
        session.exitstatus = 1
