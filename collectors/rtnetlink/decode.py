"""Decode rtnetlink messages into model objects (links, qdiscs, classes, filters, routes).

Only the attributes kata-top shows are decoded; offsets follow <linux/if_link.h>,
<linux/pkt_sched.h>, <linux/pkt_cls.h> and <linux/tc_act/tc_mirred.h>.
"""

from __future__ import annotations

import socket
import time

from kata_top.collectors.rtnetlink.netlink import (
    GNET_STATS_BASIC,
    GNET_STATS_QUEUE,
    IF_STATS_MSG,
    IFINFOMSG,
    IFLA_STATS64,
    IFLA_STATS_LINK_64,
    RT_TABLE_MAIN,
    RTA_TABLE,
    RTMSG,
    RTNL_LINK_STATS64,
    S32,
    TC_HTB_GLOB,
    TC_MIRRED_EACTION_AT,
    TC_MIRRED_EACTION_IFINDEX,
    TC_RATESPEC_RATE_AT,
    TC_U32_KEY,
    TC_U32_KEY_SIZE,
    TC_U32_SEL_KEYS_AT,
    TCF_T,
    TCMSG,
    U32,
    U64,
    cstr,
    first_attrs,
    parse_attr_list,
    parse_attrs,
    u8,
    u32,
)
from kata_top.model import (
    Action,
    ActionStats,
    Filter,
    Link,
    LinkStats,
    Qdisc,
    QdiscStats,
    Route,
    TcClass,
    TunInfo,
)

# if_link.h
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO = 10, 16, 18  # (IFLA_STATS64: netlink.py's)
IFLA_CARRIER, IFLA_LINK_NETNSID = 33, 37
IFLA_AF_SPEC, AF_INET6, IFLA_INET6_CONF = 26, 10, 2
DEVCONF_DISABLE_IPV6 = 26  # index into IFLA_INET6_CONF's array of s32 (uapi/linux/ipv6.h)
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_TUN_TYPE, IFLA_TUN_PI, IFLA_TUN_VNET_HDR = 3, 4, 5
IFLA_TUN_MULTI_QUEUE, IFLA_TUN_NUM_QUEUES = 7, 8
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

# pkt_sched.h / pkt_cls.h / gen_stats.h
TCA_KIND, TCA_OPTIONS, TCA_STATS2 = 1, 2, 7
TCA_STATS_BASIC, TCA_STATS_QUEUE, TCA_STATS_PKT64 = 1, 3, 8
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
TCA_U32_SEL, TCA_U32_ACT = 5, 7
TCA_MATCHALL_ACT = 2
TCA_FLOWER_ACT = 3
TCA_ACT_KIND, TCA_ACT_OPTIONS, TCA_ACT_STATS = 1, 2, 4
TCA_MIRRED_TM, TCA_MIRRED_PARMS = 1, 2
MIRRED_EACTIONS = {
    1: ("redirect", "egress"),
    2: ("mirror", "egress"),
    3: ("redirect", "ingress"),
    4: ("mirror", "ingress"),
}
ACT_ATTR_BY_CLASSIFIER = {"u32": TCA_U32_ACT, "matchall": TCA_MATCHALL_ACT,
                          "flower": TCA_FLOWER_ACT}
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
TC_H_CLSACT_EGRESS = 0xFFFFFFF3
INGRESS_HANDLE = 0xFFFF0000
USER_HZ = 100
ETH_P_ALL = 0x0003
PROTOCOLS = {0x0003: "all", 0x0800: "ip", 0x86DD: "ipv6", 0x0806: "arp", 0x8100: "802.1Q"}

LINK_ATTRS = frozenset({IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER,
                        IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_STATS64, IFLA_CARRIER,
                        IFLA_LINK_NETNSID, IFLA_AF_SPEC})
TC_ATTRS = frozenset({TCA_KIND, TCA_OPTIONS, TCA_STATS2})


