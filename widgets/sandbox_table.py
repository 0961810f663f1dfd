"""The overview table: one row per sandbox, diffed by row key so the cursor never jumps.

Columns drop by priority when the terminal is narrow; sorting keeps the cursor on the same
sandbox; rows are updated cell by cell (update_width=False) and only re-added when new.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from kata_top import summary
from kata_top.model import Sandbox
from kata_top.units import fmt_rate

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 12


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    priority: int  # lower survives longer on a narrow terminal
    sort: Callable[[Sandbox], object]


def _in(sb: Sandbox) -> float:
    return sb.rates.get("vm.in_bps", 0.0)


def _out(sb: Sandbox) -> float:
    return sb.rates.get("vm.out_bps", 0.0)


COLUMNS: tuple[Column, ...] = (
    Column("pod", "POD", 26, 0, summary.pod_text),
    Column("id", "SANDBOX", 12, 2, lambda s: s.id),
    Column("rt", "RT", 3, 6, lambda s: s.runtime),
    Column("hv", "HV", 5, 7, lambda s: s.hypervisor.kind),
    Column("state", "STATE", 8, 1, lambda s: s.state),
    Column("model", "MODEL", 8, 4, lambda s: s.network_model),
    Column("in", "IN", 9, 1, _in),
    Column("out", "OUT", 9, 1, _out),
    Column("trend", "TREND", HISTORY, 5, _in),
    Column("redirect", "REDIRECT", 9, 0, summary.redirect_health),
    Column("limit", "RATE LIMIT", 21, 3, summary.rate_limit_text),
    Column("vm", "VM", 9, 6, summary.resources_text),
    Column("vfs", "VFS", 7, 5, summary.virtiofsd_text),
    Column("problems", "!", 3, 0, summary.problem_count),
)


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def visible_columns(width: int) -> list[Column]:
    """The columns that fit in width, dropping the highest priority numbers first."""
    cols = list(COLUMNS)
    while cols and sum(c.width + 2 for c in cols) > width:
        worst = max(cols, key=lambda c: (c.priority, COLUMNS.index(c)))
        if worst.priority == 0:
            break
        cols.remove(worst)
    return cols


def _state_text(sb: Sandbox) -> Text:
    style = {"running": "green", "stale": "bold red", "orphan": "yellow",
             "corrupt": "bold red", "paused": "yellow"}.get(sb.state, "")
    return Text(sb.state, style=style)


def _redirect_text(sb: Sandbox) -> Text:
    h = summary.redirect_health(sb)
    style = {"both": "green", "none": "bold red", "in only": "bold red",
             "out only": "bold red"}.get(h, "dim")
    return Text(h, style=style)


def _problems_text(sb: Sandbox) -> Text:
    n = summary.problem_count(sb)
    if not n:
        return Text("")
    crit = any(f.severity == "critical" for f in sb.findings) or sb.errors
    return Text(str(n), style="bold red" if crit else "yellow")


def cell(col: str, sb: Sandbox, history: Sequence[float]) -> Text | str:
    if col == "pod":
        return summary.pod_text(sb)
    if col == "id":
        return sb.id[:12]
    if col == "rt":
        return sb.runtime
    if col == "hv":
        return sb.hypervisor.kind[:5]
    if col == "state":
        return _state_text(sb)
    if col == "model":
        return sb.network_model
    if col == "in":
        return fmt_rate(sb.rates.get("vm.in_bps")) if sb.rates else "-"
    if col == "out":
        return fmt_rate(sb.rates.get("vm.out_bps")) if sb.rates else "-"
    if col == "trend":
        # Fixed width: a steady row must render the same string every cycle.
        return Text(sparkline(history).rjust(HISTORY), style="cyan")
    if col == "redirect":
        return _redirect_text(sb)
    if col == "limit":
        return summary.rate_limit_text(sb)
    if col == "vm":
        return summary.resources_text(sb)
    if col == "vfs":
        v = summary.virtiofsd_text(sb)
        return Text(v, style="bold red" if v == "dead" else "")
    return _problems_text(sb)


def matches(sb: Sandbox, text: str) -> bool:
    """`/` filter: substring of pod, id, state, model or redirect health; `!` negates."""
    negate = text.startswith("!")
    needle = text[1:] if negate else text
    hay = " ".join((summary.pod_text(sb), sb.id, sb.state, sb.network_model,
                    summary.redirect_health(sb), sb.runtime)).lower()
    hit = needle.lower() in hay
    return not hit if negate else hit


class SandboxTable(DataTable[Text | str]):
    """Keeps one row per sandbox id; call show() with each new snapshot's sandboxes."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._cols: list[Column] = []
        self._history: dict[str, deque[float]] = {}
        self._sandboxes: list[Sandbox] = []
        self.filter_text = ""
        self.sort_index = 0
        self.sort_reverse = False
        self._shown: dict[tuple[str, str], tuple[str, str]] = {}

    def selected_id(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return str(key.value) if key.value is not None else None

    def set_width(self, width: int) -> None:
        cols = visible_columns(width)
        if [c.key for c in cols] != [c.key for c in self._cols]:
            self._cols = cols
            self.clear(columns=True)
            self._shown.clear()
            for c in cols:
                self.add_column(c.label, width=c.width, key=c.key)
            self._apply(self._sandboxes, record=False)

    def show(self, sandboxes: Sequence[Sandbox]) -> None:
        self._apply(sandboxes, record=True)

    def _apply(self, sandboxes: Sequence[Sandbox], record: bool) -> None:
        self._sandboxes = list(sandboxes)
        if record:
            for sb in sandboxes:
                h = self._history.setdefault(sb.id, deque(maxlen=HISTORY))
                h.append(_in(sb) + _out(sb))
            for gone in set(self._history) - {sb.id for sb in sandboxes}:
                del self._history[gone]
        if not self._cols:
            return
        keep_id = self.selected_id()
        wanted = [sb for sb in sandboxes if not self.filter_text or
                  matches(sb, self.filter_text)]
        col = COLUMNS[self.sort_index]
        wanted.sort(key=lambda s: (_sort_key(col.sort(s)), s.id), reverse=self.sort_reverse)
        current = [str(k.value) for k in self.rows]
        with self.app.batch_update():
            if current != [sb.id for sb in wanted]:
                # Membership or order changed: rebuild rows (cheap at these sizes).
                self.clear()
                self._shown.clear()
                for sb in wanted:
                    values = [cell(c.key, sb, list(self._history.get(sb.id, ())))
                              for c in self._cols]
                    for c, v in zip(self._cols, values, strict=True):
                        self._shown[(sb.id, c.key)] = (str(v), str(getattr(v, "style", "")))
                    self.add_row(*values, key=sb.id)
            else:
                # Most cells do not change between cycles: write only those that did.
                for sb in wanted:
                    hist = list(self._history.get(sb.id, ()))
                    for c in self._cols:
                        value = cell(c.key, sb, hist)
                        sig = (str(value), str(getattr(value, "style", "")))
                        if self._shown.get((sb.id, c.key)) != sig:
                            self._shown[(sb.id, c.key)] = sig
                            self.update_cell(sb.id, c.key, value)
            if keep_id is not None and keep_id in {sb.id for sb in wanted}:
                index = self.get_row_index(keep_id)
                if index != self.cursor_row:  # moving the cursor forces a full repaint
                    self.move_cursor(row=index, animate=False)

    def resort(self, index: int | None = None, reverse: bool | None = None) -> str:
        if index is not None:
            self.sort_index = index % len(COLUMNS)
        if reverse is not None:
            self.sort_reverse = reverse
        self._apply(self._sandboxes, record=False)
        return COLUMNS[self.sort_index].label


def _sort_key(v: object) -> tuple[int, float, str]:
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, 0.0, str(v))
