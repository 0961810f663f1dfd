"""The overview table: one line per sandbox, drawn with Textual's Line API.

Why not DataTable: at 200 sandboxes a second, DataTable drops its whole render cache on any
`update_cell` and re-renders every visible cell through Rich, every refresh (bench/ui.py
measures it). Here a refresh compares each row's cells (plain `(text, role)` tuples) with what
is drawn, and repaints only the screen lines whose row changed; each drawn line is cached as a
Strip per (row, cursor, zebra) until that row changes or the theme does. Moving the cursor
repaints two lines. The cursor follows the sandbox id across refreshes, filters and re-sorts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from kata_top.model import Sandbox
from kata_top.same_object import SameObjectMemo
from kata_top.widgets.overview_columns import (
    COLUMNS,
    HISTORY,
    Cell,
    Column,
    matches,
    row_cells,
    sort_key,
    visible_columns,
    vm_total,
)
from kata_top.widgets.partial_update import install as install_partial_update

R = TypeVar("R")


@dataclass(frozen=True)
class RowModel(Generic[R]):
    """What a table shows of one kind of row: its columns (each with its sort key), the
    cells of a row, the `/` filter, the row's identity and the number its TREND draws."""

    columns: tuple[Column, ...]
    key: Callable[[R], str]
    cells: Callable[[Sequence[Column], R, Sequence[float]], tuple[Cell, ...]]
    matches: Callable[[R, str], bool]
    trend: Callable[[R], float]


SANDBOXES: RowModel[Sandbox] = RowModel(COLUMNS, lambda sb: sb.id, row_cells, matches,
                                        vm_total)

ROLES = ("ok", "bad", "warn", "accent", "muted")
HEADER_LINES = 1


