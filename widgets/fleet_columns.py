"""The fleet console's rows: nodes, and the sandboxes of one node, as the metrics tell them."""

from __future__ import annotations

from collections.abc import Sequence

from kata_top.fleet.model import FleetNode, FleetSandbox
from kata_top.units import fmt_rate
from kata_top.widgets.overview_columns import HISTORY, Cell, Column, sparkline
from kata_top.widgets.sandbox_table import RowModel


def _lost(x: FleetNode | FleetSandbox) -> float:
    """Packets lost per second on the way into or out of the VMs: the redirect's failures
    (the tap down or gone) and the tap's drops (IN/OUT count only what was delivered)."""
    return x.redirect_failed_ps + x.tap_dropped_ps


def _lost_cell(x: FleetNode | FleetSandbox) -> Cell:
    lost = _lost(x)
    if not lost:
        return ("-", "muted")
    return (f"{lost:.0f}/s" if lost >= 1 else f"{lost:.1f}/s",
            "bad" if x.redirect_failed_ps else "warn")


def _age(n: FleetNode) -> str:
    return "-" if n.last_seen_age_s is None else f"{n.last_seen_age_s:.0f}s"


NODE_COLUMNS: tuple[Column, ...] = (
    Column("node", "NODE", 22, 0, lambda n: n.node),
    Column("up", "UP", 5, 0, lambda n: n.up is True),
    Column("age", "SEEN", 6, 3, lambda n: n.last_seen_age_s or 0.0),
    Column("sandboxes", "SANDBOXES", 9, 1, lambda n: n.sandboxes),
    Column("crit", "CRIT", 5, 0, lambda n: n.critical),
    Column("warn", "WARN", 5, 1, lambda n: n.warning),
    Column("in", "IN", 9, 2, lambda n: n.in_bps),
    Column("out", "OUT", 9, 2, lambda n: n.out_bps),
    Column("lost", "LOST", 7, 2, _lost),
    Column("oneway", "ONE-WAY", 7, 0, lambda n: n.one_way),
    Column("dead", "DEAD VMM", 8, 1, lambda n: n.dead_vmms),
    Column("drops", "RL DROPS", 8, 3, lambda n: n.rate_limit_drops_ps),
    Column("trend", "TREND", HISTORY, 4, lambda n: n.in_bps + n.out_bps),
)


def node_cells(cols: Sequence[Column], n: FleetNode, history: Sequence[float]
               ) -> tuple[Cell, ...]:
    def one(key: str) -> Cell:
        if key == "node":
            return (n.node, "")
        if key == "up":
            return ("up", "ok") if n.up else ("DOWN", "bad") if n.up is False else ("?", "warn")
        if key == "age":
            return (_age(n), "bad" if (n.last_seen_age_s or 0) > 120 else "muted")
        if key == "sandboxes":
            return (str(n.sandboxes), "")
        if key == "crit":
            return (str(n.critical), "bad") if n.critical else ("0", "muted")
        if key == "warn":
            return (str(n.warning), "warn") if n.warning else ("0", "muted")
        if key == "in":
            return (fmt_rate(n.in_bps), "")
        if key == "out":
            return (fmt_rate(n.out_bps), "")
        if key == "lost":
            return _lost_cell(n)
        if key == "oneway":
            return (str(n.one_way), "bad") if n.one_way else ("0", "muted")
        if key == "dead":
            return (str(n.dead_vmms), "bad") if n.dead_vmms else ("0", "muted")
        if key == "drops":
            return (f"{n.rate_limit_drops_ps:.0f}/s", "warn") if n.rate_limit_drops_ps \
                else ("-", "muted")
        return (sparkline(history).rjust(HISTORY), "accent")
    return tuple(one(c.key) for c in cols)


def node_matches(n: FleetNode, text: str) -> bool:
    negate = text.startswith("!")
    hit = (text[1:] if negate else text).lower() in n.node.lower()
    return not hit if negate else hit


NODES: RowModel[FleetNode] = RowModel(NODE_COLUMNS, lambda n: n.node, node_cells, node_matches,
                                      lambda n: n.in_bps + n.out_bps)


def _pod(s: FleetSandbox) -> str:
    return f"{s.pod_namespace}/{s.pod_name}" if s.pod_name else f"({s.sandbox_id[:12]})"


SANDBOX_COLUMNS: tuple[Column, ...] = (
    Column("pod", "POD", 28, 0, _pod),
    Column("id", "SANDBOX", 12, 2, lambda s: s.sandbox_id),
    Column("state", "STATE", 8, 1, lambda s: s.state),
    Column("model", "MODEL", 8, 3, lambda s: s.network_model),
    Column("in", "IN", 9, 1, lambda s: s.in_bps),
    Column("out", "OUT", 9, 1, lambda s: s.out_bps),
    Column("lost", "LOST", 7, 1, _lost),
    Column("redirect", "REDIRECT", 12, 0, lambda s: ",".join(s.missing_redirects)),
    Column("problems", "!", 3, 0, lambda s: s.critical * 100 + s.warning),
    Column("codes", "FINDINGS", 24, 2, lambda s: " ".join(s.codes)),
)


def sandbox_cells(cols: Sequence[Column], s: FleetSandbox, history: Sequence[float]
                  ) -> tuple[Cell, ...]:
    def one(key: str) -> Cell:
        if key == "pod":
            return (_pod(s), "")
        if key == "id":
            return (s.sandbox_id[:12], "")
        if key == "state":
            return (s.state, "bad" if s.state == "stale" else "ok" if s.state == "running"
                    else "warn")
        if key == "model":
            return (s.network_model, "")
        if key == "in":
            return (fmt_rate(s.in_bps), "")
        if key == "out":
            return (fmt_rate(s.out_bps), "")
        if key == "lost":
            return _lost_cell(s)
        if key == "redirect":
            return (f"{'+'.join(s.missing_redirects)} MISSING", "bad") \
                if s.missing_redirects else ("ok" if s.network_model == "tcfilter" else "-",
                                             "ok" if s.network_model == "tcfilter" else "muted")
        if key == "problems":
            n = s.critical + s.warning
            return (str(n), "bad" if s.critical else "warn") if n else ("", "")
        return (" ".join(s.codes), "muted")
    return tuple(one(c.key) for c in cols)


def sandbox_matches(s: FleetSandbox, text: str) -> bool:
    negate = text.startswith("!")
    needle = (text[1:] if negate else text).lower()
    hit = needle in " ".join((_pod(s), s.sandbox_id, s.state, s.network_model,
                              " ".join(s.codes))).lower()
    return not hit if negate else hit


SANDBOXES_OF_NODE: RowModel[FleetSandbox] = RowModel(
    SANDBOX_COLUMNS, lambda s: s.sandbox_id, sandbox_cells, sandbox_matches,
    lambda s: s.in_bps + s.out_bps)
