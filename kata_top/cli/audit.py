"""`kata-top actions`: the changes kata-top made on this node (its audit log), newest last,
and any change a kill or a full disk left unfinished (an intent without an outcome), with the
commands that finish it or roll it back. Exit 0; 1 when a change is unfinished (or a finish
or rollback was refused or failed); 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from kata_top.cli.common import fail, node_options

HELP = "the audit log: kata-top's changes, and unfinished ones to finish or roll back"
SHOWN = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[0].replace("\n", " ") if __doc__ else None
    node_options(p, top=False)
    p.add_argument("--json", action="store_true", help="the entries as JSON lines")
    sub = p.add_subparsers(dest="op", metavar="{finish,rollback}")
    for op, text in (("finish", "apply the rest of an unfinished change"),
                     ("rollback", "put back what was there before an unfinished change")):
        sp = sub.add_parser(op, help=text)
        node_options(sp, top=False)
        sp.add_argument("id", metavar="ID", help="the unfinished change's id (a prefix will do)")
        sp.add_argument("--yes", action="store_true", help="apply without asking")
        sp.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def _line(e: dict[str, Any]) -> str:
    state = "ok" if e.get("ok") else "FAILED"
    return (f"{e.get('time', '?')}  {state:<6} {e.get('pod') or e.get('sandbox')}  "
            f"{e.get('operation')}: {e.get('result')}")


def run(args: argparse.Namespace) -> int:
    from kata_top.actions.audit import read_entries, unfinished
    from kata_top.formats.terminal import for_terminal
    from kata_top.settings import audit_log_path

    path = audit_log_path()
    if getattr(args, "op", None):
        return _resolve(args, path)
    entries = read_entries(path)
    left = unfinished(path)
    if args.json:
        import json

        for e in entries:
            print(json.dumps(e))
        return 1 if left else 0
    done = [e for e in entries if e.get("phase") != "intent"][-SHOWN:]
    if not entries:
        print(for_terminal(f"no actions in {path}"))
    for e in done:
        print(for_terminal(_line(e)))
    for e in left:
        print(for_terminal(f"UNFINISHED {str(e.get('id'))[:12]}  {e.get('time')}  "
                           f"{e.get('pod') or e.get('sandbox')}  {e.get('operation')} (user "
                           f"{e.get('user')}, pid {e.get('pid')}): started, never finished"))
        for cmd in e.get("plan") or ():
            print(for_terminal(f"  {cmd}"))
        print(for_terminal(f"  finish it:      kata-top actions finish {str(e.get('id'))[:12]}"))
        print(for_terminal(f"  roll it back:   kata-top actions rollback "
                           f"{str(e.get('id'))[:12]}"))
    return 1 if left else 0


def _resolve(args: argparse.Namespace, path: str) -> int:
    from kata_top import actions
    from kata_top.actions.resume import close_noop, find_intent, plan_resume
    from kata_top.cli.actions import show_and_confirm
    from kata_top.formats.terminal import for_terminal

    if os.geteuid() != 0 and not args.dry_run:
        return fail("actions", "changing tc state needs root; try --dry-run", 1)
    try:
        intent = find_intent(path, args.id)
        plan = plan_resume(args.run_root, intent, args.op)
        if plan.noop:
            print(for_terminal(f"{plan.noop} (already so)"))
            if args.dry_run:
                return 0
            close_noop(path, intent, args.op, plan.noop)
            print(f"marked {str(intent.get('id'))[:12]} resolved in {path}")
            return 0
        stop = show_and_confirm(f"plan ({args.op} {str(intent.get('id'))[:12]}): {plan.title}",
                                plan.commands(), args.dry_run, args.yes)
        if stop is not None:
            return stop
        outcome = actions.execute(plan, resolves=str(intent.get("id")))
    except actions.ActionError as exc:
        return fail("actions", str(exc), 1)
    print(for_terminal(outcome.message), file=sys.stdout if outcome.ok else sys.stderr)
    return 0 if outcome.ok else 1
