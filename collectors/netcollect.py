"""Network state of sandbox namespaces, read over cached netlink sockets.

One socket per namespace, keyed by the namespace file's (st_dev, st_ino). A socket pins its
namespace, so sockets of namespaces that were not seen in a cycle are closed at its end:
reading must not keep a deleted namespace alive.

Idle namespaces are not dumped again. Each sandbox socket listens to its namespace's link,
tc, route and IPv6 notifications, and every cycle asks the kernel only for the links'
counters (RTM_GETSTATS, a seventh of a link dump). When they are byte for byte the ones taken
with the last full dump (no packet crossed any link, so no tc counter could move either) and
no notification came, the last dump still holds as it is (actions keep times, not ages); its
peers are re-checked against the peer namespace's cached links. When counters moved but
nothing was notified, the links are the last dump's with the probe's counters and only tc is
dumped again — or, for a caller that asks (`collect`'s tc_every_s: the dashboard's rows off
screen), not before the last tc dump is that old; the tc counters handed out are then the
last dump's (`NetRead.tc_deferred`), and the namespace is not taken as idle until tc is read.
A caller may also spare a namespace the probe itself (`collect`'s read_every_s: the
dashboard's rows off screen): while its last read is younger than that (spread per namespace)
and nothing waits on its socket (a notification: a change), the last dump is handed out again
as it is (`NetRead.skipped`) — one poll, no request.
A full dump (links, tc, the main table's routes) is taken anyway after TC_FULL_EVERY_S and
TC_FULL_EVERY_CYCLES (spread over the namespaces, so a large node never re-dumps them all in
one cycle), for what the rules cannot see: a packet the namespace itself sends and its qdisc
drops. A kernel without RTM_GETSTATS is probed with the whole link dump instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from msgspec import Struct
from msgspec.structs import replace

from kata_top.collectors import netns
from kata_top.collectors.rtnetlink import (
    DecodeMemo,
    NetlinkError,
    NetnsDump,
    RtnlSocket,
    dump_netns,
    dump_tc,
    link_facts,
    link_stats,
    stats_by_ifindex,
)
from kata_top.collectors.safeopen import open_netns
from kata_top.model import Link, PeerInfo, evolve

if TYPE_CHECKING:
    from kata_top.collectors.read_ahead import ReadAhead

PEER_MAX_AGE_S = 60.0
# An idle namespace is dumped whole again anyway after at least this long and this many
# cycles: a net under the notifications, which tell every change shown (a lost one, ENOBUFS,
# counts as a change; tc counters only move with the link counters the probe reads). Each
# namespace's own interval lies between half and one and a half of it (from its inode), so
# full dumps spread over the cycles. Cycles too: an exporter scraped every 15 s would
# otherwise dump most namespaces whole at every scrape, with their decode memo rotated out.
TC_FULL_EVERY_S = 60.0
TC_FULL_EVERY_CYCLES = 20

PeerFacts = tuple[str | None, int | None, str | None]  # the peer's name, MTU, operstate


class _LastDump(Struct, frozen=True):
    probe: list[bytes]  # the counters (or link dump) taken with the full dump
    stats: dict[int, bytes]  # the probe's counters per ifindex (RTM_GETSTATS probe only)
    base: NetnsDump  # the full dump, peers not filled in
    dump: NetnsDump  # the same with peers
    peers: tuple[tuple[netns.NetnsId, int, PeerFacts], ...]  # what `dump` says of them
    due: float  # when the next full dump is taken anyway (monotonic time) …
    due_cycle: int  # … once this cycle is reached too
    tc_at: float  # when tc was last dumped (monotonic time)
    tc_behind: bool = False  # packets moved since: the dump's tc counters are not current


def _spread(key: netns.NetnsId) -> float:
    """A factor in [0.5, 1.5) fixed per namespace: its share of the full-dump schedule."""
    return 0.5 + (key.inode * 2654435761 % 1000) / 1000


class NetRead:
    """What one `NetCollector.collect` read of a namespace."""

    __slots__ = ("dump", "key", "notes", "skipped", "tc_deferred")

    def __init__(self, key: netns.NetnsId, dump: NetnsDump, tc_deferred: bool = False,
                 skipped: bool = False, notes: Sequence[tuple[int, bytes]] = ()) -> None:
        self.key = key  # the namespace's id (it may differ from the one asked: re-created)
        self.dump = dump
        self.tc_deferred = tc_deferred  # the dump's tc counters are an earlier collect's
        self.skipped = skipped  # the whole dump is an earlier collect's (read_every_s)
        self.notes = notes  # the tc notifications read (message type, body)


class NetCollector:
    def __init__(self, one_shot: bool = False, stats_probe: bool = True) -> None:
        # one_shot: a single collection (`snapshot` once): nothing is kept for a next one, so
        # no counters probe. The decode memo pays even within one collection: most
        # namespaces' loopback, noqueue qdiscs and u32 bookkeeping filters are the same bytes
        # but for counters, decoded once for all of them
        self._one_shot = one_shot
        self._socks: dict[netns.NetnsId, RtnlSocket] = {}
        self._seen: set[netns.NetnsId] = set()
        self._peer_cache: dict[tuple[netns.NetnsId, int], netns.NetnsId | None] = {}
        self._candidates: dict[netns.NetnsId, tuple[str, str]] = {}  # id -> (path, label)
        self._candidate_links: dict[netns.NetnsId, dict[int, PeerFacts]] = {}
        self._candidate_at: dict[netns.NetnsId, float] = {}
        # this cycle's open candidate namespace files (closed at its end: an fd pins a
        # namespace), and the candidate that held the last peer found (tried first: on a node
        # every pod's peer lives in the same namespace)
        self._candidate_fds: dict[netns.NetnsId, int] = {}
        self._last_peer_ns: netns.NetnsId | None = None
        self._links_now: dict[netns.NetnsId, dict[int, PeerFacts]] = {}  # this cycle's
        self._memo = DecodeMemo()
        self._early: dict[netns.NetnsId, tuple[netns.NetnsId, NetnsDump]] = {}  # read_ahead
        self._ahead: ReadAhead[netns.NetnsId, tuple[netns.NetnsId, NetnsDump]] | None = None
        self._last: dict[netns.NetnsId, _LastDump] = {}
        # False on a kernel without RTM_GETSTATS (found out at the first probe), or when asked:
        # the whole link dump is the probe then
        self._stats_probe = stats_probe
        self._cycle = 0  # begin_cycle calls so far
        self.tc_reused = 0  # namespaces not dumped again this cycle (for benchmarks and tests)
        self.restatted = 0  # namespaces whose links came from the counters probe this cycle
        self.skipped = 0  # namespaces not even probed this cycle (read_every_s)
        self._read_at: dict[netns.NetnsId, float] = {}  # a namespace's last probe or dump

    def begin_cycle(self, sandbox_ns: set[netns.NetnsId],
                    named: dict[netns.NetnsId, str] | None = None) -> None:
        """Index the namespaces a veth peer can live in: ours and named non-sandbox ones."""
        self._seen = set()
        self._close_candidate_fds()  # a cycle that ended without end_cycle (an exception)
        self._cycle += 1
        self._links_now = {}
        self.tc_reused = 0
        self.restatted = 0
        self.skipped = 0
        self._candidates = {}
        own = netns.own_netns_id()
        self._candidates[own] = ("/proc/thread-self/ns/net", "host")
        for nsid, name in (netns.named_netns() if named is None else named).items():
            if nsid not in sandbox_ns and nsid != own:
                self._candidates[nsid] = (os.path.join(netns.NETNS_RUN_DIR, name), name)

    def read_ahead(self, jobs: Sequence[tuple[str, netns.NetnsId]], workers: int) -> None:
        """One-shot only: fork workers - 1 helpers that read the later shares of these
        namespaces (path, id; in the order collect() will ask) while this process reads the
        first (collectors/read_ahead.py); collect() hands out what they read. Call right
        after begin_cycle."""
        if self._one_shot and workers > 1 and len(jobs) > 1:
            from kata_top.collectors.read_ahead import ReadAhead

            # The first namespace is read before the fork: the namespace its veth's peer
            # lives in (where a node's pod veths end) and that namespace's links are then
            # known to every helper, which would otherwise each dump the node's links (one
            # veth end per pod) again.
            path, key = jobs[0]
            with contextlib.suppress(Exception):  # collect() meets it again, and raises
                self._early[key] = self._read_dump(path, key)
            self._ahead = ReadAhead(jobs, workers, self._read_dump, self._forget_inherited)

    def _read_dump(self, path: str, key: netns.NetnsId) -> tuple[netns.NetnsId, NetnsDump]:
        """A one-shot read (a helper's too): the namespace's id and dump."""
        got = self._read(path, key)
        return got.key, got.dump

    def _forget_inherited(self) -> None:
        """In a forked helper: the parent's sockets and fds are its own, never read here."""
        for sock in self._socks.values():
            sock.close()
        self._socks = {}
        self._close_candidate_fds()
        self._ahead = None
        self._early = {}

    def _end_read_ahead(self) -> None:
        self._early = {}
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def end_cycle(self) -> None:
        self._end_read_ahead()
        self._close_candidate_fds()
        self._memo.rotate()
        for key in list(self._socks):
            if key not in self._seen:
                self._socks.pop(key).close()
        self._peer_cache = {k: v for k, v in self._peer_cache.items() if k[0] in self._seen}
        self._last = {k: v for k, v in self._last.items() if k in self._socks}
        self._read_at = {k: v for k, v in self._read_at.items() if k in self._last}
        for key in list(self._candidate_links):
            if key not in self._candidates:
                del self._candidate_links[key]

    def _close_candidate_fds(self) -> None:
        for fd in self._candidate_fds.values():
            os.close(fd)
        self._candidate_fds = {}

    def close(self) -> None:
        self._end_read_ahead()
        self._close_candidate_fds()
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()

    def _socket(self, path: str | None, key: netns.NetnsId,
                tc_events: bool = False, link_events: bool = False) -> RtnlSocket:
        """The cached socket of a namespace (path None: our own), marked seen this cycle."""
        sock = self._socks.get(key)
        if sock is None:
            sock = RtnlSocket.open(path, tc_events=tc_events, link_events=link_events)
            self._socks[key] = sock
        self._seen.add(key)
        return sock

    def collect(self, path: str, key: netns.NetnsId | None = None, tc_every_s: float = 0.0,
                read_every_s: float = 0.0) -> NetRead:
        """Full dump of the namespace at path (key: its id, if just stat'ed).
        FileNotFoundError when it is gone.

        tc_every_s: when packets moved and nothing was reconfigured, dump tc (qdisc, filter
        and action counters) again only if the last tc dump is older than this (spread per
        namespace like the full dumps); the links' counters are read every time, and a
        notified change dumps everything at once. `NetRead.tc_deferred` then tells that the tc
        counters handed out are an earlier collect's. 0: tc every time.
        read_every_s: not even the links' counters are read again before the last read is
        that old (spread per namespace), unless a notification waits: `NetRead.skipped` then
        tells that the whole dump is an earlier collect's. 0: read every time."""
        key = key or netns.netns_id(path)
        if self._early:
            early = self._early.pop(key, None)
            if early is not None:
                return NetRead(*early)
        if self._ahead is not None:
            got = self._ahead.take(key)  # raises what a helper's read raised
            if got is not None:  # a helper read it
                return NetRead(*got)
        return self._read(path, key, tc_every_s, read_every_s)

    def _read(self, path: str, key: netns.NetnsId, tc_every_s: float = 0.0,
              read_every_s: float = 0.0) -> NetRead:
        sock = self._socket(path, key, tc_events=True)
        if read_every_s and self._skippable(key, sock, read_every_s):
            self.skipped += 1
            return NetRead(key, self._last[key].dump, tc_deferred=True, skipped=True)
        try:
            dump, deferred = self._dump(key, sock, tc_every_s)
        except (ValueError, LookupError, ArithmeticError):  # struct.error is a ValueError
            # A message we could not decode: start this namespace afresh next cycle, and let
            # the engine make it this sandbox's error.
            self._socks.pop(key, None)
            self._last.pop(key, None)
            sock.close()
            raise
        except OSError:
            # A namespace deleted and re-created under the same name: reopen once.
            self._socks.pop(key, None)
            self._last.pop(key, None)
            sock.close()
            key = netns.netns_id(path)
            sock = self._socket(path, key, tc_events=True)
            dump, deferred = self._dump(key, sock, tc_every_s)
        return NetRead(key, dump, tc_deferred=deferred, notes=sock.take_notifications())

    def _skippable(self, key: netns.NetnsId, sock: RtnlSocket, read_every_s: float) -> bool:
        """Whether the namespace's last dump can be handed out unread: read recently enough,
        nothing notified since (a waiting message; one poll), its veths' peers unchanged."""
        last = self._last.get(key)
        read_at = self._read_at.get(key)
        return (last is not None and read_at is not None
                and time.monotonic() - read_at < read_every_s * _spread(key)
                and not sock.pending()
                and not any(self._peer_facts(c, i) != f for c, i, f in last.peers))

    def _probe(self, sock: RtnlSocket) -> list[bytes]:
        if self._stats_probe:
            try:
                return sock.dump_stats()
            except NetlinkError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._stats_probe = False
        return sock.dump_links()

    def _dump(self, key: netns.NetnsId, sock: RtnlSocket, tc_every_s: float
              ) -> tuple[NetnsDump, bool]:
        """The namespace's dump, and whether its tc counters are an earlier dump's."""
        if self._one_shot:
            return self._with_peers(key, sock,
                                    dump_netns(sock, memo=self._memo, routes=True))[0], False
        probe = self._probe(sock)
        notified = sock.take_notified()  # after the probe, which read what was queued
        now = self._read_at[key] = time.monotonic()
        last = self._last.get(key)
        if last is not None and sock.tc_events and not notified and \
                (now < last.due or self._cycle < last.due_cycle):
            if last.probe == probe and not last.tc_behind:
                self.tc_reused += 1
                dump = last.dump
                if any(self._peer_facts(c, i) != f for c, i, f in last.peers):
                    dump, peers = self._with_peers(key, sock, last.base)
                    self._last[key] = replace(last, dump=dump, peers=peers)
                return dump, False  # the very same objects: actions keep times, not ages
            # Packets moved, nothing was reconfigured: the links are the last dump's with the
            # probe's counters; only tc (whose counters moved too) is dumped again.
            moved = self._restat(last, probe) if self._stats_probe else None
            if moved is not None:
                stats, base_links, links = moved
                self.restatted += 1
                if tc_every_s and now - last.tc_at < tc_every_s * _spread(key):
                    # counters only: the last tc dump's objects stand (their counters older)
                    dump = replace(last.dump, links=links)
                    self._last[key] = replace(last, probe=probe, stats=stats,
                                              base=replace(last.base, links=base_links),
                                              dump=dump, tc_behind=True)
                    return dump, True
                tc = dump_tc(sock, {lk.ifindex: lk.name for lk in links}, self._memo)
                base = NetnsDump(base_links, last.base.peer_nsids, *tc, routes=last.base.routes)
                dump = NetnsDump(links, last.dump.peer_nsids, *tc, routes=last.dump.routes)
                self._last[key] = replace(last, probe=probe, stats=stats, base=base, dump=dump,
                                          tc_at=now, tc_behind=False)
                return dump, False
        # The probe was taken before the dumps: a packet that crosses in between makes the
        # next probe differ (a dump again), never a stale dump reused.
        base = dump_netns(sock, memo=self._memo, routes=True,
                          raw_links=None if self._stats_probe else probe)
        dump, peers = self._with_peers(key, sock, base)
        spread = _spread(key)
        self._last[key] = _LastDump(probe, stats_by_ifindex(probe) if self._stats_probe else {},
                                    base, dump, peers, time.monotonic() + TC_FULL_EVERY_S * spread,
                                    self._cycle + round(TC_FULL_EVERY_CYCLES * spread), now)
        return dump, False

    @staticmethod
    def _restat(last: _LastDump, probe: list[bytes]
                ) -> tuple[dict[int, bytes], tuple[Link, ...], tuple[Link, ...]] | None:
        """The last dump's links (without and with peers) with the probe's counters; None
        when the probe does not list exactly those links. A link whose counters did not
        move keeps its very object."""
        stats = stats_by_ifindex(probe)
        if stats.keys() != {lk.ifindex for lk in last.base.links}:
            return None
        base: list[Link] = []
        links: list[Link] = []
        for b, lk in zip(last.base.links, last.dump.links, strict=True):
            raw = stats[b.ifindex]
            if raw == last.stats.get(b.ifindex):
                base.append(b)
                links.append(lk)
            else:
                new = link_stats(raw)
                base.append(evolve(b, stats=new))
                links.append(evolve(lk, stats=new))
        return stats, tuple(base), tuple(links)

    def _peer_facts(self, cand: netns.NetnsId, ifindex: int) -> PeerFacts:
        return self._links_of(cand, ifindex).get(ifindex, (None, None, None))

    def _peer_ns(self, key: netns.NetnsId, sock: RtnlSocket, nsid: int) -> netns.NetnsId | None:
        cache_key = (key, nsid)
        if cache_key in self._peer_cache:
            return self._peer_cache[cache_key]
        found: netns.NetnsId | None = None
        order = list(self._candidates)
        if self._last_peer_ns in self._candidates:
            order.remove(self._last_peer_ns)
            order.insert(0, self._last_peer_ns)
        for cand in order:
            fd = self._candidate_fds.get(cand)
            if fd is None:
                try:
                    fd = open_netns(self._candidates[cand][0])  # checked, never blocking
                except OSError:
                    continue
                self._candidate_fds[cand] = fd
            try:
                if sock.peer_nsid(fd) == nsid:
                    found = self._last_peer_ns = cand
                    break
            except OSError:
                continue
        self._peer_cache[cache_key] = found
        return found

    def _links_of(self, cand: netns.NetnsId, ifindex: int) -> dict[int, PeerFacts]:
        """The peer namespace's links by ifindex. A node holds one veth end per pod (1,000
        links on a dense node), so this index is kept across cycles and read again only when
        the namespace tells of a link change, on a miss, or every PEER_MAX_AGE_S."""
        links = self._links_now.get(cand)
        if links is not None and ifindex in links:
            return links  # asked, and checked for news, already this cycle
        path, _ = self._candidates[cand]
        own = not path.startswith(netns.NETNS_RUN_DIR)
        try:
            sock = self._socket(None if own else path, cand, link_events=True)
        except OSError:
            return {}
        links = self._candidate_links.get(cand)
        if (links is None or ifindex not in links or sock.pending()
                or time.monotonic() - self._candidate_at.get(cand, 0.0) >= PEER_MAX_AGE_S):
            try:
                # only what a peer shows: a node's 1,000 veth ends are not decoded whole
                links = dict(link_facts(body) for body in sock.dump_links())
            except OSError:
                links = {}
            sock.take_notified()
            sock.take_notifications()
            self._candidate_links[cand] = links
            self._candidate_at[cand] = time.monotonic()
        # (a link change told in the rest of this cycle is read at the next: one check per
        # namespace and cycle, not one per veth peer looked up in it)
        self._links_now[cand] = links
        return links

    def _with_peers(self, key: netns.NetnsId, sock: RtnlSocket, dump: NetnsDump
                    ) -> tuple[NetnsDump, tuple[tuple[netns.NetnsId, int, PeerFacts], ...]]:
        """The dump with each veth's peer named, and what was looked up for it."""
        if not dump.peer_nsids:
            return dump, ()
        links: list[Link] = []
        seen: list[tuple[netns.NetnsId, int, PeerFacts]] = []
        for lk in dump.links:
            nsid = dump.peer_nsids.get(lk.ifindex)
            if lk.kind != "veth" or nsid is None or lk.parent_ifindex is None:
                links.append(lk)
                continue
            peer = PeerInfo(ifindex=lk.parent_ifindex, netnsid=nsid)
            cand = self._peer_ns(key, sock, nsid)
            if cand is not None:
                facts = self._peer_facts(cand, lk.parent_ifindex)
                seen.append((cand, lk.parent_ifindex, facts))
                peer = PeerInfo(ifindex=lk.parent_ifindex, netnsid=nsid,
                                netns=self._candidates[cand][1], name=facts[0], mtu=facts[1],
                                operstate=facts[2])
            links.append(evolve(lk, peer=peer))
        return evolve(dump, links=tuple(links)), tuple(seen)
