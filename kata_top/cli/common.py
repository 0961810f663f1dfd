"""What every command shares: exit codes, the node options, the engine they build.

Exit codes (the same for every headless command, documented in `kata-top --help`):
0 ok; 1 findings worse than info, or an action refused/failed; 2 usage or the command could not
run; 3 `snapshot` ran but not as root (parts of the node may be missing from its output).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kata_top.engine import Engine
    from kata_top.model import Snapshot

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


def engine_for(args: argparse.Namespace, vmm_refresh_s: float = 0.0,
               one_shot: bool = False) -> Engine:
    from kata_top.engine import Engine, EngineOptions
    from kata_top.settings import Settings

    qmp_primary = args.qmp_primary if args.qmp_primary is not None else \
        Settings.load().qmp_primary
    return Engine(EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                                vmm_refresh_s=vmm_refresh_s, one_shot=one_shot))


def narrow(snap: Snapshot, query: str | None) -> Snapshot:
    """The snapshot with only the sandbox `query` names (SelectError when none or several)."""
    if not query:
        return snap
    from kata_top.select import resolve

    return replace(snap, sandboxes=(resolve(snap.sandboxes, query),))
