"""`kata-top` with no command: validate the options, then start the Textual app.

Bad input (unknown theme, unreadable recording, missing run root) is one clear sentence and
exit 2 before any screen is drawn.
"""

from __future__ import annotations

import argparse
import os
import sys


def run_dashboard(args: argparse.Namespace) -> int:
    import themes
    from kata_top.settings import Settings

    settings = Settings.load()
    try:
        theme = themes.resolve(args.theme or settings.theme)
    except ValueError as exc:
        print(f"kata-top: {exc}", file=sys.stderr)
        return 2
    refresh = args.refresh if args.refresh is not None else settings.refresh
    if refresh <= 0:
        print("kata-top: --refresh takes a positive number of seconds", file=sys.stderr)
        return 2
    warning = None
    watch: list[str] = []
    if args.replay:
        from kata_top.jsonin import RecordingError, load_recording
        from kata_top.source import ReplaySource

        try:
            snaps, warning = load_recording(args.replay)
        except RecordingError as exc:
            print(f"kata-top: {exc}", file=sys.stderr)
            return 2
        source: object = ReplaySource(snaps)
    else:
        if not os.path.isdir(args.run_root):
            print(f"kata-top: run root {args.run_root} does not exist (the lab's is "
                  "/run/kata-top-lab: sudo kata-top lab up)", file=sys.stderr)
            return 2
        from kata_top.engine import EngineOptions
        from kata_top.source import VMM_REFRESH_S, LiveSource
        from kata_top.watch import watch_paths

        qmp_primary = args.qmp_primary if args.qmp_primary is not None else \
            settings.qmp_primary
        source = LiveSource(EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                                          vmm_refresh_s=VMM_REFRESH_S))
        watch = watch_paths(args.run_root)

    if not sys.stdout.isatty():
        print("kata-top: the dashboard needs a terminal; for scripts use `kata-top snapshot "
              "--json` or `kata-top check`", file=sys.stderr)
        return 2
    from widgets.app import KataTopApp

    app = KataTopApp(source, refresh=refresh, theme=theme, write=args.write,  # type: ignore[arg-type]
                     settings=settings, watch_paths=watch, replay_warning=warning)
    app.run()
    return 0
