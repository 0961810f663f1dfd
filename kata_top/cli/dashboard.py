"""`kata-top` with no command: validate the options, build the source, start the Textual app.

Bad input (unknown theme, unreadable recording, missing run root) is one clear sentence and
exit 2 before any screen is drawn.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from kata_top.cli.common import EXIT_OK, EXIT_USAGE, fail

if TYPE_CHECKING:
    from kata_top.settings import Settings
    from kata_top.sources.base import Source


def _source(args: argparse.Namespace, settings: Settings) -> tuple[Source, str | None]:
    """The source the flags ask for, and a warning to show on the first screen."""
    if getattr(args, "remote", None):
        if args.write:
            raise ValueError("--write does not go with --remote: a remote node is read-only "
                             "from here (run the write command on that node)")
        if args.replay:
            raise ValueError("--remote and --replay each name where data comes from: one")
        from kata_top.sources.remote import RemoteSource

        if not 0 < args.timeout <= 300:
            raise ValueError("--timeout takes more than 0 and at most 300 seconds")
        return RemoteSource(args.remote, timeout=args.timeout), None
    if args.replay:
        if args.write:
            raise ValueError("--write does not go with --replay: a recording cannot change "
                             "anything")
        from kata_top.formats.jsonin import RecordingError
        from kata_top.formats.recording import open_recording
        from kata_top.sources.replay import ReplaySource

        try:
            recording = open_recording(args.replay)
        except RecordingError as exc:
            raise ValueError(str(exc)) from exc
        return ReplaySource(recording), recording.warning
    from kata_top.cli.hints import missing_run_root, not_root

    if not os.path.isdir(args.run_root):
        raise ValueError(missing_run_root(args.run_root))
    warning = not_root("")  # shown on the first screen: the dashboard still starts
    from kata_top.engine import (
        TC_BUSY_REFRESH_S,
        UNWATCHED_REFRESH_S,
        VMM_REFRESH_S,
        EngineOptions,
    )
    from kata_top.sources.live import LiveSource

    qmp_primary = args.qmp_primary if args.qmp_primary is not None else settings.qmp_primary
    # the rows on screen tell the source which sandboxes to read every cycle
    opts = EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                         vmm_refresh_s=VMM_REFRESH_S, tc_busy_refresh_s=TC_BUSY_REFRESH_S,
                         unwatched_refresh_s=UNWATCHED_REFRESH_S)
    return LiveSource(opts, write=args.write), warning


def run(args: argparse.Namespace) -> int:
    from kata_top import themes
    from kata_top.settings import REFRESH_MAX, REFRESH_MIN, Settings

    settings = Settings.load()
    try:
        theme = themes.resolve(args.theme or settings.theme)
    except ValueError as exc:
        return fail("", str(exc))
    refresh = args.refresh if args.refresh is not None else settings.refresh
    if not REFRESH_MIN <= refresh <= REFRESH_MAX:  # also rejects nan and inf
        return fail("", f"--refresh takes {REFRESH_MIN:g} to {REFRESH_MAX:g} seconds")
    try:
        source, warning = _source(args, settings)
    except ValueError as exc:
        return fail("", str(exc), EXIT_USAGE)
    if not sys.stdout.isatty():
        source.close()
        return fail("", "the dashboard needs a terminal; for scripts use `kata-top snapshot "
                        "--json` or `kata-top check`")
    from kata_top.widgets.app import KataTopApp

    app = KataTopApp(source, refresh=refresh, theme=theme, settings=settings,
                     replay_warning=warning)
    app.run()
    return EXIT_OK
