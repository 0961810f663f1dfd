"""`kata-top check`: findings for the host and every sandbox; the exit code says the worst."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from kata_top.cli.common import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, fail, narrow, node_options

if TYPE_CHECKING:
    from kata_top.engine import EngineOptions
    from kata_top.model import Snapshot

HELP = "diagnose host and sandboxes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Exit 0: nothing worse than info; 1: a warning or critical finding; 2: "
                     "the check itself could not run.")
    node_options(p, top=False)
    p.add_argument("--json", action="store_true", help="schema kata-top/check/1")
    p.add_argument("--sandbox", metavar="X", help="id, unique id prefix, or namespace/pod")
    from kata_top.warm import add_options

    add_options(p)


def check_snapshot(opts: EngineOptions, pause: float = 0.5) -> Snapshot:
    """What `check` judges: the pipeline's second snapshot, `pause` after the first (rate
    findings need both), with the sandboxes' findings and the host's."""
    from kata_top.pipeline import Pipeline

    pipeline = Pipeline(opts, events=False)
    try:
        pipeline.next()
        time.sleep(pause)
        return pipeline.next()
    finally:
        pipeline.close()


def check_document(snap: Snapshot) -> dict[str, object]:
    """The `kata-top/check/1` JSON of an annotated snapshot (also served at /api/v1/check)."""
    from kata_top.formats.jsonout import to_plain

    findings = list(snap.host_findings) + [f for sb in snap.sandboxes for f in sb.findings]
    return {"schema": "kata-top/check/1", "taken_at": snap.taken_at,
            "findings": [to_plain(f) for f in findings],
            "errors": [to_plain(e) for e in snap.errors]}


def run(args: argparse.Namespace) -> int:
    import os

    from kata_top.cli.common import engine_options
    from kata_top.cli.hints import missing_run_root, not_kata_root, not_root
    from kata_top.diagnose import render_findings, worst
    from kata_top.formats.terminal import for_terminal
    from kata_top.select import SelectError

    if not os.path.isdir(args.run_root):
        return fail("check", missing_run_root(args.run_root))
    from kata_top import warm  # a running `kata-top serve`'s last collection, when fresh

    warm_code = warm.check(args)
    if warm_code is not None:
        return warm_code
    for hint in (not_root("check"), not_kata_root(args.run_root)):
        if hint:
            fail("check", hint, 0)
    try:
        snap = narrow(check_snapshot(engine_options(args)), args.sandbox)
    except SelectError as exc:
        return fail("check", str(exc))
    except Exception as exc:
        return fail("check", f"the check could not run: {exc}", EXIT_USAGE)
    findings = list(snap.host_findings) + [f for sb in snap.sandboxes for f in sb.findings]
    if args.json:
        print(json.dumps(check_document(snap), indent=2))
    else:
        print(for_terminal(render_findings(snap, findings)))
    return EXIT_FINDINGS if worst(findings) in ("warning", "critical") else EXIT_OK
