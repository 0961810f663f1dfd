"""Change detection: what changed between two snapshots, and what the kernel said changed.
(The pipeline's last stage, kata_top/pipeline.py.)

Pure functions over Snapshots plus two side inputs the engine gathers as it collects: the tc
change notifications each sandbox's socket received (so a filter added and removed between two
collections is still an event) and the audit log's new lines (so kata-top's own actions are
told apart from anyone else's).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kata_top import rates
from kata_top.events.drops import DropTracker
from kata_top.model import Event, EventKind, Sandbox, Severity, Snapshot, TcChange, evolve
from kata_top.select import label

# kinds a write action of kata-top's can cause: attributed to it when its audit entry for
# the same sandbox arrives in the same cycle
WRITE_KINDS = frozenset({"redirect-added", "redirect-removed", "rate-limit-set",
                         "rate-limit-changed", "rate-limit-cleared", "qdisc-replaced",
                         "filter-added", "filter-removed"})


def _ev(at: float, kind: EventKind, sev: Severity, sb: Sandbox | None, summary: str,
        before: Any = None, after: Any = None, source: str = "diff") -> Event:
    return Event(at=at, kind=kind, severity=sev, summary=summary,
                 sandbox_id=sb.id if sb else None, pod=label(sb) if sb else None,
                 before=before, after=after, source=source)  # type: ignore[arg-type]


def _sandbox_events(at: float, p: Sandbox, c: Sandbox,
                    drops: DropTracker | None = None) -> Iterable[Event]:
    # An idle sandbox is handed out with the very objects of the last cycle (the engine's
    # memo, rates reused when nothing moved), most often as the very same Sandbox: nothing
    # to compare.
    if (p.links is c.links and p.qdiscs is c.qdiscs and p.redirects is c.redirects
            and p.rate_limits is c.rate_limits and p.hypervisor is c.hypervisor
            and p.virtiofsd is c.virtiofsd and p.rates is c.rates and p.findings == c.findings
            and (drops is None or drops.quiet(c.id))):
        return
    who = label(c)
    # Most sandboxes change nothing between two collections: the cheap comparisons first.
    if p.hypervisor.alive and not c.hypervisor.alive:
        yield _ev(at, "vmm-exited", "critical", c, f"{who}: the VMM"
                  + (f" (pid {p.hypervisor.pid})" if p.hypervisor.pid else "") + " exited",
                  p.hypervisor.pid, None)
    elif p.hypervisor.pid and c.hypervisor.pid and p.hypervisor.pid != c.hypervisor.pid:
        yield _ev(at, "vmm-restarted", "warning", c, f"{who}: the VMM restarted (pid "
                  f"{p.hypervisor.pid} → {c.hypervisor.pid})", p.hypervisor.pid,
                  c.hypervisor.pid)
    alive_before = {v.pid for v in p.virtiofsd if v.alive}
    for v in c.virtiofsd:
        if v.pid in alive_before and not v.alive:
            yield _ev(at, "virtiofsd-exited", "critical", c, f"{who}: virtiofsd (pid {v.pid}) "
                      "exited", v.pid, None)
    if [r.present for r in p.redirects] != [r.present for r in c.redirects]:
        yield from _redirect_events(at, p, c, who)
    if p.rate_limits != c.rate_limits:
        yield from _limit_events(at, p, c, who)
    if p.qdiscs is not c.qdiscs:
        yield from _qdisc_events(at, p, c, who)
    yield from _link_events(at, p, c, who, drops)
    if p.findings != c.findings:
        yield from _finding_events(at, p, c)


def _redirect_events(at: float, p: Sandbox, c: Sandbox, who: str) -> Iterable[Event]:
    before_red = {r.direction: r for r in p.redirects}
    for r in c.redirects:
        pr = before_red.get(r.direction)
        if pr is not None and pr.present != r.present:
            kind: EventKind = "redirect-added" if r.present else "redirect-removed"
            what = "restored" if r.present else f"sent to {r.elsewhere} instead" \
                if r.elsewhere else "removed"
            yield _ev(at, kind, "info" if r.present else "critical", c,
                      f"{who}: redirect {r.direction} ({r.from_dev} → {r.to_dev}) {what}",
                      pr.present, r.present)


def _limit_events(at: float, p: Sandbox, c: Sandbox, who: str) -> Iterable[Event]:
    limits_before = {lim.direction: lim.rate_bps for lim in p.rate_limits}
    limits_now = {lim.direction: lim.rate_bps for lim in c.rate_limits}
    for d in sorted(set(limits_before) | set(limits_now)):
        old, new = limits_before.get(d), limits_now.get(d)
        if old == new:
            continue
        kind: EventKind = "rate-limit-set" if old is None else "rate-limit-cleared" \
            if new is None else "rate-limit-changed"
        yield _ev(at, kind, "info", c, f"{who}: rate limit {d} {_bits(old)} → {_bits(new)}",
                  old, new)


def _qdisc_events(at: float, p: Sandbox, c: Sandbox, who: str) -> Iterable[Event]:
    roots_before = {q.dev: (q.kind, q.handle) for q in p.qdiscs if q.parent == "root"}
    for q in c.qdiscs:
        old_root = roots_before.get(q.dev)
        if q.parent == "root" and old_root is not None and old_root != (q.kind, q.handle):
            yield _ev(at, "qdisc-replaced", "info", c, f"{who}: root qdisc of {q.dev} "
                      f"{old_root[0]} → {q.kind}", old_root[0], q.kind)


def _link_events(at: float, p: Sandbox, c: Sandbox, who: str,
                 drops: DropTracker | None) -> Iterable[Event]:
    links_before = {lk.name: lk for lk in p.links}
    for lk in c.links:
        pl = links_before.get(lk.name)
        if pl is None or pl.ifindex != lk.ifindex:
            continue
        if pl.mtu != lk.mtu:
            yield _ev(at, "mtu-changed", "warning", c, f"{who}: MTU of {lk.name} {pl.mtu} → "
                      f"{lk.mtu}", pl.mtu, lk.mtu)
        was_up = pl.up and pl.carrier is not False
        is_up = lk.up and lk.carrier is not False
        if was_up != is_up:
            yield _ev(at, "link-up" if is_up else "link-down", "info" if is_up else "warning",
                      c, f"{who}: {lk.name} went {'up' if is_up else 'down'}", was_up, is_up)
        old_drops = rates.link_drops(p, lk.name)
        new_drops = rates.link_drops(c, lk.name)
        if old_drops is None or new_drops is None:
            continue
        if drops is not None:
            turn = drops.update((c.id, lk.name), at, new_drops)
            changed = turn is not None
        else:
            changed = (old_drops == 0) != (new_drops == 0)
        if changed:
            kind: EventKind = "drops-started" if new_drops else "drops-stopped"
            yield _ev(at, kind, "warning" if new_drops else "info", c,
                      f"{who}: {lk.name} {'drops' if new_drops else 'stopped dropping'}"
                      + (f" {new_drops:.1f} pkt/s" if new_drops else ""), old_drops, new_drops)


def _unjudged(c: Sandbox) -> bool:
    """The sandbox could not be read this time (its namespace, or the whole of it): a
    finding missing from it is not known to be fixed, so it is not `cleared` — only when its
    evidence is read again and gone."""
    return any(e.where in ("netns", "collect") for e in c.errors)


def _finding_events(at: float, p: Sandbox, c: Sandbox) -> Iterable[Event]:
    codes_before = {f.code: f for f in p.findings}
    codes_now = {f.code: f for f in c.findings}
    for code in sorted(set(codes_now) - set(codes_before)):
        f = codes_now[code]
        if f.severity != "info":
            yield _ev(at, "finding-raised", f.severity, c, f"{code}: {f.summary}", None, code)
    unjudged = _unjudged(c)
    for code in sorted(set(codes_before) - set(codes_now)):
        f = codes_before[code]
        if f.severity != "info" and not unjudged:
            yield _ev(at, "finding-cleared", "info", c, f"{code} cleared: {f.summary}", code,
                      None)


def _bits(bps: int | None) -> str:
    from kata_top.units import fmt_rate

    return "none" if bps is None else fmt_rate(bps)


def diff_events(prev: Snapshot | None, cur: Snapshot,
                tc_changes: Mapping[str, Sequence[TcChange]] | None = None,
                actions: Sequence[dict[str, Any]] = (),
                drops: DropTracker | None = None) -> tuple[Event, ...]:
    """Everything that changed from prev to cur. Filter changes the kernel told about are
    reported from its notifications (also when undone before this collection) instead of the
    redirect diff; kata-top's own actions from the audit log are events too, and changes to
    a sandbox kata-top acted on in this cycle are attributed to it."""
    at = cur.taken_at
    out: list[Event] = []
    tc_changes = tc_changes or {}
    if prev is not None:
        before = {sb.id: sb for sb in prev.sandboxes}
        now = {sb.id: sb for sb in cur.sandboxes}
        for sid in now.keys() - before.keys():
            out.append(_ev(at, "sandbox-appeared", "info", now[sid],
                           f"{label(now[sid])}: sandbox appeared ({now[sid].state})"))
        for sid in before.keys() - now.keys():
            out.append(_ev(at, "sandbox-disappeared", "info", before[sid],
                           f"{label(before[sid])}: sandbox gone"))
        for sid in now.keys() & before.keys():
            for e in _sandbox_events(at, before[sid], now[sid], drops):
                if e.kind in ("redirect-added", "redirect-removed") and tc_changes.get(sid):
                    continue  # the notifications below tell it, with what happened between
                out.append(e)
        if drops is not None:
            drops.forget_except(set(now))
    by_id = {sb.id: sb for sb in cur.sandboxes}
    for sid, changes in tc_changes.items():
        sb = by_id.get(sid)
        if sb is None:
            continue
        for ch in changes:
            what = f"redirect to {ch.target}" if ch.target else "filter"
            out.append(_ev(at, "filter-added" if ch.added else "filter-removed",
                           "info" if ch.added else "warning", sb,
                           f"{label(sb)}: {what} on {ch.dev} (prio {ch.prio}) "
                           f"{'added' if ch.added else 'removed'}", None,
                           {"dev": ch.dev, "parent": ch.parent, "prio": ch.prio,
                            "target": ch.target}, source="netlink"))
    acted: set[str] = set()
    root = cur.host.run_root
    known = {sb.id for sb in cur.sandboxes} | ({sb.id for sb in prev.sandboxes} if prev
                                               else set())
    for entry in actions:
        sid = str(entry.get("sandbox") or "")
        # One audit log serves every run root on the node: an action is this stream's only
        # when it names this run root, or (entries that do not) a sandbox of it.
        named = entry.get("run_root")
        if (named is None and sid not in known) or (
                named is not None and os.path.normpath(str(named)) != os.path.normpath(root)):
            continue
        if entry.get("changed"):
            acted.add(sid)
        out.append(Event(at=at, kind="action", severity="info",
                         summary=f"kata-top {entry.get('operation')}: {entry.get('result')}",
                         sandbox_id=sid or None, pod=str(entry.get("pod") or "") or None,
                         after={"ok": entry.get("ok"), "user": entry.get("user")},
                         source="audit", by="kata-top"))
    if acted:
        out = [evolve(e, by="kata-top") if e.sandbox_id in acted and e.kind in WRITE_KINDS
               else e for e in out]
    return tuple(evolve(e, run_root=root) for e in out)
