"""The one-line header: repaints itself only, never asks for a layout pass.

`Static.update()` requests layout, which re-renders the whole screen (200-row tables
included); the header changes twice a second, so it must only repaint its own line.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class HeaderBar(Widget):
    DEFAULT_CSS = "HeaderBar { height: 1; }"

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()

    def show(self, text: Text) -> None:
        if text.plain != self._text.plain or text.spans != self._text.spans:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return self._text
