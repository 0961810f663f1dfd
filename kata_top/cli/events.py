"""`kata-top events`: what changed on this node, when — the flight recorder.

Without --follow, the journal that `kata-top serve` (the DaemonSet) and `events --follow`
keep; with --follow, collects itself and prints each change as it is seen (and journals it).
NDJSON with --json (schema kata-top/event/1), one line per event otherwise. Exit 0; 2 on bad
usage or a run root that does not exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from kata_top.cli.common import EXIT_OK, EXIT_USAGE, fail, node_options, warn_unfinished

HELP = "what changed, when: the node's events (journal, or --follow live)"
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    node_options(p, top=False)
    p.add_argument("--follow", action="store_true", help="collect and print changes live")
    p.add_argument("--json", action="store_true", help="NDJSON (kata-top/event/1)")
    p.add_argument("--since", metavar="WHEN", help="only events after 10m, 2h, 90 or an ISO "
                   "time ago (default: all the journal holds)")
    p.add_argument("--sandbox", metavar="X", help="only this sandbox (id, prefix or ns/pod)")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="with --follow: collection interval (default 1)")
    p.add_argument("--journal", metavar="FILE", help="the journal to read or write "
                   "(default: /var/lib/kata-top/events.ndjson as root)")
    from kata_top.warm import add_options

    add_options(p)


def _print(doc: dict[str, Any], as_json: bool) -> None:
    from kata_top.formats.terminal import for_terminal

    if as_json:
        print(json.dumps(doc), flush=True)
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(float(doc.get("at") or 0)))
    by = " [kata-top]" if doc.get("by") == "kata-top" else ""
    # A journal line is untrusted: any field may be null or of another type.
    severity, kind = str(doc.get("severity") or "?"), str(doc.get("kind") or "?")
    print(for_terminal(f"{stamp} {severity:<8} {kind:<19} {doc.get('summary') or ''}{by}"),
          flush=True)


def run(args: argparse.Namespace) -> int:
    from kata_top.events.journal import (
        JournalError,
        default_journal,
        event_line,
        read_journal,
    )
    from kata_top.events.query import event_matches, parse_since

    journal = args.journal or default_journal(args.run_root)
    root = os.path.normpath(args.run_root)
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        return fail("events", str(exc))
    if not args.follow:
        from kata_top import warm  # a running `kata-top serve`'s memory, when it reaches

        served = warm.events(args, since, journal)
        try:
            docs = [d for d in served if event_matches(d, None, None, args.run_root)
                    or event_matches(d, None, None, root)] if served is not None else \
                [d for d in read_journal(journal)
                 if event_matches(d, since, args.sandbox, args.run_root)
                 or event_matches(d, since, args.sandbox, root)]
        except JournalError as exc:
            return fail("events", str(exc))
        if served is None and not docs and not os.path.exists(journal):
            return fail("events", f"no journal at {journal}: `kata-top serve` keeps one (the "
                                  "DaemonSet runs it), or watch live with --follow", EXIT_OK)
        for d in docs:
            _print(d, args.json)
        return EXIT_OK
    if not os.path.isdir(args.run_root):
        from kata_top.cli.hints import missing_run_root

        return fail("events", missing_run_root(args.run_root))
    if not 0.05 <= args.interval <= 3600:
        return fail("events", "--interval takes 0.05 to 3600 seconds", EXIT_USAGE)
    from kata_top.engine import VMM_REFRESH_S, EngineOptions
    from kata_top.sources.live import LiveSource

    warn_unfinished()
    source = LiveSource(EngineOptions(run_root=args.run_root, vmm_refresh_s=VMM_REFRESH_S),
                        journal=journal)
    try:
        while True:
            started = time.monotonic()
            for e in source.next().events:
                doc = json.loads(event_line(e))
                if event_matches(doc, since, args.sandbox):
                    _print(doc, args.json)
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        source.close()
        sys.stdout.flush()
