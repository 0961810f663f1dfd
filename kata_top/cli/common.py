"""What every command shares: exit codes, the node options, the engine they build.

Exit codes (the same for every headless command, documented in `kata-top --help`):
0 ok; 1 findings worse than info, or an action refused/failed; 2 usage or the command could not
run; 3 `snapshot` ran but not as root (parts of the node may be missing from its output).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from msgspec.structs import replace

if TYPE_CHECKING:
    from kata_top.engine import EngineOptions
    from kata_top.model import Snapshot
    from kata_top.pipeline import Pipeline


_help_width: int | None = None


def help_width() -> int:
    """The terminal's width as argparse would ask it (COLUMNS, then the terminal, else 80),
    once per process: argparse imports shutil for it whenever it builds a formatter, which
    it does for every argument added, and a one-shot command's start is most of its run."""
    global _help_width
    if _help_width is None:
        try:
            _help_width = int(os.environ["COLUMNS"])
        except (KeyError, ValueError):
            try:
                _help_width = os.get_terminal_size(sys.__stdout__.fileno()).columns \
                    if sys.__stdout__ is not None else 80
            except (OSError, ValueError):
                _help_width = 80
        _help_width = _help_width or 80
    return _help_width


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, with the width asked once (help_width)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         help_width() - 2 if width is None else width)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse's, with the width asked once (help_width)."""


EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_NOT_ROOT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


def node_options(p: argparse.ArgumentParser, top: bool) -> None:
    """--run-root and --qmp-primary, on the top parser and on each node command.

    On subcommands the defaults are SUPPRESS: `kata-top --run-root X snapshot` must keep X
    instead of having the subcommand's default overwrite it."""
    p.add_argument("--run-root", default=os.environ.get("KATA_TOP_RUN_ROOT", "/run") if top
                   else argparse.SUPPRESS,
                   help="where Kata's vc/ and kata/ state trees live (default /run; the lab: "
                        "/run/kata-top-lab)")
    p.add_argument("--qmp-primary", action="store_true",
                   default=None if top else argparse.SUPPRESS,
                   help="also ask Kata's own qmp.sock (short deadline; reports `busy` when the "
                        "runtime holds it). Off by default: it can stall the runtime")
    log_options(p, top)


def log_options(p: argparse.ArgumentParser, top: bool) -> None:
    """--log-file and --debug (before or after the command, like --run-root)."""
    p.add_argument("--log-file", metavar="FILE", default=None if top else argparse.SUPPRESS,
                   help="where to log (default: kata-top.log under $XDG_STATE_HOME/kata-top, "
                        "or /var/log/kata-top as root)")
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="log at debug level")


def fail(cmd: str, message: str, code: int = EXIT_USAGE) -> int:
    """One line on stderr, prefixed with the command, and the exit code to return."""
    from kata_top.formats.terminal import for_terminal

    line = f"kata-top {cmd}: {message}" if cmd else f"kata-top: {message}"
    print(for_terminal(line), file=sys.stderr)
    return code


def engine_options(args: argparse.Namespace, vmm_refresh_s: float = 0.0,
                   one_shot: bool = False, read_workers: int = 0) -> EngineOptions:
    from kata_top.engine import EngineOptions
    from kata_top.settings import Settings

    qmp_primary = args.qmp_primary if args.qmp_primary is not None else \
        Settings.load().qmp_primary
    return EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                         vmm_refresh_s=vmm_refresh_s, one_shot=one_shot,
                         read_workers=read_workers)


def pipeline_for(args: argparse.Namespace, vmm_refresh_s: float = 0.0, one_shot: bool = False,
                 read_workers: int = 0, host: bool = True, events: bool = True) -> Pipeline:
    """The command's pipeline (kata_top/pipeline.py). host: with the host's findings;
    events: with what changed since the last snapshot."""
    from kata_top.pipeline import HOST_PROBE_EVERY_S, Pipeline

    return Pipeline(engine_options(args, vmm_refresh_s, one_shot, read_workers),
                    host_every_s=HOST_PROBE_EVERY_S if host else None, events=events)


def narrow(snap: Snapshot, query: str | None) -> Snapshot:
    """The snapshot with only the sandbox `query` names (SelectError when none or several)."""
    if not query:
        return snap
    from kata_top.select import resolve

    return replace(snap, sandboxes=(resolve(snap.sandboxes, query),))


def warn_unfinished() -> None:
    """A change of kata-top's left unfinished on this node (killed mid-way: an intent in the
    audit log without an outcome) is said first, on stderr, by every command that reads or
    writes the audit log."""
    from kata_top.actions.audit import unfinished_warning
    from kata_top.formats.terminal import for_terminal

    warning = unfinished_warning()
    if warning:
        print(for_terminal(f"kata-top: warning: {warning}"), file=sys.stderr)
