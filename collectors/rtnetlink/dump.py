"""A namespace's whole dump (links, qdiscs, classes, filters, routes) over an RtnlSocket, and
the tc notifications it received as changes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from msgspec import Struct

from kata_top.collectors.rtnetlink.decode import (
    INGRESS_HANDLE,
    TC_H_CLSACT_EGRESS,
    TC_H_CLSACT_INGRESS,
    decode_class,
    decode_filter,
    decode_link,
    decode_qdisc,
    decode_route,
    fmt_parent,
)
from kata_top.collectors.rtnetlink.netlink import (
    RTM_DELTFILTER,
    RTM_GETQDISC,
    RTM_GETTCLASS,
    RTM_GETTFILTER,
    RTM_NEWTFILTER,
    TCMSG,
    RtnlSocket,
)
from kata_top.model import Filter, Link, Qdisc, Route, TcChange, TcClass

if TYPE_CHECKING:
    from kata_top.collectors.rtnetlink.memo import DecodeMemo


class NetnsDump(Struct, frozen=True):
    links: tuple[Link, ...]
    peer_nsids: dict[int, int]  # ifindex -> IFLA_LINK_NETNSID
    qdiscs: tuple[Qdisc, ...]
    classes: tuple[TcClass, ...]
    filters: tuple[Filter, ...]
    routes: tuple[Route, ...] = ()


def dump_routes(sock: RtnlSocket, names: dict[int, str]) -> tuple[Route, ...]:
    return tuple(r for r in (decode_route(b, names) for b in sock.dump_routes()) if r)


def decode_links(raw: list[bytes], memo: DecodeMemo | None = None
                 ) -> tuple[tuple[Link, ...], dict[int, int]]:
    links: list[Link] = []
    peer_nsids: dict[int, int] = {}
    for body in raw:
        link, nsid = memo.link(body) if memo else decode_link(body)
        links.append(link)
        if nsid is not None:
            peer_nsids[link.ifindex] = nsid
    return tuple(links), peer_nsids


TcDump = tuple[tuple[Qdisc, ...], tuple[TcClass, ...], tuple[Filter, ...]]


def dump_tc(sock: RtnlSocket, names: dict[int, str], memo: DecodeMemo | None = None) -> TcDump:
    """Qdiscs, classes and filters of the socket's namespace (names: ifindex → link name)."""
    qdiscs: list[tuple[int, Qdisc]] = [
        memo.qdisc(b, names) if memo else decode_qdisc(b, names)
        for b in sock.dump_tc(RTM_GETQDISC)]
    classes: list[TcClass] = []
    filters: list[Filter] = []
    now = time.time()  # one time for the dump: its actions' ages count back from it
    # Filter and class dumps are per link and per parent: ask only where something can hang.
    for ifindex, q in qdiscs:
        if q.kind == "ingress":
            parents = [INGRESS_HANDLE]
        elif q.kind == "clsact":
            parents = [TC_H_CLSACT_INGRESS, TC_H_CLSACT_EGRESS]
        elif q.kind in ("htb", "hfsc", "drr", "prio") and q.parent == "root":
            classes.extend(memo.tc_class(b, names) if memo else decode_class(b, names)
                           for b in sock.dump_tc(RTM_GETTCLASS, ifindex=ifindex))
            parents = [int(q.handle.rstrip(":"), 16) << 16]
        else:
            continue
        for parent in parents:
            for b in sock.dump_tc(RTM_GETTFILTER, ifindex=ifindex, parent=parent):
                f = memo.filter(b, names, now) if memo else decode_filter(b, names, now)
                if f is not None:
                    filters.append(f)
    return tuple(q for _, q in qdiscs), tuple(classes), tuple(filters)


def dump_netns(sock: RtnlSocket, with_tc: bool = True, memo: DecodeMemo | None = None,
               routes: bool = False, raw_links: list[bytes] | None = None) -> NetnsDump:
    """Links, qdiscs, classes and filters of the socket's namespace (and the main table's
    routes if asked); with a memo, only what changed since the last cycle is decoded
    (memo.py). raw_links: a link dump already taken."""
    links, peer_nsids = decode_links(sock.dump_links() if raw_links is None else raw_links,
                                     memo)
    if not with_tc:
        return NetnsDump(links, peer_nsids, (), (), ())
    names = {lk.ifindex: lk.name for lk in links}
    return NetnsDump(links, peer_nsids, *dump_tc(sock, names, memo),
                     routes=dump_routes(sock, names) if routes else ())



def tc_changes(notes: Sequence[tuple[int, bytes]], links: Sequence[Link]) -> list[TcChange]:
    """Filter notifications (message type, body) as changes, device names from the
    namespace's links (qdisc and class changes are seen in the dumps)."""
    names = {lk.ifindex: lk.name for lk in links}
    # One u32 filter is notified as three messages (prio, hash table, key): one change each
    # (added or removed, device, parent, prio), keeping the redirect target if one said it.
    out: dict[tuple[bool, str, str, int], TcChange] = {}
    for mtype, body in notes:
        if mtype not in (RTM_NEWTFILTER, RTM_DELTFILTER) or len(body) < TCMSG.size:
            continue
        _fam, ifindex, _handle, parent, info = TCMSG.unpack_from(body)
        try:
            f = decode_filter(body, names)
        except (ValueError, LookupError, ArithmeticError):
            f = None
        target = next((a.target for a in f.actions if a.kind == "mirred"), None) if f else None
        change = TcChange(added=mtype == RTM_NEWTFILTER, dev=names.get(ifindex, f"if{ifindex}"),
                          parent=fmt_parent(parent), prio=info >> 16, target=target)
        key = (change.added, change.dev, change.parent, change.prio)
        if key not in out or (target and not out[key].target):
            out[key] = change
    return list(out.values())
