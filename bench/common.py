"""What more than one benchmark needs: the shell-loop baseline and bytecode as installed."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shell_loop(namespaces: list[str]) -> None:
    """The loop an operator would write: per namespace `ip -s -j link`, `tc -s -j qdisc`
    and `tc -s -j filter` on eth0's and the tap's ingress, four iproute2 processes."""
    for ns in namespaces:
        for cmd in (["ip", "-s", "-j", "link", "show"], ["tc", "-s", "-j", "qdisc", "show"],
                    ["tc", "-s", "-j", "filter", "show", "dev", "eth0", "ingress"],
                    ["tc", "-s", "-j", "filter", "show", "dev", "tap0_kata", "ingress"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, check=True)


def compile_bytecode() -> None:
    """Bytecode as an install has it (pip compiles at install time). This tree may run with
    PYTHONDONTWRITEBYTECODE, and every `python -m kata_top` would then time the compiler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "kata_top", "collectors"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
