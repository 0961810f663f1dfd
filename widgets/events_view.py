"""Events as an operator reads them: newest first, the time, how bad, what, and who did it."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from kata_top.model import Event
from kata_top.widgets.palette import MUTED, Palette


def events_table(events: Iterable[Event], palette: Palette, empty: str,
                 limit: int = 200) -> Table:
    t = Table("time", "sev", "event", "what", box=None, expand=True, header_style="bold",
              padding=(0, 1))
    n = 0
    for e in sorted(events, key=lambda e: e.at, reverse=True)[:limit]:
        what = Text(e.summary)
        if e.by:
            what.append(f"  [{e.by}]", style=palette.value)
        t.add_row(Text(time.strftime("%H:%M:%S", time.localtime(e.at)), style=MUTED),
                  Text(e.severity, style=palette.severity(e.severity)), e.kind, what)
        n += 1
    if not n:
        t.add_row("", "", "", Text(empty, style=MUTED))
    return t
