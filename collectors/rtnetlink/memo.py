"""Decode each rtnetlink message's configuration once; re-read only its counters each cycle.

A namespace dumps the same links, qdiscs, classes and filters every second. What differs from
one cycle to the next is counters (only where traffic passed) and the kernel's action ages (on
every dump: the kernel reports install and last-use times as ages). Decoding the whole message
again was most of a collection's CPU, so a message is split in two:

- its configuration: the message with every counter and age payload zeroed. The decoded object
  is memoised under these bytes; a changed MTU, qdisc, target or filter is a new key and is
  decoded afresh;
- its counters: fixed-layout payloads at offsets found by one walk of the message, decoded and
  patched into the memoised object.

The offsets are kept per message header and length, and re-checked each time: the rtattr
header in front of every recorded payload must still carry the same type and length, or the
message is walked again. Payloads that kata-top never decodes (IPv6 ICMP statistics, u32 hit
counters, options of actions other than mirred) are zeroed and not patched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kata_top.collectors.rtnetlink import decode as rtnl
from kata_top.collectors.rtnetlink.netlink import IFINFOMSG, IFLA_STATS64, TCF_T, TCMSG, attr_spans
from kata_top.model import ActionStats, Filter, Link, Qdisc, TcClass, evolve

# What a span of a message is: zeroed only, or zeroed and patched back from the raw message.
MASK, LINK_STATS, QDISC_STATS, ACTION_STATS, ACTION_AGES = range(5)

# <linux/if_link.h>, <linux/if_addr.h>, <linux/pkt_cls.h>, <linux/pkt_sched.h>
IFLA_STATS = 7
IFLA_INET6_STATS, IFLA_INET6_CACHEINFO, IFLA_INET6_ICMP6STATS = 3, 5, 6
TCA_STATS, TCA_XSTATS = 3, 4
TCA_U32_PCNT, TCA_MATCHALL_PCNT = 9, 4
CLASSIFIER_COUNTERS = {"u32": TCA_U32_PCNT, "matchall": TCA_MATCHALL_PCNT}

Span = tuple[int, int, int, int, int]  # payload start, end, rtattr type, what, action number
Layout = tuple[Span, ...]
_MISS = object()


def link_layout(body: bytes) -> Layout:
    spans: list[Span] = []
    for atype, a0, a1 in attr_spans(body, IFINFOMSG.size, len(body)):
        if atype == IFLA_STATS64:
            spans.append((a0, a1, atype, LINK_STATS, 0))
        elif atype == IFLA_STATS:
            spans.append((a0, a1, atype, MASK, 0))
        elif atype == rtnl.IFLA_AF_SPEC:
            for family, f0, f1 in attr_spans(body, a0, a1):
                if family != rtnl.AF_INET6:
                    continue
                for t, x0, x1 in attr_spans(body, f0, f1):
                    if t in (IFLA_INET6_STATS, IFLA_INET6_CACHEINFO, IFLA_INET6_ICMP6STATS):
                        spans.append((x0, x1, t, MASK, 0))
    return tuple(spans)


def tc_layout(body: bytes) -> Layout:
    """Qdiscs and classes: the statistics attributes."""
    spans: list[Span] = []
    for atype, a0, a1 in attr_spans(body, TCMSG.size, len(body)):
        if atype == rtnl.TCA_STATS2:
            spans.append((a0, a1, atype, QDISC_STATS, 0))
        elif atype in (TCA_STATS, TCA_XSTATS):
            spans.append((a0, a1, atype, MASK, 0))
    return tuple(spans)


def filter_layout(body: bytes) -> Layout:
    """Filters: per action its statistics and ages; the classifier's own hit counters."""
    spans: list[Span] = []
    act_attr = counters = None
    for atype, a0, a1 in attr_spans(body, TCMSG.size, len(body)):
        if atype == rtnl.TCA_KIND:
            kind = body[a0:a1].split(b"\0", 1)[0].decode(errors="replace")
            act_attr = rtnl.ACT_ATTR_BY_CLASSIFIER.get(kind)
            counters = CLASSIFIER_COUNTERS.get(kind)
        elif atype == rtnl.TCA_OPTIONS and act_attr is not None:
            for otype, o0, o1 in attr_spans(body, a0, a1):
                if otype == counters:
                    spans.append((o0, o1, otype, MASK, 0))
                if otype != act_attr:
                    continue
                for n, (_prio, p0, p1) in enumerate(attr_spans(body, o0, o1)):
                    akind = b""
                    for xtype, x0, x1 in attr_spans(body, p0, p1):
                        if xtype == rtnl.TCA_ACT_KIND:
                            akind = body[x0:x1].split(b"\0", 1)[0]
                        elif xtype == rtnl.TCA_ACT_STATS:
                            spans.append((x0, x1, xtype, ACTION_STATS, n))
                        elif xtype == rtnl.TCA_ACT_OPTIONS and akind != b"mirred":
                            spans.append((x0, x1, xtype, MASK, n))
                        elif xtype == rtnl.TCA_ACT_OPTIONS:
                            for t, t0, t1 in attr_spans(body, x0, x1):
                                if t == rtnl.TCA_MIRRED_TM and t1 - t0 >= TCF_T.size:
                                    spans.append((t0, t1, t, ACTION_AGES, n))
    return tuple(spans)


def _fits(body: bytes, layout: Layout) -> bool:
    """Every recorded payload still sits behind an rtattr of its type and length."""
    return all(attr_spans(body, a0 - 4, a1)[:1] == [(atype, a0, a1)]
               for a0, a1, atype, _what, _n in layout)


