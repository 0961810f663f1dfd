"""Argument handling of `kata-top lab ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from kata_top.lab.layout import DEFAULT_PREFIX, DEFAULT_RUN_ROOT, Layout
from kata_top.lab.network import LabError
from kata_top.lab.scenario import SCENARIO_HELP, SCENARIOS

LAB_EPILOG = """\
The lab builds a Kata-shaped node out of real kernel objects: a node namespace with a bridge,
per sandbox a pod namespace with a veth (eth0), tap0_kata and Kata's tc redirects, a real QEMU
(-name sandbox-<id>, the tap passed as an fd), a real virtiofsd, a shim stand-in that holds
qmp.sock, and Kata's state files under <run-root>/vc and <run-root>/kata, each as Kata's
source writes it; the shim runs in the sandbox's OCI bundle (<run-root>/containerd/...).
Cloud Hypervisor and Firecracker are stand-ins serving their read-only API (micro_http's
rules); Dragonball runs inside the shim, as in runtime-rs.

examples:
  kata-top lab up                       the demo mix: every model and fault, 10 sandboxes,
                                        with booted guests that answer ping
  kata-top lab up --traffic             the same with a steady flow both ways
  kata-top lab up --sandboxes 200 --no-qemu --scenario plain
  kata-top --run-root /run/kata-top-lab watch the lab like a node
  kata-top lab traffic --seconds 30     make the counters move
  kata-top lab down                     remove everything the lab made

