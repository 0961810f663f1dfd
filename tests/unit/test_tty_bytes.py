"""Bytes to the terminal: the overview repaints only the characters that changed, and
Textual's partial update writes only the spans marked dirty (widgets/partial_update.py)."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate
from textual.geometry import Region
from textual.strip import Strip

from kata_top.widgets import partial_update
from kata_top.widgets.sandbox_table import HEADER_LINES, SandboxTable, _changed_span, _shown
from tests.unit.test_ui import replay_app, settle

CSI = re.compile(r"\x1b\[(\d+);(\d+)H|\x1b\[[0-9;]*m")


def play(screen: list[list[str]], sequences: str) -> None:
    """A terminal as far as Textual's updates need one: cursor moves, colours, text."""
    y = x = 0
    pos = 0
    for m in CSI.finditer(sequences):
        for ch in sequences[pos:m.start()]:
            screen[y][x] = ch
            x += 1
        if m.group(1):
            y, x = int(m.group(1)) - 1, int(m.group(2)) - 1
        pos = m.end()
    for ch in sequences[pos:]:
        screen[y][x] = ch
        x += 1


def test_partial_update_writes_only_the_dirty_spans() -> None:
    partial_update.install()
    console = Console(width=40, color_system="256", force_terminal=True)
    style = Style(color="red")
    line = Strip([Segment("pod-1  ", style), Segment("86.8kbit", Style(bold=True)),
                  Segment("  ▁▅▇█", style)])
    # two dirty spans on one line: the rate's changed digit and the sparkline's last point
    update = ChopsUpdate([{0: line}], [(0, 10, 11), (0, 20, 21)], [[21]])
    out = update.render_segments(console)
    screen = [list("pod-1  86.7kbit  ▁▅▇▆")]
    play(screen, out)
    assert "".join(screen[0]) == "pod-1  86.8kbit  ▁▅▇█"
    assert CSI.sub("", out) == "8█"  # not the line from its start, once per span


def test_changed_span_of_a_cell() -> None:
    assert _changed_span(_shown("86.8kbit", 10), _shown("86.9kbit", 10)) == (3, 4)
    assert _changed_span(_shown("   ▁▅▇", 6), _shown("  ▁▅▇█", 6)) == (2, 6)
    assert _changed_span("ab", "ab") == (2, 2)
    assert _changed_span("漢字", "漢子") is None  # wide characters: the whole cell


async def test_a_refresh_repaints_only_changed_characters(monkeypatch: Any) -> None:
    app = replay_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        before = {sid: table._cells[sid] for sid in table.ids_on_screen() if sid in table._cells}
        regions: list[Region] = []
        original = table.refresh

        def spy(*args: Any, **kwargs: Any) -> Any:
            regions.extend(a for a in args if isinstance(a, Region))
            return original(*args, **kwargs)

        monkeypatch.setattr(table, "refresh", spy)
        await pilot.press("n")  # the recording's next snapshot: rates and trends move
        await settle(pilot)
        monkeypatch.undo()
        width = sum(c.width + 2 for c in table.columns)
        changed_rows = 0
        for row, sid in enumerate(table._order):
            old, new = before.get(sid), table._cells.get(sid)
            if old is None or new is None or old == new:
                continue
            changed_rows += 1
            y = row + HEADER_LINES - table.scroll_offset.y
            left = 0
            for c, (o, n) in zip(table.columns, zip(old, new, strict=True), strict=True):
                a, b = _shown(o[0], c.width), _shown(n[0], c.width)
                for i, (ca, cb) in enumerate(zip(a, b, strict=True)):
                    if ca != cb or o[1] != n[1]:
                        x = left + 1 + i
                        assert any(r.contains(x, y) for r in regions), (sid, c.key, i)
                left += c.width + 2
        assert changed_rows >= 3
        painted = sum(r.width for r in regions if r.height == 1)
        assert painted < changed_rows * width / 3, (painted, changed_rows, width)
