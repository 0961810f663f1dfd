"""Change detection: what changed between two snapshots, and what the kernel said changed.

Pure functions over Snapshots plus two side inputs the engine gathers as it collects: the tc
change notifications each sandbox's socket received (so a filter added and removed between two
collections is still an event) and the audit log's new lines (so kata-top's own actions are
told apart from anyone else's).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kata_top import rates
from kata_top.model import Event, EventKind, Sandbox, Severity, Snapshot, TcChange, evolve
from kata_top.select import label

EVENT_SCHEMA = "kata-top/event/1"
# kinds a write action of kata-top's can cause: attributed to it when its audit entry for
# the same sandbox arrives in the same cycle
WRITE_KINDS = frozenset({"redirect-added", "redirect-removed", "rate-limit-set",
                         "rate-limit-changed", "rate-limit-cleared", "qdisc-replaced",
                         "filter-added", "filter-removed"})


class DropTracker:
    """Drops started/stopped with hysteresis: a link that drops a packet every few seconds
    (traffic toward a dead VM's tap) is one `drops-started`, and `drops-stopped` comes only
    after QUIET_S without a drop — not an event pair every few seconds."""

    QUIET_S = 30.0

    def __init__(self) -> None:
        self._state: dict[tuple[str, str], tuple[bool, float]] = {}  # (dropping, last drop)
        self._dropping: set[tuple[str, str]] = set()
        self._known: set[str] = set()  # sandboxes with links tracked

    def update(self, key: tuple[str, str], t: float, drops_ps: float) -> str | None:
        known = self._state.get(key)
        dropping, last = known if known else (False, t)
        self._known.add(key[0])
        if drops_ps > 0:
            self._state[key] = (True, t)
            self._dropping.add(key)
            return "started" if known is not None and not dropping else None
        if dropping and t - last >= self.QUIET_S:
            self._state[key] = (False, last)
            self._dropping.discard(key)
            return "stopped"
        self._state[key] = (dropping, last)
        return None

    def quiet(self, sid: str) -> bool:
        """Tracked, and none of its links dropping: nothing here can turn without a drop."""
        return sid in self._known and not any(k[0] == sid for k in self._dropping)

    def forget_except(self, live: set[str]) -> None:
        self._state = {k: v for k, v in self._state.items() if k[0] in live}
        self._dropping = {k for k in self._dropping if k[0] in live}
        self._known &= live


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
        if entry.get("run_root") not in (None, root) or (
                entry.get("run_root") is None and sid not in known):
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


class AuditTail:
    """The audit log's lines appended since the last call (kata-top's own actions), read
    without following a link and without blocking; a rotated or truncated log is re-read
    from its start."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Actions before we started are history, not events: start at the log's end. A log
        # that does not exist yet is read from its start when it appears.
        try:
            st = os.lstat(path)
            self._offset: int | None = st.st_size
            self._ino: int | None = st.st_ino
        except OSError:
            self._offset, self._ino = 0, None

    def new_entries(self) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if self._offset is None or (self._ino is not None and st.st_ino != self._ino) \
                    or st.st_size < self._offset:
                self._offset = 0  # rotated or truncated: the new log from its start
            self._ino = st.st_ino
            if st.st_size == self._offset:
                return []
            os.lseek(fd, self._offset, os.SEEK_SET)
            data = os.read(fd, min(st.st_size - self._offset, 4 << 20))
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        complete, rest = lines[:-1], lines[-1]  # a line being written waits for next time
        self._offset += len(data) - len(rest)
        out = []
        for line in complete:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


JOURNAL_MAX_BYTES = 8 << 20


def default_journal(run_root: str = "/run") -> str:
    """Where `kata-top serve` and `kata-top events --follow` keep a run root's events: the
    node's (/run) in events.ndjson, any other root's in a journal of its own."""
    if os.geteuid() == 0:
        base = "/var/lib/kata-top"
    else:
        base = os.path.join(os.environ.get("XDG_STATE_HOME")
                            or os.path.expanduser("~/.local/state"), "kata-top")
    root = os.path.normpath(run_root)
    if root in ("/run", "/var/run"):
        return os.path.join(base, "events.ndjson")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.strip("/"))[:60]
    tag = zlib.crc32(root.encode("utf-8", "surrogateescape")) & 0xFFFFFFFF
    return os.path.join(base, f"events-{slug}-{tag:08x}.ndjson")


def event_line(e: Event) -> str:
    from kata_top.formats.jsonout import to_plain

    return json.dumps({"schema": EVENT_SCHEMA, **to_plain(e)}, default=str)


def append_journal(path: str, events: Sequence[Event]) -> None:
    """Append events as NDJSON (kata-top/event/1), rotating to PATH.1 past 8 MiB. Best effort:
    a journal that cannot be written never stops a collection."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            if os.lstat(path).st_size > JOURNAL_MAX_BYTES:
                os.replace(path, path + ".1")
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                     os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, "".join(event_line(e) + "\n" for e in events).encode(
                "utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def read_journal(path: str) -> list[dict[str, Any]]:
    """The journal's events, oldest first (its rotated half first); damaged lines skipped."""
    from kata_top.collectors.safeopen import read_file

    out: list[dict[str, Any]] = []
    for p in (path + ".1", path):
        try:
            data = read_file(p, JOURNAL_MAX_BYTES * 2)
        except OSError:
            continue
        for line in data.split(b"\n"):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if _readable_event(doc):
                out.append(doc)
    return out


# An event's time must be one a clock can show: the journal is a file on disk, damaged by a
# full disk or a hand (a time of "yesterday", 1e400 or year 10^9 once stopped `kata-top
# events` with a traceback).
LATEST_EVENT_TIME = float(2 ** 33)  # the year 2242
_TEXT_FIELDS = ("kind", "severity", "summary", "sandbox_id", "pod", "source", "by")


def _readable_event(doc: Any) -> bool:
    """A journal line that is an event kata-top can filter and print: its schema, a finite
    time within what a clock shows, and text (or nothing) where an event has text."""
    if not isinstance(doc, dict) or doc.get("schema") != EVENT_SCHEMA:
        return False
    at = doc.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) \
            or not 0 <= at <= LATEST_EVENT_TIME:  # (nan compares false: refused too)
        return False
    return all(doc.get(k) is None or isinstance(doc[k], str) for k in _TEXT_FIELDS)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_since(text: str, now: float) -> float:
    """`10m`, `2h`, `90` (seconds) or an ISO time → a Unix time; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if m:
        mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - float(m.group(1)) * mult
    try:
        from datetime import datetime

        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--since takes 10m, 2h, 90 or an ISO time, got {text[:40]!r}") \
            from None


def event_matches(doc: dict[str, Any], since: float | None, sandbox: str | None,
                  run_root: str | None = None) -> bool:
    if since is not None and float(doc.get("at") or 0) < since:
        return False
    if run_root is not None and doc.get("run_root") not in (None, run_root):
        return False  # another run root's event (a journal shared by hand)
    if sandbox:
        sid, pod = str(doc.get("sandbox_id") or ""), str(doc.get("pod") or "")
        return sid.startswith(sandbox) or pod == sandbox
    return True


