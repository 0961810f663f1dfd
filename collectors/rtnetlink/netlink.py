"""A minimal rtnetlink client: dumps on a raw socket and a decoder of only the attributes we read.

A generic client (pyroute2) decodes every attribute of every message into objects; kata-top
reads a few attributes of a namespace's dumps every second on nodes of a thousand sandboxes,
so it frames the requests itself and decodes only what it shows. The socket is created
inside the target namespace and keeps reading that namespace whatever thread later uses it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time

from kata_top.collectors import netns

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP_INTR = 0x10

RTM_GETLINK = 18
RTM_GETROUTE = 26
RTM_NEWLINK = 16
RTM_GETQDISC = 38
RTM_GETTCLASS = 42
RTM_GETTFILTER = 46
RTM_GETNSID = 90
RTM_GETSTATS = 94
SOL_NETLINK = 270
NETLINK_GET_STRICT_CHK = 12  # Linux 4.20: dump requests checked, and their filters honoured
NETLINK_ADD_MEMBERSHIP = 1
# Groups a namespace's socket listens to: links (up/down, MTU, rename, add/remove), tc
# (qdisc, class, filter, action), IPv6 addresses (disable_ipv6 switched on removes them at
# once; switched off, IPv6 tells with a link message) and IPv6 device settings.
RTNLGRP_LINK, RTNLGRP_TC, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_NETCONF = 1, 4, 9, 25
RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE = 7, 11  # routes (their MTU metric, KT-S016)
EVENT_GROUPS = sum(1 << (g - 1) for g in (RTNLGRP_LINK, RTNLGRP_TC, RTNLGRP_IPV6_IFADDR,
                                          RTNLGRP_IPV6_NETCONF, RTNLGRP_IPV4_ROUTE,
                                          RTNLGRP_IPV6_ROUTE))
IFLA_STATS_LINK_64 = 1  # RTM_GETSTATS filter: only each link's rtnl_link_stats64
RECV_TIMEOUT_S = 2.0
MAX_NOTES = 256  # tc notifications kept per namespace between two collections
RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTFILTER, RTM_DELTFILTER = 36, 37, 44, 45
TC_MESSAGES = range(36, 52)  # qdisc, class, filter, action and chain messages

# Every kernel struct this package reads or writes, named once (as pyroute2's message classes
# declare them); the decoders keep their speed by unpacking with these compiled Structs.
_NLMSGHDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # rtattr: len, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
RTGENMSG = struct.Struct("=Bxxx")  # family (RTM_GETNSID)
IF_STATS_MSG = struct.Struct("=BxxxII")  # family, ifindex, filter_mask (RTM_GETSTATS)
# rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
NLMSGERR_CODE = struct.Struct("=i")  # nlmsgerr.error (negative errno)
U32 = struct.Struct("=I")
S32 = struct.Struct("=i")
U64 = struct.Struct("=Q")
RTNL_LINK_STATS64 = struct.Struct("=8Q")  # the first eight counters of rtnl_link_stats64
GNET_STATS_BASIC = struct.Struct("=QI")  # bytes, packets (32-bit)
GNET_STATS_QUEUE = struct.Struct("=5I")  # qlen, backlog, drops, requeues, overlimits
TC_HTB_GLOB = struct.Struct("=5I")  # version, rate2quantum, defcls, debug, direct_pkts
TC_RATESPEC_RATE_AT = (8, 20)  # tc_htb_opt: offsets of rate.rate and ceil.rate (u32, bytes/s)
TC_MIRRED_EACTION_IFINDEX = struct.Struct("=iI")  # tc_mirred after tc_gen: eaction, ifindex
TC_MIRRED_EACTION_AT = 20
TCF_T = struct.Struct("=QQ")  # tcf_t: install, lastuse (the first two fields), in jiffies
TC_U32_KEY = struct.Struct("=IIii")  # mask, val, off, offmask
TC_U32_SEL_KEYS_AT, TC_U32_KEY_SIZE = 16, 16
NETNSA_NSID, NETNSA_FD = 1, 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

Attrs = dict[int, bytes]
RTA_TABLE, RT_TABLE_MAIN = 15, 254
IFLA_STATS64, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS = 23, 29, 1 << 3


class NetlinkError(OSError):
    pass


def parse_attrs(data: bytes | memoryview, offset: int = 0,
                wanted: frozenset[int] | None = None) -> Attrs:
    """Decode a run of rtattrs into {type: payload}; the last one of a type wins.

    With `wanted`, only those types are copied out (link dumps carry kilobytes of
    per-protocol configuration that kata-top never reads).
    """
    out: Attrs = {}
    end = len(data)
    unpack = _RTATTR.unpack_from
    while offset + 4 <= end:
        alen, atype = unpack(data, offset)
        if alen < 4 or offset + alen > end:
            break
        atype &= NLA_TYPE_MASK
        if wanted is None or atype in wanted:
            out[atype] = bytes(data[offset + 4 : offset + alen])
        offset += (alen + 3) & ~3
    return out


def first_attrs(data: bytes | memoryview, offset: int, wanted: frozenset[int]) -> Attrs:
    """The first attribute of each wanted type, read no further than the last one found: a
    link message carries ~40 attributes and a veth peer's name, MTU and operstate come in
    its first six (a node's 1,000 veth ends are indexed at every cold start)."""
    out: Attrs = {}
    need = len(wanted)
    end = len(data)
    unpack = _RTATTR.unpack_from
    while offset + 4 <= end:
        alen, atype = unpack(data, offset)
        if alen < 4 or offset + alen > end:
            break
        atype &= NLA_TYPE_MASK
        if atype in wanted and atype not in out:
            out[atype] = bytes(data[offset + 4 : offset + alen])
            if len(out) == need:
                break
        offset += (alen + 3) & ~3
    return out


def attr_spans(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(type, payload start, payload end) of each rtattr in data[start:end], in order,
    duplicates kept, nothing copied (the decode memo masks payloads by these offsets)."""
    out: list[tuple[int, int, int]] = []
    unpack = _RTATTR.unpack_from
    off = start
    while off + 4 <= end:
        alen, atype = unpack(data, off)
        if alen < 4 or off + alen > end:
            break
        out.append((atype & NLA_TYPE_MASK, off + 4, off + alen))
        off += (alen + 3) & ~3
    return out


def parse_attr_list(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """Like parse_attrs, but keeps order and duplicates (action lists)."""
    return [(t, data[a0:a1]) for t, a0, a1 in attr_spans(data, offset, len(data))]


def attr(atype: int, payload: bytes) -> bytes:
    raw = _RTATTR.pack(4 + len(payload), atype) + payload
    return raw + b"\0" * ((-len(raw)) % 4)


# A route dump of the main table only (rtm_table and RTA_TABLE both name it, as iproute2's
# `ip route show table main` asks; honoured with strict checking).
MAIN_TABLE_ROUTES = RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, RT_TABLE_MAIN, 0, 0, 0, 0) + \
    attr(RTA_TABLE, U32.pack(RT_TABLE_MAIN))


# A link dump without IPv6's per-device statistics (IFLA_INET6_STATS and ICMP6STATS, ~350
# of a link message's ~1,500 bytes, which the kernel sums over every possible CPU for each
# link): kata-top reads IPv6's configuration, never those. The link's own counters
# (IFLA_STATS64) stay; a kernel that dropped them too is asked without the mask (dump_links).
ALL_LINKS = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
LINKS_WITHOUT_IPV6_STATS = ALL_LINKS + attr(IFLA_EXT_MASK, U32.pack(RTEXT_FILTER_SKIP_STATS))
_STATS64_ONLY = frozenset({IFLA_STATS64})
_skip_keeps_counters: bool | None = None  # found out at this process's first link dump


def u32(b: bytes | None) -> int | None:
    return U32.unpack_from(b)[0] if b is not None and len(b) >= 4 else None


def s32(b: bytes | None) -> int | None:
    return S32.unpack_from(b)[0] if b is not None and len(b) >= 4 else None


def u8(b: bytes | None) -> int | None:
    return b[0] if b else None


def cstr(b: bytes | None) -> str | None:
    return b.split(b"\0", 1)[0].decode(errors="replace") if b is not None else None


# A dump batch is at most 32 KiB (netlink caps it at the largest read size it has seen, up
# to 32 KiB). One reusable buffer per thread, not per socket: 200 namespaces' sockets share
# one warm 64 KiB buffer instead of 200 cold ones, and threads never share one.
RECV_BUFFER = 1 << 16
_local = threading.local()


def receive_buffer_size() -> int:
    """The size of this thread's receive buffer (it grows when a reply did not fit)."""
    return len(_buffer())


def reset_receive_buffer(size: int = RECV_BUFFER) -> None:
    """This thread's receive buffer afresh, `size` bytes."""
    _local.buf = bytearray(size)


def link_dumps_skip_ipv6_stats() -> bool | None:
    """Whether this process's link dumps leave the IPv6 statistics out (the kernel keeps
    the link counters then); None before the first link dump."""
    return _skip_keeps_counters


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(RECV_BUFFER)
    return buf


def request_seconds() -> float:
    """Seconds this thread has spent in netlink requests (sending, waiting, receiving)."""
    return float(getattr(_local, "request_s", 0.0))


class RtnlSocket:
    """One NETLINK_ROUTE socket bound to the namespace it was created in."""

    def __init__(self, sock: socket.socket, tc_events: bool = False,
                 strict: bool = False) -> None:
        self._sock = sock
        # whether the kernel filters this socket's route dumps by table (strict checking)
        self.strict = strict
        self._seq = 0
        self.tc_events = tc_events
        # Set by any message that is not a reply to us (with tc_events: a link, a qdisc, class,
        # filter or action, or an IPv6 setting changed in this namespace) and by a lost
        # notification (ENOBUFS).
        self._notified = True
        self._notes: list[tuple[int, bytes]] = []

    @classmethod
    def open(cls, netns_path: str | None = None, tc_events: bool = False,
             link_events: bool = False) -> RtnlSocket:
        """A socket in the namespace at netns_path (None: ours). With tc_events it also
        listens to the namespace's link, tc and IPv6 setting changes, with link_events to
        its link changes only: a listener changes nothing."""
        groups = EVENT_GROUPS if tc_events else 1 << (RTNLGRP_LINK - 1) if link_events else 0

        def make() -> socket.socket:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            # A kernel that never answers (or a reply lost) must not hang the collector: recv
            # raises TimeoutError, which becomes that sandbox's error.
            s.settimeout(RECV_TIMEOUT_S)
            # The groups (all below 32) as bind()'s mask: one call, not one per group.
            s.bind((0, groups))
            return s

        sock = make() if netns_path is None else netns.run_in(netns_path, make)
        # Strict checking lets a route dump ask for the main table only (a namespace's local
        # table has more routes than its main one, all of them dumped and skipped before).
        # Every request here is one it accepts; an older kernel has no such option.
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            strict = True
        except OSError:
            strict = False
        return cls(sock, tc_events, strict)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def request(self, msg_type: int, payload: bytes, flags: int = NLM_F_DUMP) -> list[bytes]:
        """Send one request and collect every reply payload until DONE (or the single ack)."""
        t0 = time.perf_counter()
        try:
            return self._request(msg_type, payload, flags)
        finally:
            # the kernel's share of a collection (it builds a dump while we wait), for bench/
            _local.request_s = getattr(_local, "request_s", 0.0) + time.perf_counter() - t0

    def _request(self, msg_type: int, payload: bytes, flags: int) -> list[bytes]:
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type,
                                       NLM_F_REQUEST | flags, seq, 0) + payload)
        buf = _buffer()
        view = memoryview(buf)
        unpack = _NLMSGHDR.unpack_from
        recv_into = self._sock.recv_into
        out: list[bytes] = []
        while True:
            try:
                n = recv_into(buf)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._notified = True  # notifications were dropped: assume a change
                continue
            if n >= len(buf):
                # Possibly truncated: never decode half a datagram. Grow for the next cycle.
                _local.buf = bytearray(2 * len(buf))
                self._drain(buf)
                raise NetlinkError(errno.EMSGSIZE, "netlink reply larger than the buffer")
            off = 0
            while off + 16 <= n:
                mlen, mtype, _mflags, mseq, _ = unpack(buf, off)
                end = off + mlen
                if mlen < 16 or end > n:
                    raise NetlinkError(errno.EPROTO, "malformed netlink message")
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        code = -NLMSGERR_CODE.unpack_from(buf, off + 16)[0]
                        if code == 0:
                            return out
                        raise NetlinkError(code, os.strerror(code))
                    # NLM_F_DUMP_INTR (the table changed under the dump) needs nothing: the
                    # next cycle dumps again.
                    out.append(bytes(view[off + 16 : end]))
                    if not flags & NLM_F_DUMP:
                        return out
                else:
                    self._notified = True
                    if (self.tc_events and mtype in TC_MESSAGES
                            and len(self._notes) < MAX_NOTES):
                        # Kept, not only counted: a filter added and removed between two
                        # collections is seen only here (the dumps show neither).
                        self._notes.append((mtype, bytes(view[off + 16 : end])))
                off += (mlen + 3) & ~3

    def pending(self) -> bool:
        """Whether a message waits on the socket (between requests: a notification, or the
        error of notifications lost). Never waits: a zero-timeout poll, not a recv, which
        Python would let wait for the socket's timeout. poll, not select: a node with 1,000
        sandboxes holds sockets numbered beyond select's 1,024."""
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0))

    def take_notifications(self) -> list[tuple[int, bytes]]:
        """The tc change notifications (message type, body) read since the last call."""
        notes, self._notes = self._notes, []
        return notes

    def take_notified(self) -> bool:
        """Whether anything but our own replies arrived since the last call (read during
        requests: a request reads what was queued before its reply)."""
        seen, self._notified = self._notified, False
        return seen

    def _drain(self, buf: bytearray) -> None:
        """Discard what is left of an aborted dump so the next request starts clean."""
        self._sock.setblocking(False)
        try:
            while self._sock.recv_into(buf):
                pass
        except BlockingIOError:
            pass
        finally:
            self._sock.settimeout(RECV_TIMEOUT_S)

    def dump_links(self) -> list[bytes]:
        """Every link, without IPv6's statistics where the kernel keeps the link's own
        counters in such a dump (checked once per process, on its first link)."""
        global _skip_keeps_counters
        if _skip_keeps_counters is False:
            return self.request(RTM_GETLINK, ALL_LINKS)
        out = self.request(RTM_GETLINK, LINKS_WITHOUT_IPV6_STATS)
        if _skip_keeps_counters is None and out:
            _skip_keeps_counters = bool(first_attrs(out[0], IFINFOMSG.size, _STATS64_ONLY))
            if not _skip_keeps_counters:
                return self.request(RTM_GETLINK, ALL_LINKS)
        return out

    def dump_routes(self) -> list[bytes]:
        """The main table's routes of every family, or where the kernel does not filter
        dumps, every table's (the caller keeps the main table's either way)."""
        if self.strict:
            try:
                return self.request(RTM_GETROUTE, MAIN_TABLE_ROUTES)
            except NetlinkError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self.strict = False  # a kernel that refuses the filter: dump it all
        return self.request(RTM_GETROUTE, RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0))

    def dump_stats(self) -> list[bytes]:
        """Every link's 64-bit counters only (RTM_GETSTATS, Linux 4.7): about a seventh of
        a link dump's bytes, and a third of its time in the kernel."""
        return self.request(RTM_GETSTATS, IF_STATS_MSG.pack(socket.AF_UNSPEC, 0,
                                                            1 << (IFLA_STATS_LINK_64 - 1)))

    def dump_tc(self, msg_type: int, ifindex: int = 0, parent: int = 0) -> list[bytes]:
        return self.request(msg_type, TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0))

    def peer_nsid(self, ns_fd: int) -> int | None:
        """The id this namespace gives to the namespace behind ns_fd, or None if none assigned.

        RTM_GETNSID only looks up; unlike RTM_NEWNSID it never assigns an id.
        """
        payload = RTGENMSG.pack(socket.AF_UNSPEC) + attr(NETNSA_FD, U32.pack(ns_fd))
        replies = self.request(RTM_GETNSID, payload, flags=0)
        for body in replies:
            nsid = s32(parse_attrs(body, RTGENMSG.size).get(NETNSA_NSID))
            if nsid is not None and nsid >= 0:
                return nsid
        return None

