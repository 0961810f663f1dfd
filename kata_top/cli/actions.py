"""`kata-top redirect add|remove` and `kata-top ratelimit set|clear`: the CLI of kata_top.actions.

Exit 0: done, or already so (says which). 1: refused or failed (and rolled back). 2: usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from kata_top.cli.common import (
    EXIT_USAGE,
    RawDescriptionHelpFormatter,
    fail,
    node_options,
    warn_unfinished,
)
from kata_top.settings import audit_log_path

EPILOG = """\
Every change is planned from fresh state first and shown as the equivalent tc/ip commands;
on a terminal kata-top asks before applying (--yes skips the question, --dry-run only
prints). Steps apply all-or-nothing: a failure undoes the earlier steps. Applied actions are
appended to the audit log: {log}"""


def _shared(p: argparse.ArgumentParser) -> None:
    node_options(p, top=False)
    p.add_argument("sandbox", metavar="SANDBOX", help="id, unique id prefix, or ns/pod")
    p.add_argument("--yes", action="store_true", help="apply without asking")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def add_redirect_arguments(red: argparse.ArgumentParser) -> None:
    epilog = EPILOG.format(log=audit_log_path())
    red.description = "in = eth0 → tap0_kata (into the VM), out = tap0_kata → eth0."
    red.epilog = epilog
    red.formatter_class = RawDescriptionHelpFormatter
    rsub = red.add_subparsers(dest="op", metavar="{add,remove}", required=True)
    for op, text in (("add", "restore a redirect as Kata makes it"),
                     ("remove", "take a redirect away (cuts the VM off that way)")):
        p = rsub.add_parser(op, help=text, epilog=epilog,
                            formatter_class=RawDescriptionHelpFormatter)
        _shared(p)
        p.add_argument("--direction", default="both", choices=("in", "out", "both"))


def add_ratelimit_arguments(rl: argparse.ArgumentParser) -> None:
    epilog = EPILOG.format(log=audit_log_path())
    rl.description = ("Kata's shape: htb 1: root default 2, classes 1:1 and 1:2, rate = ceil; "
                      "in on tap0_kata, out on eth0 (or an ifb).")
    rl.epilog = epilog
    rl.formatter_class = RawDescriptionHelpFormatter
    lsub = rl.add_subparsers(dest="op", metavar="{set,clear}", required=True)
    st = lsub.add_parser("set", help="set a limit (50mbit, 500kbit, 1gbit, or bits/s)",
                         epilog=epilog, formatter_class=RawDescriptionHelpFormatter)
    _shared(st)
    st.add_argument("--in", dest="rate_in", metavar="RATE", help="into the VM")
    st.add_argument("--out", dest="rate_out", metavar="RATE", help="out of the VM")
    cl = lsub.add_parser("clear", help="remove a limit", epilog=epilog,
                         formatter_class=RawDescriptionHelpFormatter)
    _shared(cl)
    cl.add_argument("--direction", default="both", choices=("in", "out", "both"))


def _usage(msg: str) -> int:
    return fail("", msg, EXIT_USAGE)


def run(args: argparse.Namespace) -> int:
    from kata_top import actions
    from kata_top.formats.terminal import for_terminal
    from kata_top.model import Direction
    from kata_top.requests import ActionRequest, RateLimitRequest, RedirectRequest
    from kata_top.units import parse_rate

    rates: dict[Direction, int | None] = {}
    if args.cmd == "ratelimit" and args.op == "set":
        if not args.rate_in and not args.rate_out:
            return _usage("ratelimit set: give --in RATE and/or --out RATE")
        given: tuple[tuple[Direction, str | None], ...] = (("in", args.rate_in),
                                                            ("out", args.rate_out))
        for d, raw in given:
            if raw is None:
                continue
            try:
                rates[d] = parse_rate(raw)
            except ValueError as exc:
                return _usage(f"ratelimit set: --{d}: {exc}")
    elif args.cmd == "ratelimit":
        both: tuple[Direction, ...] = ("in", "out")
        rates = {d: None for d in both if args.direction in ("both", d)}
    if not args.dry_run:
        from kata_top.actions.apply import refuse_if_read_only

        try:
            refuse_if_read_only()
        except actions.ActionError as exc:
            return fail("", str(exc), 1)
    if os.geteuid() != 0 and not args.dry_run:
        print("kata-top: changing tc state needs root (CAP_NET_ADMIN in the sandbox's "
              "namespace); try --dry-run to see the plan", file=sys.stderr)
        return 1
    warn_unfinished()
    try:
        request: ActionRequest = RedirectRequest(args.sandbox, args.op, args.direction) \
            if args.cmd == "redirect" else RateLimitRequest(args.sandbox, rates)
        plan = actions.plan_request(args.run_root, request)
    except actions.ActionError as exc:
        print(for_terminal(f"kata-top: {exc}"), file=sys.stderr)
        return 1
    if plan.noop:
        print(for_terminal(plan.noop + " (already so)"))
        return 0
    stop = show_and_confirm(f"plan: {plan.title}", plan.commands(), args.dry_run, args.yes)
    if stop is not None:
        return stop
    try:
        outcome = actions.execute(plan)
    except actions.ActionError as exc:
        print(for_terminal(f"kata-top: {exc}"), file=sys.stderr)
        return 1
    print(for_terminal(outcome.message), file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1


def show_and_confirm(heading: str, commands: list[str], dry_run: bool, yes: bool) -> int | None:
    """Print a plan and its commands, then stop (the exit code) on --dry-run, without a
    terminal to confirm on, or when the operator says no; None: go ahead and apply."""
    from kata_top.formats.terminal import for_terminal

    print(for_terminal(heading))
    for cmd in commands:
        print(for_terminal(f"  {cmd}"))
    if dry_run:
        print("dry run: nothing changed")
        return 0
    if yes:
        return None
    if not sys.stdin.isatty():
        return fail("", "not a terminal, so nobody can confirm; pass --yes to apply", 1)
    if input("apply? [y/N] ").strip().lower() not in ("y", "yes"):
        print("not applied")
        return 1
    return None
