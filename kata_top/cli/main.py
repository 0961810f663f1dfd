"""`kata-top [options] [COMMAND]`: the parser and the dispatch to one command module."""
# PYTHON_ARGCOMPLETE_OK

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # not `typing`'s: importing typing is ~5 ms of a warm answer
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

# argparse and the shared options are imported when the parser is built: a warm answer
# (kata_top/cli/fast.py) comes before that and needs neither

DESCRIPTION = """\
kata-top: one screen for a node running Kata Containers — sandboxes, their network namespace,
veth/tap pair, tc mirred redirects with hit counters, qdiscs and rate limits, the QEMU VMM and
virtiofsd. Read-only unless a write command or --write is given."""

EPILOG = """\
commands:
  (none)      open the dashboard            kata-top --run-root /run/kata-top-lab
  snapshot    one collection, table/JSON    kata-top snapshot --json | jq .
              or Prometheus text            kata-top snapshot --prometheus --output k.prom
  check       diagnose the node, exit 0/1/2 kata-top check --sandbox default/web-0
  serve       exporter for Prometheus       kata-top serve --listen 127.0.0.1:9712
  fleet       every node, from Prometheus   kata-top fleet --prometheus http://prom:9090
  events      what changed, when           kata-top events --since 10m
  drops       where packets die, and why   kata-top drops default/web-0 --seconds 10
  redirect    add/remove a tc redirect      kata-top redirect add web-0 --direction out
  ratelimit   set/clear Kata's HTB limit    kata-top ratelimit set web-0 --in 50mbit
  lab         a Kata-like node to watch     kata-top lab up
  completion  shell completion script       eval "$(kata-top completion bash)"

exit codes: 0 ok; 1 findings (warning/critical) or an action refused; 2 usage, or the command
could not run; 3 `snapshot` not run as root (other namespaces may be missing); 130 Ctrl-C.

environment: KATA_TOP_RUN_ROOT (default run root), KATA_TOP_CONFIG (config file path),
NO_COLOR. Logs: --log-file (default under $XDG_STATE_HOME/kata-top), --debug."""

# command -> module with HELP, add_arguments(parser) and run(args) -> int
COMMANDS: dict[str, str] = {
    "snapshot": "kata_top.cli.snapshot",
    "check": "kata_top.cli.check",
    "serve": "kata_top.cli.serve",
    "redirect": "kata_top.cli.redirect",
    "ratelimit": "kata_top.cli.ratelimit",
    "actions": "kata_top.cli.audit",
    "lab": "kata_top.lab.cli",
    "completion": "kata_top.cli.completion",
    "fleet": "kata_top.cli.fleet",
    "events": "kata_top.cli.events",
    "drops": "kata_top.cli.drops",
}
SHORT_HELP: dict[str, str] = {
    "snapshot": "collect once (or --watch) and print",
    "check": "diagnose host and sandboxes",
    "serve": "HTTP exporter: /metrics for Prometheus, /api/v1/snapshot, /healthz",
    "redirect": "add or remove Kata's tc mirred redirects",
    "ratelimit": "set or clear Kata's HTB rate limits",
    "actions": "the audit log: kata-top's changes; finish or roll back an unfinished one",
    "lab": "build a Kata-like node to watch (namespaces, tc, QEMU)",
    "completion": "print the bash or zsh completion script",
    "fleet": "every Kata node at once, from Prometheus (console, --json, check)",
    "events": "what changed, when: the node's events (journal, or --follow live)",
    "drops": "where and why packets die: kernel drop reasons per sandbox (bpftrace)",
}


# commands that read once and exit: their start is most of their cost
ONE_SHOT = frozenset({"snapshot", "check"})


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is one), without parsing."""
    return next((a for a in argv if a in COMMANDS), None)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The whole parser; only the chosen command's subparser gets its arguments (and its
    module imported), the others show their one-line help."""
    import argparse
    import importlib

    from kata_top import __version__
    from kata_top.cli.common import HelpFormatter, RawDescriptionHelpFormatter, node_options

    p = argparse.ArgumentParser(prog="kata-top", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"kata-top {__version__}")
    node_options(p, top=True)
    p.add_argument("--refresh", type=float, default=None, metavar="SECONDS",
                   help="dashboard refresh interval (default 1)")
    p.add_argument("--theme", default=None, help="dark, light, high-contrast or terminal")
    p.add_argument("--write", action="store_true",
                   help="allow the dashboard to change tc state (asks before each change)")
    p.add_argument("--replay", metavar="FILE",
                   help="play a recording from `snapshot --watch` instead of the live node")
    p.add_argument("--remote", metavar="URL",
                   help="watch another node through its `kata-top serve` (read-only), e.g. "
                        "http://node-7:9712")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="with --remote: the most one request to the node may take, all of "
                        "it (default 10)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    chosen = _chosen(argv)
    completing = "_ARGCOMPLETE" in os.environ  # the shell asks: every parser, in full
    for name, module in COMMANDS.items():
        sp = sub.add_parser(name, help=SHORT_HELP[name], formatter_class=HelpFormatter)
        if name == chosen or completing:
            importlib.import_module(module).add_arguments(sp)
    if completing:
        _attach_completers(p)
    return p


def _attach_completers(parser: argparse.ArgumentParser) -> None:
    """Sandbox arguments complete from the run root (argcomplete reads `.completer`)."""
    import argparse

    from kata_top.cli.completion import sandbox_names

    for action in parser._actions:  # argparse has no public walk of its actions
        if action.dest == "sandbox":
            action.completer = sandbox_names  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                _attach_completers(sp)


# The cyclic garbage collector, tuned for a tool whose every cycle allocates a new immutable
# model and drops the last (freed by reference counting; the model holds no cycles): at the
# default (700, 10, 10) collector passes over a 1,000-sandbox model cost a third of each
# snapshot's CPU (bench/scale.py); this makes them rare.
GC_THRESHOLDS = (50_000, 20, 20)


def main(argv: list[str] | None = None) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["snapshot"], ["check"]):
        from kata_top.cli.fast import answer

        try:
            warm = answer(argv)  # a running serve's last collection, before any parsing
        except KeyboardInterrupt:
            return 130  # EXIT_INTERRUPTED
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if warm is not None:
            return warm
    parser = build_parser(argv)
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)  # answers the shell and exits
    args = parser.parse_args(argv)
    from kata_top.logs import setup_logging

    # one-shot readers set logging up only if they log (kata_top/logs.py)
    setup_logging(getattr(args, "log_file", None), getattr(args, "debug", False),
                  defer=args.cmd in ONE_SHOT)
    try:
        if args.cmd:
            import importlib

            code: int = importlib.import_module(COMMANDS[args.cmd]).run(args)
            return code
        from kata_top.cli.dashboard import run as run_dashboard

        return run_dashboard(args)
    except KeyboardInterrupt:
        from kata_top.cli.common import EXIT_INTERRUPTED

        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `kata-top snapshot | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
