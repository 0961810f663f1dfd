"""`kata-top drops [SANDBOX]`: where and why the kernel drops packets, per sandbox and hop.

The one command that attaches to the kernel: bpftrace on `skb:kfree_skb` for a bounded time
(collectors/droptrace.py), nothing left attached after. Opt-in by being run.
"""

from __future__ import annotations

import argparse
import sys

from kata_top.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, fail, node_options

HELP = "trace where and why packets are dropped (bpftrace, time-boxed)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from kata_top.collectors.droptrace import DEFAULT_SECONDS, MAX_SECONDS

    p.description = ("Trace the kernel's drop reasons (tracepoint skb:kfree_skb, with bpftrace) "
                     "for a few seconds and say, per sandbox and hop (node veth, eth0, tc "
                     "mirred, tap, VMM), where packets die, why, and the fix. Needs root, "
                     "bpftrace and a kernel with BTF. Exit 0: traced; 2: could not trace; "
                     "130: stopped by Ctrl-C (what was counted is still printed).")
    node_options(p, top=False)
    p.add_argument("sandbox", nargs="?", metavar="SANDBOX",
                   help="id, unique id prefix, or namespace/pod (default: every sandbox)")
    p.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, metavar="N",
                   help=f"how long to trace, 1..{MAX_SECONDS} (default {DEFAULT_SECONDS})")
    p.add_argument("--json", action="store_true", help="schema kata-top/drops/1")


def _progress(tty: bool) -> object:
    shown = {"last": -1}

    def show(left: float, total: float) -> None:
        whole = int(left + 0.999)
        if whole == shown["last"]:
            return
        if tty:
            sys.stderr.write(f"\r\033[Ktracing drops: {whole} s left of {total:.0f} "
                             "(Ctrl-C stops and prints what was counted)")
            sys.stderr.flush()
        elif shown["last"] < 0:
            print(f"kata-top drops: tracing for {total:.0f} s", file=sys.stderr)
        shown["last"] = whole

    return show


def run(args: argparse.Namespace) -> int:
    from kata_top.collectors.droptrace import MAX_SECONDS, TraceBusy, TraceUnavailable
    from kata_top.drops.trace import trace
    from kata_top.formats.terminal import for_terminal
    from kata_top.select import SelectError

    if not 1 <= args.seconds <= MAX_SECONDS:
        return fail("drops", f"--seconds must be 1..{MAX_SECONDS} (got {args.seconds})")
    from kata_top.engine import EngineOptions
    from kata_top.pipeline import Pipeline

    # the sandboxes and their namespaces only: no VMM monitor is asked anything
    pipeline = Pipeline(EngineOptions(run_root=args.run_root, with_vmm=False, one_shot=True),
                        host_every_s=None, events=False)
    try:
        snap = pipeline.next()
    finally:
        pipeline.close()
    tty = sys.stderr.isatty()
    try:
        report = trace(snap, args.seconds, args.sandbox,
                       progress=_progress(tty))  # type: ignore[arg-type]
    except SelectError as exc:
        return fail("drops", str(exc))
    except (TraceUnavailable, TraceBusy) as exc:
        return fail("drops", str(exc), EXIT_USAGE)
    finally:
        if tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
    if args.json:
        from kata_top.formats.dropsout import render_json

        print(render_json(report))
    else:
        from kata_top.formats.dropsout import render_text

        print(for_terminal(render_text(report)))
    return EXIT_INTERRUPTED if report.interrupted else EXIT_OK