def fmt_handle(h: int) -> str:
    if h == TC_H_ROOT:
        return "root"
    if h == 0:
        return "none"
    major, minor = h >> 16, h & 0xFFFF
    return f"{major:x}:" if minor == 0 else f"{major:x}:{minor:x}"


def fmt_parent(h: int) -> str:
    if h in (TC_H_ROOT, TC_H_INGRESS):
        return {TC_H_ROOT: "root", TC_H_INGRESS: "ffff:fff1"}[h]
    return fmt_handle(h)


def _mac(b: bytes | None) -> str | None:
    return b.hex(":") if b else None


def link_stats(b: bytes) -> LinkStats:
    """struct rtnl_link_stats64: the first eight counters."""
    if len(b) < RTNL_LINK_STATS64.size:
        return LinkStats()
    rxp, txp, rxb, txb, rxe, txe, rxd, txd = RTNL_LINK_STATS64.unpack_from(b)
    return LinkStats(rx_bytes=rxb, rx_packets=rxp, tx_bytes=txb, tx_packets=txp,
                     rx_dropped=rxd, tx_dropped=txd, rx_errors=rxe, tx_errors=txe)


_INFO_ATTRS = frozenset({IFLA_INFO_KIND, IFLA_INFO_DATA})
_AF_INET6_ONLY = frozenset({AF_INET6})
_INET6_CONF_ONLY = frozenset({IFLA_INET6_CONF})


def decode_link(body: bytes) -> tuple[Link, int | None]:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
    a = parse_attrs(body, IFINFOMSG.size, LINK_ATTRS)
    kind = "device"
    tun: TunInfo | None = None
    info = parse_attrs(a[IFLA_LINKINFO], 0, _INFO_ATTRS) if IFLA_LINKINFO in a else {}
    if IFLA_INFO_KIND in info:
        kind = cstr(info[IFLA_INFO_KIND]) or "device"
    elif flags & IFF_LOOPBACK:
        kind = "loopback"
    if kind == "tun" and IFLA_INFO_DATA in info:
        td = parse_attrs(info[IFLA_INFO_DATA])
        tun = TunInfo(
            type="tap" if u8(td.get(IFLA_TUN_TYPE)) == 2 else "tun",
            pi=bool(u8(td.get(IFLA_TUN_PI))),
            vnet_hdr=bool(u8(td.get(IFLA_TUN_VNET_HDR))),
            multi_queue=bool(u8(td.get(IFLA_TUN_MULTI_QUEUE))),
            num_queues=u32(td.get(IFLA_TUN_NUM_QUEUES)),
        )
    stats = link_stats(a[IFLA_STATS64]) if IFLA_STATS64 in a else LinkStats()
    ipv6_disabled: bool | None = None
    if IFLA_AF_SPEC in a:
        # only IPv6's configuration is read: its statistics and the other families' nests
        # are not copied out
        inet6 = parse_attrs(a[IFLA_AF_SPEC], 0, _AF_INET6_ONLY).get(AF_INET6, b"")
        conf = parse_attrs(inet6, 0, _INET6_CONF_ONLY).get(IFLA_INET6_CONF)
        if conf and len(conf) >= S32.size * (DEVCONF_DISABLE_IPV6 + 1):
            ipv6_disabled = bool(S32.unpack_from(conf, S32.size * DEVCONF_DISABLE_IPV6)[0])
    oper = u8(a.get(IFLA_OPERSTATE))
    carrier = u8(a.get(IFLA_CARRIER))
    link_ifindex = u32(a.get(IFLA_LINK))
    return Link(
        name=cstr(a.get(IFLA_IFNAME)) or f"if{index}",
        ifindex=index,
        kind=kind,
        mtu=u32(a.get(IFLA_MTU)) or 0,
        mac=_mac(a.get(IFLA_ADDRESS)),
        operstate=OPERSTATES[oper] if oper is not None and oper < len(OPERSTATES) else "unknown",
        up=bool(flags & IFF_UP),
        carrier=None if carrier is None else bool(carrier),
        stats=stats,
        master=u32(a.get(IFLA_MASTER)),
        parent_ifindex=link_ifindex if link_ifindex and link_ifindex != index else None,
        tun=tun,
        peer=None,
        ipv6_disabled=ipv6_disabled,
    ), u32(a.get(IFLA_LINK_NETNSID))


