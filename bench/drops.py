"""What a drop trace costs the node: `kata-top drops` (bpftrace on skb:kfree_skb) while N
sandboxes take traffic that is dropped, against the same traffic with no trace.

The lab's taps have no VMM on them (no carrier), so every packet the node sends to a
sandbox dies at its eth0's tc mirred (TC_INGRESS): the drop rate is the send rate, and
each drop runs the trace's BPF program once. Measured, alternating, `--rounds` times:

- the node's CPU (all cores, /proc/stat) over a 10 s window of traffic alone, and over the
  10 s the trace is attached with the same traffic;
- bpftrace's own CPU (its start: parsing BTF, loading, printing; getrusage of children);
- the drops the trace counted in the lab's namespaces, and the CPU per dropped packet: the
  sending thread's CPU time per packet (its syscalls and the softirq work they run, where
  the BPF program runs) traced minus untraced — robust to the rest of a shared machine,
  which the node's busy time is not.

Run as root: python3 bench/drops.py [--sandboxes 200] [--pps 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kata_top.collectors import droptrace, netns  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbdrops", prefix="ktbdrops")
WINDOW = 10


def busy_seconds() -> float:
    """CPU time the node spent not idle, all cores (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")


class Sender(threading.Thread):
    """UDP from the node to every sandbox, `pps` in all, until stopped."""

    def __init__(self, ips: list[str], pps: int) -> None:
        super().__init__(daemon=True)
        self.ips, self.pps, self.sent = ips, pps, 0
        self.cpu = 0.0  # this thread's CPU time: its sends and the softirq work they run
        self.stop = threading.Event()

    def run(self) -> None:
        s = netns.run_in(f"/run/netns/{LAYOUT.node_ns}",
                         lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.setblocking(False)
        payload, per_tick, i = bytes(64), max(1, self.pps // 100), 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            for _ in range(per_tick):
                try:
                    s.sendto(payload, (self.ips[i % len(self.ips)], 9))
                    self.sent += 1
                except OSError:
                    pass
                i += 1
            self.cpu = time.thread_time()
            time.sleep(max(0.0, 0.01 - (time.monotonic() - t0)))
        s.close()


def untraced(sender: Sender) -> tuple[float, float]:
    """(node busy s, sender CPU s per packet) over WINDOW s of traffic alone."""
    b0, c0, n0 = busy_seconds(), sender.cpu, sender.sent
    time.sleep(WINDOW)
    return busy_seconds() - b0, (sender.cpu - c0) / max(1, sender.sent - n0)


def traced(sender: Sender, inodes: set[int]) -> tuple[float, float, float, float]:
    """(node busy s scaled to WINDOW, sender CPU s per packet, the lab's drops per second
    of the kernel's window, bpftrace's own CPU s) for one trace of WINDOW s."""
    marks: dict[str, tuple[float, float, int]] = {}

    def progress(left: float, total: float) -> None:
        now = (busy_seconds(), sender.cpu, sender.sent)
        marks.setdefault("start", now)
        marks["end"] = now

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    raw = droptrace.run(WINDOW, progress=progress)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    drops = sum(c.count for c in raw.counts if c.netns_inode in inodes)
    (b0, c0, n0), (b1, c1, n1) = marks["start"], marks["end"]
    span = max(0.1, raw.traced_seconds - 0.25)  # progress is sampled every 0.25 s
    return (b1 - b0) * WINDOW / span, (c1 - c0) / max(1, n1 - n0), \
        drops / max(0.1, raw.traced_seconds), own


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--pps", type=int, default=20000, help="packets/s to all sandboxes")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    build.down(LAYOUT)
    man = build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False,
                                           scenario="plain"))
    sender = Sender([s.spec.ip for s in man.sandboxes], args.pps)
    inodes = {os.stat(LAYOUT.netns_path(s.spec)).st_ino for s in man.sandboxes}
    base: list[float] = []
    during: list[float] = []
    per_drop: list[float] = []
    own: list[float] = []
    drops: list[float] = []
    try:
        sender.start()
        time.sleep(2)
        for _ in range(args.rounds):
            b, cpu_plain = untraced(sender)
            t, cpu_traced, n, o = traced(sender, inodes)
            base.append(b)
            during.append(t)
            drops.append(n)
            own.append(o)
            per_drop.append((cpu_traced - cpu_plain) * 1e9)
    finally:
        sender.stop.set()
        sender.join()
        build.down(LAYOUT)
    cores = os.cpu_count() or 1
    med = statistics.median
    print(f"drops bench: {args.sandboxes} sandboxes, {args.pps} packets/s sent (all dropped "
          f"at eth0's mirred, no VMM), {cores} cores, {args.rounds} rounds, "
          f"{WINDOW} s windows, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"  node CPU, traffic alone:      {med(base) / WINDOW * 100:6.1f}% of one core "
          f"(rounds: {', '.join(f'{b / WINDOW * 100:.1f}' for b in base)})")
    print(f"  node CPU, traffic + trace:    {med(during) / WINDOW * 100:6.1f}% of one core "
          f"(rounds: {', '.join(f'{d / WINDOW * 100:.1f}' for d in during)})")
    print(f"  drops counted by the trace:   {med(drops):8.0f}/s "
          f"(rounds: {', '.join(f'{d:.0f}' for d in drops)})")
    print(f"  CPU per dropped packet:       {med(per_drop):8.0f} ns (sender's CPU/packet, traced "
          f"− untraced; "
          f"rounds: {', '.join(f'{p:.0f}' for p in per_drop)})")
    print(f"  bpftrace's own CPU per trace: {med(own):8.2f} s (start: BTF, load; end: maps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
