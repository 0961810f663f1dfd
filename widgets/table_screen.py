"""A screen around one row table: the keys, filter, sort and paging every table shares.

The node dashboard's overview (sandboxes) and the fleet console (nodes, a node's sandboxes)
are this one screen with another RowModel, so their keys, help and behaviour cannot drift.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Input

from kata_top.widgets.sandbox_table import SANDBOXES, RowModel, SandboxTable

FILTER_HINT = "filter: substring of the row's text (! negates), Enter keeps, Esc clears"


class TableScreen(Screen[None]):
    MODEL: ClassVar[RowModel[Any]] = SANDBOXES
    FILTER_PLACEHOLDER: ClassVar[str] = ("filter: substring of pod/id/state/model (! negates), "
                                         "Enter keeps, Esc clears")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="open"),
        Binding("j,down", "cursor_down", "Down", show=False, id="down"),
        Binding("k,up", "cursor_up", "Up", show=False, id="up"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear-filter"),
        Binding("s", "sort", "Sort", id="sort"),
        Binding("S", "sort_reverse", "Reverse", show=False, id="sort-reverse"),
        Binding("pagedown,ctrl+f", "page_down", "Page down", show=False, id="page-down"),
        Binding("pageup,ctrl+b", "page_up", "Page up", show=False, id="page-up"),
        Binding("home,g", "first", "First row", show=False, id="first"),
        Binding("end,G", "last", "Last row", show=False, id="last"),
    ]

    def table_parts(self) -> ComposeResult:
        yield SandboxTable(id="sandboxes", model=self.MODEL)
        yield Input(placeholder=self.FILTER_PLACEHOLDER, id="filter")

    def open_row(self, row_id: str) -> None:
        """Enter (or a double click) on a row."""

    def on_resize(self) -> None:
        self.query_one(SandboxTable).set_width(self.size.width)

    def action_cursor_down(self) -> None:
        self.query_one(SandboxTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(SandboxTable).action_cursor_up()

    def action_open(self) -> None:
        row = self.query_one(SandboxTable).selected_id()
        if row:
            self.open_row(row)

    def action_page_down(self) -> None:
        self.query_one(SandboxTable).action_page_down()

    def action_page_up(self) -> None:
        self.query_one(SandboxTable).action_page_up()

    def action_first(self) -> None:
        self.query_one(SandboxTable).action_first()

    def action_last(self) -> None:
        self.query_one(SandboxTable).action_last()

    def on_sandbox_table_opened(self, event: SandboxTable.Opened) -> None:
        self.open_row(event.sandbox_id)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self._apply_filter("")
        self.query_one(SandboxTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.remove_class("shown")
            self.query_one(SandboxTable).focus()

    def _apply_filter(self, text: str) -> None:
        table = self.query_one(SandboxTable)
        table.filter_text = text.strip()
        table.resort()

    def action_sort(self) -> None:
        table = self.query_one(SandboxTable)
        name = table.resort(index=table.sort_index + 1)
        self.notify(f"sorted by {name}", timeout=1.5)

    def action_sort_reverse(self) -> None:
        table = self.query_one(SandboxTable)
        name = table.resort(reverse=not table.sort_reverse)
        self.notify(f"sorted by {name} {'descending' if table.sort_reverse else 'ascending'}",
                    timeout=1.5)
