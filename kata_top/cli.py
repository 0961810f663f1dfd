"""kata-top's command line. Imports stay lazy: the headless commands never load Textual."""

from __future__ import annotations

import argparse
import os
import sys

from kata_top.settings import audit_log_path

DESCRIPTION = """\
kata-top: one screen for a node running Kata Containers — sandboxes, their network namespace,
veth/tap pair, tc mirred redirects with hit counters, qdiscs and rate limits, the QEMU VMM and
virtiofsd. Read-only unless a write command or --write is given."""

EPILOG = f"""\
commands:
  (none)      open the dashboard            kata-top --run-root /run/kata-top-lab
  snapshot    one collection, table/JSON    kata-top snapshot --json | jq .
              or Prometheus text            kata-top snapshot --prometheus --output k.prom
  check       diagnose the node, exit 0/1/2 kata-top check --sandbox default/web-0
  redirect    add/remove a tc redirect      kata-top redirect add web-0 --direction out
  ratelimit   set/clear Kata's HTB limit    kata-top ratelimit set web-0 --in 50mbit
  lab         a Kata-like node to watch     kata-top lab up

environment: KATA_TOP_RUN_ROOT (default run root), KATA_TOP_CONFIG (config file path),
NO_COLOR. Write actions are appended to the audit log: {audit_log_path()}"""


def _options(p: argparse.ArgumentParser, top: bool) -> None:
    # On subcommands the defaults are SUPPRESS: `kata-top --run-root X snapshot` must keep X
    # instead of having the subcommand's default overwrite it.
    p.add_argument("--run-root", default=os.environ.get("KATA_TOP_RUN_ROOT", "/run") if top
                   else argparse.SUPPRESS,
                   help="where Kata's vc/ and kata/ state trees live (default /run; the lab: "
                        "/run/kata-top-lab)")
    p.add_argument("--qmp-primary", action="store_true",
                   default=None if top else argparse.SUPPRESS,
                   help="also ask Kata's own qmp.sock (short deadline; reports `busy` when the "
                        "runtime holds it). Off by default: it can stall the runtime")


def _common(p: argparse.ArgumentParser) -> None:
    _options(p, top=False)


def build_parser() -> argparse.ArgumentParser:
    from kata_top.lab import cli as lab_cli

    p = argparse.ArgumentParser(prog="kata-top", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(p, top=True)
    p.add_argument("--refresh", type=float, default=None, metavar="SECONDS",
                   help="dashboard refresh interval (default 1)")
    p.add_argument("--theme", default=None, help="dark, light, high-contrast or terminal")
    p.add_argument("--write", action="store_true",
                   help="allow the dashboard to change tc state (asks before each change)")
    p.add_argument("--replay", metavar="FILE",
                   help="play a recording from `snapshot --watch` instead of the live node")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    snap = sub.add_parser("snapshot", help="collect once (or --watch) and print",
                          description="Collect the node's Kata sandboxes headless.")
    _common(snap)
    fmt = snap.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document (schema "
                     "kata-top/snapshot/1)")
    fmt.add_argument("--prometheus", action="store_true",
                     help="Prometheus text format, e.g. for node_exporter's textfile collector")
    snap.add_argument("--output", metavar="FILE",
                      help="write to FILE atomically (temporary file + rename) instead of "
                           "stdout; not with --watch")
    snap.add_argument("--watch", type=float, metavar="SECONDS",
                      help="stream NDJSON with rates every SECONDS (a recording --replay plays)")
    snap.add_argument("--count", type=int, help="with --watch: stop after N snapshots")
    snap.add_argument("--sandbox", metavar="X", help="id, unique id prefix, or namespace/pod")

    chk = sub.add_parser("check", help="diagnose host and sandboxes",
                         description="Exit 0: nothing worse than info; 1: a warning or critical "
                                     "finding; 2: the check itself could not run.")
    _common(chk)
    chk.add_argument("--json", action="store_true")
    chk.add_argument("--sandbox", metavar="X")

    from kata_top.actions_cli import add_parsers as add_action_parsers

    add_action_parsers(sub, _common)
    lab_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.cmd == "lab":
            from kata_top.lab import cli as lab_cli

            return lab_cli.run(args)
        if args.cmd == "snapshot":
            from kata_top.headless import run_snapshot

            return run_snapshot(args)
        if args.cmd == "check":
            from kata_top.headless import run_check

            return run_check(args)
        if args.cmd in ("redirect", "ratelimit"):
            from kata_top.actions_cli import run as run_action

            return run_action(args)
        from kata_top.dashboard import run_dashboard

        return run_dashboard(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `kata-top snapshot | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