class SandboxTable(ScrollView, can_focus=True):
    """Keeps one row per row id; call show() with each new snapshot's rows. The rows are
    sandboxes unless another RowModel is given (the fleet console's nodes and sandboxes)."""

    COMPONENT_CLASSES = {"sandbox-table--header", "sandbox-table--cursor",
                         "sandbox-table--zebra", *(f"sandbox-table--{r}" for r in ROLES)}

    class Opened(Message):
        """A row was double-clicked (Enter is the screen's own binding)."""

        def __init__(self, sandbox_id: str) -> None:
            super().__init__()
            self.sandbox_id = sandbox_id

    def __init__(self, id: str | None = None, model: RowModel[Any] = SANDBOXES) -> None:
        super().__init__(id=id)
        install_partial_update()  # a changed cell is written alone, not its row up to it
        self.model = model
        self.cursor_row = 0
        self.filter_text = ""
        self.sort_index = 0
        self.sort_reverse = False
        self._cols: list[Column] = []
        self._history: dict[str, deque[float]] = {}
        self._marks: dict[str, deque[bool]] = {}  # per TREND point: did an event happen
        # each row's TREND number and sort key, kept while the row is the very same object
        self._trend_of: SameObjectMemo[Any, float] = SameObjectMemo()
        self._sort_of: SameObjectMemo[Any, tuple[Any, str]] = SameObjectMemo()
        self._sort_col: Column | None = None  # the column _sort_of's keys are of
        self._sandboxes: list[Any] = []
        self._order: list[str] = []  # row ids, as displayed
        self._rows: dict[str, Any] = {}  # the displayed rows
        # Cells as last drawn; rows off screen have none and are built when they scroll in.
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._strips: dict[str, dict[tuple[bool, bool, int], Strip]] = {}
        # the table's own style, from its and its ancestors' CSS: Textual walks the whole
        # chain at each `rich_style` (a fifth of drawing a changed row); kept until the
        # styles change (notify_style_update, as Textual's own component style cache)
        self._base_style: Style | None = None
        self._header: tuple[tuple[object, ...], Strip] | None = None

    # ---- what the screens ask -------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    def ids_on_screen(self) -> list[str]:
        """The ids of the rows drawn now (and the cursor's)."""
        top = round(self.scroll_y)
        height = max(0, self.scrollable_content_region.height - HEADER_LINES)
        ids = self._order[top:top + height]
        cursor = self.selected_id()
        return ids if cursor is None or cursor in ids else [*ids, cursor]

    def selected_id(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    @property
    def columns(self) -> tuple[Column, ...]:
        """The columns shown at the current width, left to right."""
        return tuple(self._cols)

    def trend(self, sandbox_id: str) -> tuple[float, ...]:
        """The traffic samples the TREND column draws for a sandbox, oldest first."""
        return tuple(self._history.get(sandbox_id, ()))

    def row_text(self, row: int) -> str:
        """The text of a displayed row (0 is the first under the header)."""
        return "  ".join(text for text, _ in self._cells_of(self._order[row]))

    def _cells_of(self, sid: str) -> tuple[Cell, ...]:
        cells = self._cells.get(sid)
        if cells is None:
            cells = self._cells[sid] = self._build(sid)
        return cells

    def _build(self, sid: str) -> tuple[Cell, ...]:
        cells = self.model.cells(self._cols, self._rows[sid], self._history.get(sid, ()))
        marks = self._marks.get(sid)
        if not marks or not any(marks):
            return cells
        # ▲ in the TREND sparkline where something happened to this row (its events)
        out = list(cells)
        for i, c in enumerate(self._cols):
            if c.key == "trend":
                text = list(out[i][0])
                for j, marked in enumerate(marks):
                    at = len(text) - len(marks) + j
                    if marked and 0 <= at < len(text):
                        text[at] = "▲"
                out[i] = ("".join(text), out[i][1])
        return tuple(out)

    def set_width(self, width: int) -> None:
        cols = visible_columns(width, self.model.columns)
        if [c.key for c in cols] != [c.key for c in self._cols]:
            self._cols = cols
            self._cells.clear()
            self._forget_strips()
            self._apply(self._sandboxes, record=False)

    def show(self, sandboxes: Sequence[Any], events: Collection[str] = ()) -> None:
        """The rows of a new snapshot; `events`: ids of rows something happened to now."""
        self._record(sandboxes, events)
        self._apply(sandboxes, record=False)

    def record(self, sandboxes: Sequence[Any], events: Collection[str] = ()) -> None:
        """Add to the trends only (the table is hidden); redraw() draws later."""
        self._record(sandboxes, events)

    def redraw(self, sandboxes: Sequence[Any]) -> None:
        """Draw sandboxes already recorded."""
        self._apply(sandboxes, record=False)

    def resort(self, index: int | None = None, reverse: bool | None = None) -> str:
        if index is not None:
            self.sort_index = index % len(self.model.columns)
        if reverse is not None:
            self.sort_reverse = reverse
        self._header = None
        self.refresh(Region(0, 0, self.size.width, HEADER_LINES))  # the header never scrolls
        self._apply(self._sandboxes, record=False)
        return self.model.columns[self.sort_index].label

    # ---- cursor ---------------------------------------------------------------------------
    def move_cursor(self, row: int) -> None:
        if not self._order:
            self.cursor_row = 0
            return
        row = max(0, min(row, len(self._order) - 1))
        old, self.cursor_row = self.cursor_row, row
        if old != row:
            self.refresh_lines(old + HEADER_LINES)
            self.refresh_lines(row + HEADER_LINES)
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        rows_visible = max(1, self.scrollable_content_region.height - HEADER_LINES)
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows_visible:
            self.scroll_to(y=self.cursor_row - rows_visible + 1, animate=False)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + max(1, self.size.height - HEADER_LINES - 1))

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - max(1, self.size.height - HEADER_LINES - 1))

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._order) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y < HEADER_LINES:
            col = self._column_at(offset.x)
            if col is not None:
                index = self.model.columns.index(col)
                reverse = not self.sort_reverse if index == self.sort_index else False
                self.resort(index=index, reverse=reverse)
            return
        row = round(self.scroll_y) + offset.y - HEADER_LINES
        if 0 <= row < len(self._order):
            self.move_cursor(row)
            if event.chain >= 2:
                self.post_message(self.Opened(self._order[row]))

    def _column_at(self, x: int) -> Column | None:
        left = 0
        for c in self._cols:
            left += c.width + 2
            if x < left:
                return c
        return None

    # ---- diffing a new snapshot into the rows ---------------------------------------------
    def _record(self, sandboxes: Sequence[Any], events: Collection[str] = ()) -> None:
        key, trend = self.model.key, self.model.trend
        for sb in sandboxes:
            k = key(sb)
            self._history.setdefault(k, deque(maxlen=HISTORY)).append(
                self._trend_of.get(k, sb, trend))
            self._marks.setdefault(k, deque(maxlen=HISTORY)).append(k in events)
        self._trend_of.end_round()
        for gone in set(self._history) - {key(sb) for sb in sandboxes}:
            del self._history[gone]
            self._marks.pop(gone, None)

    def _apply(self, sandboxes: Sequence[Any], record: bool) -> None:
        self._sandboxes = list(sandboxes)
        if record:
            self._record(sandboxes)
        if not self._cols:
            return
        keep_id = self.selected_id()
        key = self.model.key
        wanted = [sb for sb in sandboxes if not self.filter_text or
                  self.model.matches(sb, self.filter_text)]
        col = self.model.columns[self.sort_index]
        if col is not self._sort_col:
            self._sort_of.clear()
            self._sort_col = col

        def computed(s: Any) -> tuple[Any, str]:
            return sort_key(col.sort(s)), key(s)

        wanted.sort(key=lambda s: self._sort_of.get(key(s), s, computed),
                    reverse=self.sort_reverse)
        self._sort_of.end_round()
        order = [key(sb) for sb in wanted]
        self._rows = {key(sb): sb for sb in wanted}
        if order != self._order:
            # Membership or order changed: every line may be different.
            self._order = order
            self._cells.clear()
            self._strips.clear()
            self.virtual_size = Size(self._line_width(), len(order) + HEADER_LINES)
            self.refresh()
        else:
            # Only the rows on screen are compared (and their cells built): 200 rows a
            # second is otherwise most of the UI's work. Rows off screen are forgotten and
            # rebuilt from the newest snapshot when they scroll in.
            top = round(self.scroll_y)
            bottom = min(len(order), top + max(0, self.size.height - HEADER_LINES))
            for row in range(top, bottom):
                sid = order[row]
                cells = self._build(sid)
                drawn = self._cells.get(sid)
                if drawn != cells:
                    self._cells[sid] = cells
                    self._strips.pop(sid, None)
                    self._refresh_cells(row, drawn, cells)
            for sid in order[:top] + order[bottom:]:
                self._cells.pop(sid, None)
                self._strips.pop(sid, None)
        if keep_id is not None and keep_id in self._rows:
            self.move_cursor(order.index(keep_id))
        else:
            self.move_cursor(self.cursor_row)

    def _refresh_cells(self, row: int, drawn: tuple[Cell, ...] | None,
                       cells: tuple[Cell, ...]) -> None:
        """Repaint only what changed in a row: over SSH every byte of a refresh is paid for,
        and with traffic most rows change in a rate or two and the TREND sparkline, not in
        the whole line. Within a cell whose colour stayed, only the characters from the first
        to the last that differ are repainted (a rate's leading digits, a sparkline's padding
        stay put); widgets/partial_update.py has Textual write just those."""
        if drawn is None or len(drawn) != len(cells):
            self.refresh_lines(row + HEADER_LINES)
            return
        y = row + HEADER_LINES - self.scroll_offset.y
        dx = self.scroll_offset.x
        left = 0
        for c, old, new in zip(self._cols, drawn, cells, strict=True):
            if old != new:
                start, width = 0, c.width + 2
                if old[1] == new[1]:
                    span = _changed_span(_shown(old[0], c.width), _shown(new[0], c.width))
                    if span is not None:
                        start, width = 1 + span[0], span[1] - span[0]
                self.refresh(Region(left + start - dx, y, width, 1))
            left += c.width + 2

    # ---- drawing ------------------------------------------------------------------------
    # ---- drawing ------------------------------------------------------------------------
    def _line_width(self) -> int:
        return sum(c.width + 2 for c in self._cols)

    def _forget_strips(self) -> None:
        self._strips.clear()
        self._header = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None
        self._forget_strips()  # theme changed: cached lines carry the old colours

    def on_resize(self) -> None:
        self._forget_strips()
        self._scroll_to_cursor()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y < HEADER_LINES:
            return self._header_line(width)
        row = round(self.scroll_y) + y - HEADER_LINES
        if row >= len(self._order):
            return Strip.blank(width, self._base())
        sid = self._order[row]
        key = (row == self.cursor_row, row % 2 == 1, width)
        per_row = self._strips.setdefault(sid, {})
        strip = per_row.get(key)
        if strip is None:
            strip = per_row[key] = self._row_line(self._cells_of(sid), key[0], key[1], width)
        return strip

    def _header_line(self, width: int) -> Strip:
        key = (width, self.sort_index, self.sort_reverse, tuple(c.key for c in self._cols))
        if self._header is not None and self._header[0] == key:
            return self._header[1]
        style = self.get_component_rich_style("sandbox-table--header")
        cells: list[Cell] = []
        for c in self._cols:
            mark = ("▼" if self.sort_reverse else "▲") \
                if self.model.columns[self.sort_index] is c else ""
            cells.append((c.label + mark, ""))
        strip = self._draw(cells, style, width)
        self._header = (key, strip)
        return strip

    def _base(self) -> Style:
        if self._base_style is None:
            self._base_style = self.rich_style
        return self._base_style

    def _row_line(self, cells: tuple[Cell, ...], cursor: bool, zebra: bool, width: int) -> Strip:
        base = self._base()
        if zebra:
            base += self.get_component_rich_style("sandbox-table--zebra")
        if cursor:
            base += self.get_component_rich_style("sandbox-table--cursor")
        return self._draw(cells, base, width, cursor=cursor)

    def _draw(self, cells: Sequence[Cell], base: Style, width: int,
              cursor: bool = False) -> Strip:
        # Runs of one style become one segment: every style change costs escape codes on
        # the wire, and an SSH link pays for each byte of a 200-row refresh.
        segments: list[Segment] = []
        run: list[str] = []
        run_style = base
        for c, (text, role) in zip(self._cols, cells, strict=True):
            style = base
            if role and not cursor:  # the cursor's own colours keep the row readable
                style = base + self.get_component_rich_style(f"sandbox-table--{role}",
                                                             partial=True)
            padded = _shown(text, c.width)
            if style == run_style:
                run += (" ", padded, " ")
                continue
            stripped = padded.rstrip(" ")
            run += (" ",)
            segments.append(Segment("".join(run), run_style))
            segments.append(Segment(stripped, style))
            run, run_style = [" " * (len(padded) - len(stripped)), " "], base
        segments.append(Segment("".join(run), run_style))
        return Strip(segments).extend_cell_length(width, base).crop(0, width)


def _shown(text: str, width: int) -> str:
    """A cell's text as drawn: cut with … when too long, padded to its column's width."""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def _changed_span(old: str, new: str) -> tuple[int, int] | None:
    """The columns [start, end) where two drawn cells differ, when every character of both is
    one column wide (else None: repaint the whole cell)."""
    if len(old) != len(new) or cell_len(old) != len(old) or cell_len(new) != len(new):
        return None
    start = 0
    while start < len(old) and old[start] == new[start]:
        start += 1
    end = len(old)
    while end > start and old[end - 1] == new[end - 1]:
        end -= 1
    return start, end