def masked(body: bytes, layout: Layout) -> bytes:
    if not layout:
        return body
    out = bytearray(body)
    for a0, a1, _t, _what, _n in layout:
        out[a0:a1] = bytes(a1 - a0)
    return bytes(out)


class DecodeMemo:
    """Decoded configurations and message layouts seen in this cycle and the one before."""

    def __init__(self) -> None:
        self._old: dict[tuple[str, bytes], Any] = {}
        self._new: dict[tuple[str, bytes], Any] = {}
        self._old_layouts: dict[tuple[str, bytes, int], Layout] = {}
        self._new_layouts: dict[tuple[str, bytes, int], Layout] = {}
        self._names: dict[int, str] | None = None
        self._names_key = b""

    def _key_of(self, names: dict[int, str]) -> bytes:
        """A namespace's ifindex→name map as key bytes (dump_netns passes one dict per
        namespace, so this is computed once per namespace, not per message)."""
        if names is not self._names:
            self._names, self._names_key = names, repr(sorted(names.items())).encode()
        return self._names_key

    def rotate(self) -> None:
        """End of a cycle: forget what was not seen in it."""
        self._old, self._new = self._new, {}
        self._old_layouts, self._new_layouts = self._new_layouts, {}

    def _layout(self, kind: str, body: bytes, walk: Callable[[bytes], Layout]) -> Layout:
        sig = (kind, body[:TCMSG.size], len(body))
        lay = self._new_layouts.get(sig)
        if lay is None:
            lay = self._old_layouts.get(sig)
        if lay is None or not _fits(body, lay):
            lay = walk(body)
        self._new_layouts[sig] = lay
        return lay

    def _exact(self, key: tuple[str, bytes]) -> Any:
        """What was stored under key this cycle or the last (kept for the next); _MISS if
        nothing. With a raw message as key: its finished object, cheaper than masking."""
        hit = self._new.get(key, _MISS)
        if hit is _MISS:
            hit = self._old.get(key, _MISS)
            if hit is not _MISS:
                self._new[key] = hit
        return hit

    def _get(self, key: tuple[str, bytes], decode: Callable[[], Any]) -> Any:
        hit = self._exact(key)
        if hit is _MISS:
            hit = self._new[key] = decode()
        return hit

    def link(self, body: bytes) -> tuple[Link, int | None]:
        done = self._exact(("link=", body))
        if done is not _MISS:
            return done  # type: ignore[no-any-return]
        lay = self._layout("link", body, link_layout)
        config = masked(body, lay)
        link, nsid = self._get(("link", config), lambda: rtnl.decode_link(config))
        for a0, a1, _t, what, _n in lay:
            if what == LINK_STATS:
                link = evolve(link, stats=rtnl.link_stats(body[a0:a1]))
        self._new[("link=", body)] = (link, nsid)
        return link, nsid

    def qdisc(self, body: bytes, names: dict[int, str]) -> tuple[int, Qdisc]:
        exact = ("qdisc=", body + self._key_of(names))
        done = self._exact(exact)
        if done is not _MISS:
            return done  # type: ignore[no-any-return]
        lay = self._layout("tc", body, tc_layout)
        config = masked(body, lay)
        # A qdisc names its device only by ifindex: the names are part of the key.
        ifindex, q = self._get(("qdisc", config + self._key_of(names)),
                               lambda: rtnl.decode_qdisc(config, names))
        for a0, a1, _t, what, _n in lay:
            if what == QDISC_STATS:
                q = evolve(q, stats=rtnl.gnet_stats(body[a0:a1]))
        self._new[exact] = (ifindex, q)
        return ifindex, q

    def tc_class(self, body: bytes, names: dict[int, str]) -> TcClass:
        lay = self._layout("tc", body, tc_layout)
        config = masked(body, lay)
        c: TcClass = self._get(("class", config + self._key_of(names)),
                               lambda: rtnl.decode_class(config, names))
        for a0, a1, _t, what, _n in lay:
            if what == QDISC_STATS:
                c = evolve(c, stats=rtnl.gnet_stats(body[a0:a1]))
        return c

    def filter(self, body: bytes, names: dict[int, str],
               now: float | None = None) -> Filter | None:
        lay = self._layout("filter", body, filter_layout)
        config = masked(body, lay)
        f: Filter | None = self._get(("filter", config + self._key_of(names)),
                                     lambda: rtnl.decode_filter(config, names))
        if f is None or not f.actions or not lay:
            return f
        changes: list[dict[str, Any]] = [{} for _ in f.actions]
        for a0, a1, _t, what, n in lay:
            if n >= len(changes):
                continue
            if what == ACTION_STATS:
                changes[n]["stats"] = self._action_stats(body[a0:a1])
            elif what == ACTION_AGES:
                install, lastuse = TCF_T.unpack_from(body, a0)
                if now is None:
                    now = time.time()
                changes[n]["installed_at"] = now - install / rtnl.USER_HZ
                changes[n]["last_used_at"] = now - lastuse / rtnl.USER_HZ
        return evolve(f, actions=tuple(evolve(a, **c) if c else a
                                       for a, c in zip(f.actions, changes, strict=True)))

    def _action_stats(self, raw: bytes) -> ActionStats:
        hit: ActionStats = self._get(("action-stats", raw), lambda: rtnl.action_stats(raw))
        return hit