def stats_by_ifindex(replies: list[bytes]) -> dict[int, bytes]:
    """An RTM_GETSTATS dump (IFLA_STATS_LINK_64) as each link's rtnl_link_stats64 bytes."""
    out: dict[int, bytes] = {}
    for body in replies:
        if len(body) < IF_STATS_MSG.size:
            continue
        _family, ifindex, _mask = IF_STATS_MSG.unpack_from(body)
        raw = parse_attrs(body, IF_STATS_MSG.size).get(IFLA_STATS_LINK_64)
        if raw is not None:
            out[ifindex] = raw
    return out


PEER_ATTRS = frozenset({IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE})


def link_facts(body: bytes) -> tuple[int, tuple[str | None, int | None, str | None]]:
    """A link's ifindex, name, MTU and operstate only (what a veth's peer shows)."""
    index = IFINFOMSG.unpack_from(body)[2]
    a = first_attrs(body, IFINFOMSG.size, PEER_ATTRS)
    oper = u8(a.get(IFLA_OPERSTATE))
    return index, (cstr(a.get(IFLA_IFNAME)) or f"if{index}", u32(a.get(IFLA_MTU)) or 0,
                   OPERSTATES[oper] if oper is not None and oper < len(OPERSTATES)
                   else "unknown")


def action_stats(b: bytes | None) -> ActionStats:
    """A tc action's counters (its TCA_ACT_STATS, a gnet_stats nest)."""
    st = gnet_stats(b)
    return ActionStats(bytes=st.bytes, packets=st.packets, drops=st.drops,
                       overlimits=st.overlimits)


def gnet_stats(b: bytes | None) -> QdiscStats:
    if not b:
        return QdiscStats()
    s = parse_attrs(b)
    nbytes = packets = 0
    if TCA_STATS_BASIC in s and len(s[TCA_STATS_BASIC]) >= GNET_STATS_BASIC.size:
        nbytes, packets = GNET_STATS_BASIC.unpack_from(s[TCA_STATS_BASIC])
    if TCA_STATS_PKT64 in s and len(s[TCA_STATS_PKT64]) >= U64.size:
        # The 32-bit packet counter wraps; the kernel adds the 64-bit one when it matters.
        packets = U64.unpack_from(s[TCA_STATS_PKT64])[0]
    qlen = backlog = drops = requeues = overlimits = 0
    if TCA_STATS_QUEUE in s and len(s[TCA_STATS_QUEUE]) >= GNET_STATS_QUEUE.size:
        qlen, backlog, drops, requeues, overlimits = GNET_STATS_QUEUE.unpack_from(
            s[TCA_STATS_QUEUE])
    return QdiscStats(bytes=nbytes, packets=packets, drops=drops, overlimits=overlimits,
                      requeues=requeues, backlog=backlog, qlen=qlen)


def _tcmsg(body: bytes) -> tuple[int, int, int, int, dict[int, bytes]]:
    _family, ifindex, handle, parent, info = TCMSG.unpack_from(body)
    return ifindex, handle, parent, info, parse_attrs(body, TCMSG.size, TC_ATTRS)


