"""`kata-top snapshot`: one collection (or a --watch stream) as text, JSON or Prometheus.

No Textual, no Rich, no lab: a test asserts which top-level modules this path imports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING

from kata_top.cli.common import (
    EXIT_NOT_ROOT,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    narrow,
    node_options,
    pipeline_for,
)

if TYPE_CHECKING:
    from kata_top.pipeline import Pipeline

HELP = "collect once (or --watch) and print"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Collect the node's Kata sandboxes headless. Exit 0; 2 on bad usage; 3 "
                     "when not run as root (the output may lack other namespaces).")
    node_options(p, top=False)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document (schema "
                     "kata-top/snapshot/1), indented on a terminal, compact into a pipe or "
                     "file (pipe it to `jq .` to read it indented)")
    fmt.add_argument("--prometheus", action="store_true",
                     help="Prometheus text format, e.g. for node_exporter's textfile collector "
                          "(`kata-top serve` is the long-running alternative)")
    p.add_argument("--output", metavar="FILE",
                   help="write to FILE atomically (temporary file + rename) instead of "
                        "stdout; not with --watch")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="stream NDJSON with rates every SECONDS (a recording --replay plays)")
    p.add_argument("--count", type=int, help="with --watch: stop after N snapshots")
    p.add_argument("--sandbox", metavar="X", help="id, unique id prefix, or namespace/pod")
    p.add_argument("--jobs", type=int, metavar="N", default=0,
                   help="processes that read the network namespaces of a single snapshot: "
                        "by default one per 100 sandboxes, at most 4 and one more than the "
                        "idle CPUs this process may use (affinity, cgroup quota, load "
                        "average) — on 2 idle CPUs a 1,000-pod node answers in about three "
                        "quarters of the time, for a tenth to a third more CPU; 1 reads in this "
                        "process only, the least CPU in all. Not with --watch (a stream reads "
                        "only what changed)")
    from kata_top.warm import add_options

    add_options(p)


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.watch is not None and not 0.05 <= args.watch <= 86400:  # nan and inf too
        return "--watch takes 0.05 to 86400 seconds"
    if args.count is not None and (args.count < 1 or args.watch is None):
        return "--count needs --watch and a number of at least 1"
    if args.output and args.watch is not None:
        return "--output writes one snapshot; --watch streams to stdout"
    if args.prometheus and args.watch is not None:
        return "--prometheus is one snapshot (scrape or cron it); --watch streams NDJSON"
    if not 0 <= args.jobs <= 64:
        return "--jobs takes 1 to 64 processes (0: as many as pay on this node)"
    if args.jobs and args.watch is not None:
        return "--jobs is for one snapshot; --watch reads only what changed, in one process"
    if not os.path.isdir(args.run_root):
        from kata_top.cli.hints import missing_run_root

        return missing_run_root(args.run_root)
    return None


def run(args: argparse.Namespace) -> int:
    from kata_top.select import SelectError

    problem = _usage_error(args)
    if problem:
        return fail("snapshot", problem)
    from kata_top import warm  # a running `kata-top serve`'s last collection, when fresh

    warm_code = warm.snapshot(args)
    if warm_code is not None:
        return warm_code
    from kata_top.cli.hints import not_kata_root, not_root

    for hint in (not_root("snapshot"), not_kata_root(args.run_root)):
        if hint:
            fail("snapshot", hint, 0)  # said once on stderr; the output still follows
    from kata_top.engine import VMM_REFRESH_S

    # A stream (--watch) re-asks VM monitors every few seconds, not every snapshot, and
    # carries what changed (events) and the host's findings, so --replay shows them; one
    # snapshot skips the host probe (it forks a scratch namespace: `check` judges the host).
    stream = args.watch is not None
    pipeline = pipeline_for(args, VMM_REFRESH_S if stream else 0.0, one_shot=not stream,
                            read_workers=args.jobs, host=stream, events=stream)
    try:
        code = _stream(args, pipeline) if stream else _once(args, pipeline)
    except SelectError as exc:
        return fail("snapshot", str(exc))
    finally:
        pipeline.close()
    if code != EXIT_OK:
        return code
    return EXIT_NOT_ROOT if os.geteuid() != 0 else EXIT_OK


def _once(args: argparse.Namespace, pipeline: Pipeline) -> int:
    # One collection: rates need two, and --watch streams them.
    snap = narrow(pipeline.next(), args.sandbox)
    if args.prometheus:
        from kata_top.formats import prometheus

        text = prometheus.render(snap)
    elif args.json:
        from kata_top.formats import jsonout

        # indented for a person reading a terminal
        human = not args.output and sys.stdout.isatty()
        text = jsonout.dumps(snap, indent=2 if human else None) + "\n"
    else:
        from kata_top.formats import textout
        from kata_top.formats.terminal import for_terminal

        text = for_terminal(textout.render(snap)) + "\n"
    if args.output:
        from kata_top.fsutil import write_atomically

        try:
            write_atomically(args.output, text)
        except OSError as exc:
            return fail("snapshot", f"cannot write {args.output}: {exc.strerror or exc}")
    elif args.json:
        _write_utf8(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _write_utf8(text: str) -> None:
    """JSON is UTF-8, whatever encoding the locale gives stdout (a stdout that is no file,
    as a caller's redirect_stdout gives, takes the text)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode())


def _stream(args: argparse.Namespace, pipeline: Pipeline) -> int:
    from kata_top.cli.common import warn_unfinished
    from kata_top.formats import jsonout

    warn_unfinished()  # a change of kata-top's left unfinished is said first
    n = 0
    while True:
        started = time.monotonic()
        snap = pipeline.next()
        _write_utf8(jsonout.dumps(narrow(snap, args.sandbox)) + "\n")
        sys.stdout.flush()
        n += 1
        if args.count is not None and n >= args.count:
            return EXIT_OK
        time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    return EXIT_USAGE  # not reached
