"""The fleet console's loop: the fleet app, and the node dashboard of a node when the operator
opens one of its sandboxes (back to the fleet when that dashboard quits)."""

from __future__ import annotations

import argparse
import sys

from kata_top.cli.common import EXIT_OK, EXIT_USAGE, fail
from kata_top.fleet.promql import PrometheusClient


def run_console(client: PrometheusClient, args: argparse.Namespace) -> int:
    from kata_top import themes
    from kata_top.settings import Settings
    from kata_top.sources.fleet import FleetSource

    if not sys.stdout.isatty():
        return fail("fleet", "the console needs a terminal; for scripts use `kata-top fleet "
                             "--json` or `kata-top fleet check`")
    if not 0.5 <= args.refresh <= 3600:
        return fail("fleet", "--refresh takes 0.5 to 3600 seconds", EXIT_USAGE)
    from kata_top.widgets.app import KataTopApp
    from kata_top.widgets.fleet_app import FleetApp

    settings = Settings.load()
    theme = themes.resolve(settings.theme)
    source = FleetSource(client, args.job)
    while True:
        result = FleetApp(source, refresh=args.refresh, theme=theme, settings=settings).run()
        if not result:
            return EXIT_OK
        _what, url, sandbox_id = result
        from kata_top.sources.remote import RemoteSource

        KataTopApp(RemoteSource(url, timeout=args.timeout), refresh=2.0, theme=theme,
                   settings=settings, initial_sandbox=sandbox_id).run()