def decode_qdisc(body: bytes, names: dict[int, str]) -> tuple[int, Qdisc]:
    ifindex, handle, parent, _info, a = _tcmsg(body)
    kind = cstr(a.get(TCA_KIND)) or "?"
    default: str | None = None
    if kind == "htb" and TCA_OPTIONS in a:
        opts = parse_attrs(a[TCA_OPTIONS])
        if TCA_HTB_INIT in opts and len(opts[TCA_HTB_INIT]) >= TC_HTB_GLOB.size:
            defcls = TC_HTB_GLOB.unpack_from(opts[TCA_HTB_INIT])[2]
            default = f"{defcls:x}"
    return ifindex, Qdisc(dev=names.get(ifindex, f"if{ifindex}"), kind=kind,
                          handle=fmt_handle(handle), parent=fmt_parent(parent),
                          stats=gnet_stats(a.get(TCA_STATS2)), default_class=default)


def decode_class(body: bytes, names: dict[int, str]) -> TcClass:
    ifindex, handle, parent, _info, a = _tcmsg(body)
    kind = cstr(a.get(TCA_KIND)) or "?"
    rate = ceil = None
    if kind == "htb" and TCA_OPTIONS in a:
        opts = parse_attrs(a[TCA_OPTIONS])
        parms = opts.get(TCA_HTB_PARMS)
        if parms and len(parms) >= 24:
            # struct tc_ratespec is 12 bytes with the rate (bytes/s) in its last u32.
            rate_at, ceil_at = TC_RATESPEC_RATE_AT
            rate = U32.unpack_from(parms, rate_at)[0] * 8
            ceil = U32.unpack_from(parms, ceil_at)[0] * 8
        # Past 4 GB/s the kernel adds 64-bit rates; a short attribute is ignored, not fatal.
        if len(opts.get(TCA_HTB_RATE64, b"")) >= U64.size:
            rate = U64.unpack_from(opts[TCA_HTB_RATE64])[0] * 8
        if len(opts.get(TCA_HTB_CEIL64, b"")) >= U64.size:
            ceil = U64.unpack_from(opts[TCA_HTB_CEIL64])[0] * 8
    return TcClass(dev=names.get(ifindex, f"if{ifindex}"), kind=kind, handle=fmt_handle(handle),
                   parent=fmt_parent(parent), rate_bps=rate, ceil_bps=ceil,
                   stats=gnet_stats(a.get(TCA_STATS2)))


def _decode_action(b: bytes, names: dict[int, str], now: float) -> Action:
    a = parse_attrs(b)
    kind = cstr(a.get(TCA_ACT_KIND)) or "?"
    stats = action_stats(a.get(TCA_ACT_STATS))
    action = direction = None
    target_ifindex: int | None = None
    installed = last_used = None
    if kind == "mirred" and TCA_ACT_OPTIONS in a:
        opts = parse_attrs(a[TCA_ACT_OPTIONS])
        parms = opts.get(TCA_MIRRED_PARMS)
        if parms and len(parms) >= TC_MIRRED_EACTION_AT + TC_MIRRED_EACTION_IFINDEX.size:
            eaction, target_ifindex = TC_MIRRED_EACTION_IFINDEX.unpack_from(
                parms, TC_MIRRED_EACTION_AT)
            action, direction = MIRRED_EACTIONS.get(eaction, (f"eaction-{eaction}", None))
        tm = opts.get(TCA_MIRRED_TM)
        if tm and len(tm) >= TCF_T.size:
            install, lastuse = TCF_T.unpack_from(tm)
            installed, last_used = now - install / USER_HZ, now - lastuse / USER_HZ
    return Action(kind=kind, action=action, direction=direction,
                  target=names.get(target_ifindex) if target_ifindex else None,
                  target_ifindex=target_ifindex, stats=stats,
                  installed_at=installed, last_used_at=last_used)


def _u32_match_all(opts: dict[int, bytes]) -> bool:
    sel = opts.get(TCA_U32_SEL)
    if not sel or len(sel) < TC_U32_SEL_KEYS_AT:
        return False
    nkeys = sel[2]
    at, size = TC_U32_SEL_KEYS_AT, TC_U32_KEY_SIZE
    keys = [TC_U32_KEY.unpack_from(sel, at + size * i) for i in range(nkeys)
            if at + size * (i + 1) <= len(sel)]
    return all(mask == 0 for mask, _val, _off, _offmask in keys)


