"""`kata-top snapshot` and `kata-top check`: the engine without any UI (no Textual, no Rich)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

from kata_top import jsonout, textout
from kata_top.engine import Engine, EngineOptions
from kata_top.model import Snapshot
from kata_top.rates import with_rates
from kata_top.select import SelectError, resolve

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_NOT_ROOT = 0, 1, 2, 3


def engine_for(args: argparse.Namespace) -> Engine:
    from kata_top.settings import Settings
    from kata_top.source import VMM_REFRESH_S

    qmp_primary = args.qmp_primary if args.qmp_primary is not None else \
        Settings.load().qmp_primary
    # A stream (--watch) re-asks VM monitors every few seconds, not every snapshot.
    watching = getattr(args, "watch", None) is not None
    return Engine(EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                                vmm_refresh_s=VMM_REFRESH_S if watching else 0.0))


def _narrow(snap: Snapshot, query: str | None) -> Snapshot:
    if not query:
        return snap
    sb = resolve(snap.sandboxes, query)
    return replace(snap, sandboxes=(sb,))


def write_atomically(path: str, text: str) -> None:
    """Readers (a scraper, a textfile collector) see the old file or the new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".kata-top-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run_snapshot(args: argparse.Namespace) -> int:
    if args.watch is not None and args.watch <= 0:
        print("kata-top snapshot: --watch takes a positive number of seconds", file=sys.stderr)
        return EXIT_USAGE
    if args.count is not None and (args.count < 1 or args.watch is None):
        print("kata-top snapshot: --count needs --watch and a number of at least 1",
              file=sys.stderr)
        return EXIT_USAGE
    if args.output and args.watch is not None:
        print("kata-top snapshot: --output writes one snapshot; --watch streams to stdout",
              file=sys.stderr)
        return EXIT_USAGE
    if args.prometheus and args.watch is not None:
        print("kata-top snapshot: --prometheus is one snapshot (scrape or cron it); --watch "
              "streams NDJSON", file=sys.stderr)
        return EXIT_USAGE
    if not os.path.isdir(args.run_root):
        print(f"kata-top snapshot: run root {args.run_root} does not exist", file=sys.stderr)
        return EXIT_USAGE
    engine = engine_for(args)
    try:
        from kata_top.diagnose import annotate

        if args.watch is None:
            # One collection: rates need two, and --watch streams them.
            snap = annotate(engine.collect())
            try:
                snap = _narrow(snap, args.sandbox)
            except SelectError as exc:
                print(f"kata-top snapshot: {exc}", file=sys.stderr)
                return EXIT_USAGE
            if args.prometheus:
                from kata_top import promout

                text = promout.render(snap)
            elif args.json:
                text = jsonout.dumps(snap, indent=2) + "\n"
            else:
                text = textout.render(snap) + "\n"
            if args.output:
                try:
                    write_atomically(args.output, text)
                except OSError as exc:
                    print(f"kata-top snapshot: cannot write {args.output}: "
                          f"{exc.strerror or exc}", file=sys.stderr)
                    return EXIT_USAGE
            else:
                sys.stdout.write(text)
        else:
            prev: Snapshot | None = None
            n = 0
            while True:
                started = time.monotonic()
                snap = annotate(with_rates(engine.collect(), prev), prev)
                prev = snap
                try:
                    out = _narrow(snap, args.sandbox)
                except SelectError as exc:
                    print(f"kata-top snapshot: {exc}", file=sys.stderr)
                    return EXIT_USAGE
                sys.stdout.write(jsonout.dumps(out) + "\n")
                sys.stdout.flush()
                n += 1
                if args.count is not None and n >= args.count:
                    break
                time.sleep(max(0.0, args.watch - (time.monotonic() - started)))
    finally:
        engine.close()
    return EXIT_NOT_ROOT if os.geteuid() != 0 else EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    from kata_top.diagnose import annotate, host_findings, worst

    try:
        engine = engine_for(args)
        try:
            first = engine.collect()
            time.sleep(0.5)
            snap = annotate(with_rates(engine.collect(), first))
        finally:
            engine.close()
        snap = replace(snap, host_findings=tuple(host_findings()))
        snap = _narrow(snap, args.sandbox)
    except SelectError as exc:
        print(f"kata-top check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        print(f"kata-top check: the check could not run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    findings = list(snap.host_findings) + [f for sb in snap.sandboxes for f in sb.findings]
    if args.json:
        doc = {"schema": "kata-top/check/1", "taken_at": snap.taken_at,
               "findings": [jsonout._convert(f) for f in findings],
               "errors": [jsonout._convert(e) for e in snap.errors]}
        print(json.dumps(doc, indent=2))
    else:
        from kata_top.diagnose import render_findings

        print(render_findings(snap, findings))
    return EXIT_FINDINGS if worst(findings) in ("warning", "critical") else EXIT_OK
