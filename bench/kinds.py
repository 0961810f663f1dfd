"""One-shot snapshot over a node of every runtime x VMM, against a baseline commit.

Brings up the lab's `kinds` scenario (Go and runtime-rs, QEMU, Cloud Hypervisor, Firecracker,
Dragonball, l3forwarding; without guests) with `--sandboxes N`, then times
`kata-top snapshot --json` as installed (interpreter start included), this tree and
`--baseline REV` alternating round by round, and reports the medians and their ratio. The
baseline reads the same node as it can. Run as root:
python3 bench/kinds.py [--baseline REV] [--sandboxes 7] [--rounds 9] [--scenario kinds]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import CONSOLE_SCRIPT, checkout, installed_python
from kata_top.lab import build
from kata_top.lab.layout import Layout

LAYOUT = Layout(run_root="/run/ktbkinds", prefix="ktbkinds")


# each installed tree alone: a PYTHONPATH naming a checkout would put it before both
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def once(python: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root, "snapshot",
                    "--json"], check=True, stdout=subprocess.DEVNULL, cwd="/", env=ENV)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default="b6150cc")
    ap.add_argument("--sandboxes", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--scenario", default="kinds", help="kinds, or one kind (go-qemu, ...)")
    args = ap.parse_args()
    build.down(LAYOUT)
    try:
        build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, scenario=args.scenario,
                                         guest=False))
        with ExitStack() as stack:
            base_src = stack.enter_context(checkout(args.baseline))
            ours = stack.enter_context(installed_python())
            base = stack.enter_context(installed_python(base_src))
            once(ours), once(base)  # warm the page cache
            t_ours, t_base = [], []
            for _ in range(args.rounds):
                t_ours.append(once(ours))
                t_base.append(once(base))
        m_ours, m_base = statistics.median(t_ours), statistics.median(t_base)
        print(f"{args.scenario} node, {args.sandboxes} sandboxes, {args.rounds} rounds, "
              f"`kata-top snapshot --json` as installed (ms, median):")
        print(f"  this tree        {m_ours:8.1f}  (min {min(t_ours):.1f}, max {max(t_ours):.1f})")
        print(f"  {args.baseline:<16} {m_base:8.1f}  (min {min(t_base):.1f}, "
              f"max {max(t_base):.1f})")
        print(f"  ratio            {m_ours / m_base:8.2f}")
    finally:
        build.down(LAYOUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