def decode_filter(body: bytes, names: dict[int, str],
                  now: float | None = None) -> Filter | None:
    """A filter with its actions, or None for the u32 bookkeeping entries (root, hash table).
    `now`: when the dump was read (the kernel tells actions' ages; they become times)."""
    ifindex, handle, parent, info, a = _tcmsg(body)
    kind = cstr(a.get(TCA_KIND)) or "?"
    if TCA_OPTIONS not in a:
        return None
    opts = parse_attrs(a[TCA_OPTIONS])
    act_attr = ACT_ATTR_BY_CLASSIFIER.get(kind)
    actions: tuple[Action, ...] = ()
    if act_attr is not None and act_attr in opts:
        at = time.time() if now is None else now
        actions = tuple(_decode_action(b, names, at) for _prio, b in
                        parse_attr_list(opts[act_attr]))
    if kind == "u32" and not actions and TCA_U32_SEL not in opts:
        return None  # one u32 filter dumps as three messages; only the key carries actions
    proto = socket.ntohs(info & 0xFFFF)
    return Filter(
        dev=names.get(ifindex, f"if{ifindex}"),
        parent=fmt_parent(parent),
        kind=kind,
        prio=info >> 16,
        protocol=PROTOCOLS.get(proto, f"0x{proto:04x}"),
        handle=f"{handle:x}" if kind != "u32" else f"{handle >> 20:x}::{handle & 0xFFF:x}",
        match_all=kind == "matchall" or (kind == "u32" and _u32_match_all(opts)),
        actions=actions,
    )


# rtnetlink.h: route attributes, the main table, unicast routes, the MTU metric
# (RTA_TABLE and RT_TABLE_MAIN: netlink.py's, whose route dump asks for the table)
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_METRICS = 1, 4, 5, 8
RT_TABLE_COMPAT, RTN_UNICAST, RTAX_MTU = 252, 1, 2
ROUTE_ATTRS = frozenset({RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_METRICS, RTA_TABLE})


def decode_route(body: bytes, names: dict[int, str]) -> Route | None:
    """A main-table unicast route (None for any other), with its MTU metric if it has one."""
    family, dst_len, _src_len, _tos, table, _proto, _scope, rtype, _flags = \
        RTMSG.unpack_from(body)
    # The header tells most routes apart (the local table's, broadcast, multicast): skip
    # them before their attributes. A table id above 255 reads RT_TABLE_COMPAT here.
    if rtype != RTN_UNICAST or table not in (RT_TABLE_MAIN, RT_TABLE_COMPAT):
        return None
    a = parse_attrs(body, RTMSG.size, ROUTE_ATTRS)
    table = u32(a.get(RTA_TABLE)) or table
    if table != RT_TABLE_MAIN or family not in (socket.AF_INET, socket.AF_INET6):
        return None
    size = 4 if family == socket.AF_INET else 16
    dst_raw = a.get(RTA_DST)
    if dst_raw is not None and len(dst_raw) == size:
        dst = f"{socket.inet_ntop(family, dst_raw)}/{dst_len}"
    elif dst_len == 0:
        dst = "default"
    else:
        return None
    gw_raw = a.get(RTA_GATEWAY)
    gateway = socket.inet_ntop(family, gw_raw) if gw_raw and len(gw_raw) == size else None
    oif = u32(a.get(RTA_OIF))
    mtu = u32(parse_attrs(a[RTA_METRICS]).get(RTAX_MTU)) if RTA_METRICS in a else None
    return Route(dst=dst, dev=names.get(oif, f"if{oif}") if oif is not None else None,
                 gateway=gateway, mtu=mtu or None)
