"""Screen updates that write only the cells that changed.

Textual repaints the regions a widget marks dirty, but its partial update
(`textual._compositor.ChopsUpdate.render_segments`) writes each dirty span from the left edge
of the widget under it, not from the span's own first cell (its source says "TODO: crop to x
extents"): a table that marks only a rate and a sparkline dirty still sends most of the row,
and one span per changed cell sends the row's start once per span. Over SSH the bytes are the
cost (a 200-sandbox screen with traffic is most of a slow link), so `install()` replaces that
method with one that crops each span at both ends. Same sequences otherwise: a cursor move,
then the cropped strip rendered as Textual renders it. Left alone if this Textual's
ChopsUpdate is not the shape this was written for.
"""

from __future__ import annotations

from typing import Any

_installed = False


def _render_segments(self: Any, console: Any) -> str:
    from rich.control import Control

    sequences: list[str] = []
    append = sequences.append
    move_to = Control.move_to
    for y, x1, x2 in self.spans:
        for end, (x, strip) in zip(self.chop_ends[y], self.chops[y].items(), strict=False):
            if strip is None or x >= x2 or end <= x1:  # x2 is exclusive
                continue
            start = max(x, x1)
            if start != x or end > x2:
                strip = strip.crop(start - x, min(end, x2) - x)
            if strip.cell_length:
                append(move_to(start, y).segment.text)
                append(strip.render(console))
    # no newline between lines (Textual writes one): each span starts with a cursor move
    return "".join(sequences)


def install() -> bool:
    """Use `_render_segments` for Textual's partial updates; False when Textual's differs."""
    global _installed
    if _installed:
        return True
    try:
        from textual._compositor import ChopsUpdate
    except ImportError:
        return False
    original = getattr(ChopsUpdate, "render_segments", None)
    init = getattr(ChopsUpdate, "__init__", None)
    names = getattr(getattr(init, "__code__", None), "co_varnames", ())
    if original is None or names[1:4] != ("chops", "spans", "chop_ends"):
        return False
    ChopsUpdate.render_segments = _render_segments  # type: ignore[method-assign]
    _installed = True
    return True
