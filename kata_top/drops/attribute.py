"""Drops → sandboxes and hops: a drop's network namespace inode names the sandbox (each
sandbox's netns inode is in the snapshot); a drop on the node's end of a sandbox's veth pair
is that sandbox's too, shown on the node side; the rest belongs to no sandbox."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from kata_top.drops.meaning import explain, hop_of
from kata_top.drops.model import (
    HOPS,
    DropCount,
    DropLine,
    DropReport,
    OtherDrops,
    RawTrace,
    SandboxDrops,
    Side,
)
from kata_top.model import Sandbox, Snapshot


def _pod(sb: Sandbox) -> str | None:
    if sb.pod.name is None:
        return None
    return f"{sb.pod.namespace}/{sb.pod.name}" if sb.pod.namespace else sb.pod.name


def _eth0(sb: Sandbox) -> str:
    for lk in sb.links:
        if lk.kind == "veth" and lk.peer is not None:
            return lk.name
    return "eth0"


def _line(c: DropCount, sb: Sandbox | None, node_side: bool) -> DropLine:
    hop = hop_of(c.device, c.reason, eth0=_eth0(sb) if sb else "eth0",
                 tap=sb.tap_name if sb else None, node_side=node_side,
                 function=c.function) if sb else "other"
    meaning, fix = explain(c.reason, hop)
    return DropLine(reason=c.reason, count=c.count, device=c.device, function=c.function,
                    hop=hop, meaning=meaning, fix=fix, reason_code=c.reason_code)


def _sorted(lines: Iterable[DropLine]) -> tuple[DropLine, ...]:
    return tuple(sorted(lines, key=lambda d: (HOPS.index(d.hop), -d.count, d.reason,
                                              d.device or "", d.function)))


def build_report(raw: RawTrace, snap: Snapshot, sandbox_ids: set[str] | None = None,
                 sandbox_filter: str | None = None) -> DropReport:
    """The report of `raw` against the sandboxes of `snap` (only `sandbox_ids`, when given:
    then drops of no sandbox are left out too)."""
    by_inode = {sb.netns.inode: sb for sb in snap.sandboxes
                if sb.netns.inode and sb.network_model != "none"}
    # the node's end of each pair: the veth peer's name outside the sandbox's namespace
    node_end: dict[str, Sandbox] = {}
    for one in snap.sandboxes:
        for lk in one.links:
            if lk.kind == "veth" and lk.peer is not None and lk.peer.name:
                node_end.setdefault(lk.peer.name, one)
        if one.network_model == "none" and one.tap_name:
            node_end.setdefault(one.tap_name, one)
    groups: dict[tuple[str, Side], list[DropLine]] = defaultdict(list)
    others: dict[int, list[DropLine]] = defaultdict(list)
    for c in raw.counts:
        sb = by_inode.get(c.netns_inode)
        side: Side = "sandbox"
        if sb is None and c.device is not None and c.device in node_end:
            sb, side = node_end[c.device], "node"
        if sb is None:
            others[c.netns_inode].append(_line(c, None, False))
        elif sandbox_ids is None or sb.id in sandbox_ids:
            groups[(sb.id, side)].append(_line(c, sb, side == "node"))
    sandboxes = []
    for (sid, side), lines in groups.items():
        owner = snap.find(sid)
        assert owner is not None
        sandboxes.append(SandboxDrops(sandbox_id=sid, pod=_pod(owner), side=side,
                                      netns_inode=owner.netns.inode if side == "sandbox"
                                      else None, drops=_sorted(lines),
                                      total=sum(d.count for d in lines)))
    sandboxes.sort(key=lambda s: (-s.total, s.pod or "", s.sandbox_id, s.side))
    other = () if sandbox_ids is not None else tuple(sorted(
        (OtherDrops(netns_inode=ino, drops=_sorted(lines), total=sum(d.count for d in lines))
         for ino, lines in others.items()), key=lambda o: -o.total))
    total = sum(s.total for s in sandboxes) + sum(o.total for o in other)
    return DropReport(node=snap.host.node, started_at=raw.started_at, seconds=raw.seconds,
                      traced_seconds=raw.traced_seconds, interrupted=raw.interrupted,
                      total=total, sandboxes=tuple(sandboxes), other=other,
                      sandbox_filter=sandbox_filter)
