"""What the overview shows per sandbox: its columns, the cell text, the `/` filter, sorting.

A cell is `(text, role)`: plain data, cheap to build and compare for 200 rows a second. The
role (`ok`, `bad`, `warn`, `accent`, `muted` or empty) names a meaning, not a colour; the table
turns it into the theme's colour when it draws a row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kata_top import rates, summary
from kata_top.model import Sandbox
from kata_top.units import fmt_rate

SPARK = "▁▂▃▄▅▆▇█"
HISTORY = 12

Cell = tuple[str, str]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    priority: int  # lower survives longer on a narrow terminal
    sort: Callable[[Any], object]


def vm_in(sb: Sandbox) -> float:
    return rates.vm(sb).in_bps or 0.0


def vm_out(sb: Sandbox) -> float:
    return rates.vm(sb).out_bps or 0.0


def vm_total(sb: Sandbox) -> float:
    """What the TREND column draws and sorts by: traffic in and out of the VM."""
    v = rates.vm(sb)
    return (v.in_bps or 0.0) + (v.out_bps or 0.0)


COLUMNS: tuple[Column, ...] = (
    Column("pod", "POD", 26, 0, summary.pod_text),
    Column("id", "SANDBOX", 12, 2, lambda s: s.id),
    Column("rt", "RT", 3, 6, lambda s: s.runtime),
    Column("hv", "HV", 5, 7, lambda s: s.hypervisor.kind),
    Column("state", "STATE", 8, 1, lambda s: s.state),
    Column("model", "MODEL", 8, 4, lambda s: s.network_model),
    Column("in", "IN", 9, 1, vm_in),
    Column("out", "OUT", 9, 1, vm_out),
    Column("trend", "TREND", HISTORY, 5, vm_total),
    Column("redirect", "REDIRECT", 11, 0, summary.redirect_health),
    Column("limit", "RATE LIMIT", 21, 3, summary.rate_limit_text),
    Column("vm", "VM", 9, 6, summary.resources_text),
    Column("vfs", "VFS", 7, 5, summary.virtiofsd_text),
    Column("problems", "!", 3, 0, summary.problem_count),
)

STATE_ROLE = {"running": "ok", "stale": "bad", "orphan": "warn", "corrupt": "bad",
              "paused": "warn"}
REDIRECT_ROLE = {"both": "ok", "-": "muted", "?": "muted"}  # anything else names a fault


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))] for v in values)


def visible_columns(width: int, columns: Sequence[Column] = COLUMNS) -> list[Column]:
    """The columns that fit in width, dropping the highest priority numbers first."""
    cols = list(columns)
    while cols and sum(c.width + 2 for c in cols) > width:
        worst = max(cols, key=lambda c: (c.priority, columns.index(c)))
        if worst.priority == 0:
            break
        cols.remove(worst)
    return cols


def _problems(sb: Sandbox) -> Cell:
    n = summary.problem_count(sb)
    if not n:
        return ("", "")
    crit = sb.errors or any(f.severity == "critical" for f in sb.findings)
    return (str(n), "bad" if crit else "warn")


def cell(col: str, sb: Sandbox, history: Sequence[float]) -> Cell:
    if col == "pod":
        return (summary.pod_text(sb), "")
    if col == "id":
        return (sb.id[:12], "")
    if col == "rt":
        return (sb.runtime, "")
    if col == "hv":
        return (sb.hypervisor.kind[:5], "")
    if col == "state":
        return (sb.state, STATE_ROLE.get(sb.state, ""))
    if col == "model":
        return (sb.network_model, "")
    if col == "in":
        # what reached the VM; `!` (and red) while packets on their way in are lost (the
        # redirect failing, the tap dropping): the detail says how many
        vr = rates.vm(sb)
        lost = (vr.in_failed_pps or 0.0) + (vr.in_dropped_pps or 0.0)
        text = fmt_rate(vr.in_bps) if sb.rates else "-"
        return (text + "!", "bad") if lost > 0 else (text, "")
    if col == "out":
        return (fmt_rate(rates.vm(sb).out_bps) if sb.rates else "-", "")
    if col == "trend":
        # Fixed width: a steady row must render the same string every cycle.
        return (sparkline(history).rjust(HISTORY), "accent")
    if col == "redirect":
        h = summary.redirect_health(sb)
        return (h, REDIRECT_ROLE.get(h, "bad"))
    if col == "limit":
        return (summary.rate_limit_text(sb), "")
    if col == "vm":
        return (summary.resources_text(sb), "")
    if col == "vfs":
        v = summary.virtiofsd_text(sb)
        return (v, "bad" if v == "dead" else "")
    return _problems(sb)


def row_cells(cols: Sequence[Column], sb: Sandbox, history: Sequence[float]) -> tuple[Cell, ...]:
    return tuple(cell(c.key, sb, history) for c in cols)


def matches(sb: Sandbox, text: str) -> bool:
    """`/` filter: substring of pod, id, state, model or redirect health; `!` negates."""
    negate = text.startswith("!")
    needle = text[1:] if negate else text
    hay = " ".join((summary.pod_text(sb), sb.id, sb.state, sb.network_model,
                    summary.redirect_health(sb), sb.runtime)).lower()
    hit = needle.lower() in hay
    return not hit if negate else hit


def sort_key(v: object) -> tuple[int, float, str]:
    """Numbers before text, so a numeric column sorts numerically."""
    if isinstance(v, int | float):
        return (0, float(v), "")
    return (1, 0.0, str(v))