scenarios:
""" + "\n".join(f"  {k:<14} {v}" for k, v in SCENARIO_HELP.items())


HELP = "build a Kata-like node to watch (namespaces, tc, QEMU)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Real Kata-like sandboxes on any Linux machine (needs root)."
    p.epilog = LAB_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--run-root", default=os.environ.get("KATA_TOP_LAB_RUN_ROOT",
                                                        DEFAULT_RUN_ROOT),
                   help=f"where the lab writes its Kata state tree (default {DEFAULT_RUN_ROOT})")
    p.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help=f"name prefix of every namespace the lab makes (default {DEFAULT_PREFIX})")
    lab = p.add_subparsers(dest="lab_cmd", metavar="{up,down,status,traffic,screenshots}",
                           required=True)
    up = lab.add_parser("up", help="build the lab")
    up.add_argument("--sandboxes", type=int, default=10, help="how many (default 10)")
    up.add_argument("--scenario", default="demo", help=f"one of {', '.join(SCENARIOS)}")
    up.add_argument("--no-qemu", action="store_true",
                    help="namespaces, tc state and state files only (scale runs)")
    guest = up.add_mutually_exclusive_group()
    guest.add_argument("--guest", dest="guest", action="store_const", const=True,
                       help="require booted guests (fail if the guest kernel cannot be had)")
    guest.add_argument("--no-guest", dest="guest", action="store_const", const=False,
                       help="QEMU without a guest: only the direction into the VM moves")
    up.set_defaults(guest=None)
    up.add_argument("--accel", default="tcg", help="tcg (default) or kvm")
    up.add_argument("--traffic", action="store_true",
                    help="keep a gentle background flow going until `lab down`")
    lab.add_parser("down", help="remove everything the lab made (idempotent)")
    shots = lab.add_parser("screenshots", help="save the README's pictures (SVG) from the lab")
    shots.add_argument("--output", default="docs/images", help="directory (default docs/images)")
    st = lab.add_parser("status", help="list the lab's sandboxes")
    st.add_argument("--json", action="store_true")
    tr = lab.add_parser("traffic", help="send ping and UDP from the node to every sandbox")
    tr.add_argument("--seconds", type=float, default=10, help="how long; 0 = until stopped")
    tr.add_argument("--rate", type=int, default=100, help="UDP packets/s per sandbox")
    tr.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    try:
        layout = Layout(run_root=os.path.abspath(args.run_root), prefix=args.prefix)
        return _dispatch(args, layout)
    except (LabError, ValueError) as exc:
        print(f"kata-top lab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kata-top lab: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace, layout: Layout) -> int:
    from kata_top.lab import build

    if args.lab_cmd == "up":
        # Guests by default (both directions of every redirect carry traffic); when the guest
        # kernel cannot be had, say why in one line and come up without them.
        guest = bool(args.guest) and not args.no_qemu
        if args.guest is None and not args.no_qemu:
            from kata_top.lab.guest import prepare_guest

            try:
                prepare_guest()
                guest = True
            except (LabError, OSError) as exc:
                print(f"lab up: no guests ({exc}); QEMU runs without one, so only traffic "
                      "into the VMs moves", file=sys.stderr)
        opts = build.UpOptions(sandboxes=args.sandboxes, scenario=args.scenario,
                               qemu=not args.no_qemu, guest=guest, accel=args.accel,
                               traffic=args.traffic)
        man = build.up(layout, opts, progress=build.terminal_progress)
        print(f"lab up: {len(man.sandboxes)} sandboxes under {layout.run_root}; "
              f"watch it with: kata-top --run-root {layout.run_root}")
        return 0
    if args.lab_cmd == "screenshots":
        from kata_top.lab.manifest import Manifest
        from kata_top.lab.screenshots import take

        if Manifest.load(layout.run_root) is None:
            raise LabError(f"no lab at {layout.run_root}: sudo kata-top lab up first")
        for path in take(layout, args.output):
            print(f"wrote {path}")
        return 0
    if args.lab_cmd == "down":
        report = build.down(layout)
        print(report.sentence(layout.run_root))
        for problem in report.problems:
            print(f"  could not remove {problem}", file=sys.stderr)
        return 1 if report.problems else 0
    found = build.status(layout)
    if found is None:
        print(f"no lab at {layout.run_root}; start one with: kata-top lab up", file=sys.stderr)
        return 1
    man = found
    if args.lab_cmd == "status":
        from kata_top.collectors.procs import pid_alive

        rows = []
        for sb in man.sandboxes:
            d = sb.to_json()
            d["alive"] = {k: bool(v and pid_alive(v)) for k, v in d["pids"].items()}
            rows.append(d)
        if args.json:
            print(json.dumps({"run_root": man.run_root, "prefix": man.prefix,
                              "status": man.status, "options": man.options,
                              "sandboxes": rows}, indent=2))
            return 0
        print(f"lab {man.status} at {man.run_root} (prefix {man.prefix})")
        print(f"{'POD':<28} {'ID':<12} {'MODEL':<9} {'RT':<3} {'NETNS':<22} {'IP':<14} PIDS")
        for d in rows:
            pids = " ".join(f"{k}={v}{'' if d['alive'][k] else '(dead)'}"
                            for k, v in d["pids"].items() if v)
            print(f"{d['pod_namespace'] + '/' + d['pod_name']:<28} {d['id'][:12]:<12} "
                  f"{d['model']:<9} {d['runtime']:<3} {d['netns'] or '(node)':<22} "
                  f"{d['ip']:<14} {pids or '-'}")
        return 0
    # traffic
    from kata_top.lab import traffic

    ips = [sb.spec.ip for sb in man.sandboxes]
    if not args.quiet:
        what = "until interrupted" if args.seconds <= 0 else f"for {args.seconds:g} s"
        print(f"sending {args.rate} UDP packets/s and 2 pings/s to {len(ips)} sandboxes {what}")
    results = traffic.run(f"{man.prefix}-node", ips, args.seconds, args.rate)
    if not args.quiet:
        by_ip = {sb.spec.ip: sb for sb in man.sandboxes}
        for ip, r in results.items():
            sb = by_ip[ip]
            print(f"{sb.spec.pod_namespace + '/' + sb.spec.pod_name:<28} {ip:<14} "
                  f"udp {r.udp_sent:>6}  ping {r.ping_replies}/{r.pings_sent} replies")
    return 0
