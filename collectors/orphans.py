"""Network namespaces a Kata sandbox left behind (kata-containers#6339, runtime#1640).

A named namespace (/run/netns) that no sandbox uses but that still holds a Kata tap
(`tap<N>_kata`) that no VMM holds (no carrier) outlived its sandbox: its tap and veth end
stay, and the node keeps both.
Looked at over rtnetlink (link names only) through the same never-creating namespace entry
as everything else; each socket is closed before the next namespace is looked at.
"""

from __future__ import annotations

import os
import re

from kata_top.collectors import netns
from kata_top.collectors.rtnetlink import RtnlSocket, link_facts

KATA_TAP_RE = re.compile(r"^tap\d+_kata$")


def orphan_namespaces(named: dict[netns.NetnsId, str], sandbox_ns: set[netns.NetnsId]
                      ) -> list[tuple[str, list[str]]]:
    """(namespace name, its Kata taps) for each named namespace no sandbox uses."""
    out: list[tuple[str, list[str]]] = []
    for nsid, name in sorted(named.items(), key=lambda kv: kv[1]):
        if nsid in sandbox_ns:
            continue
        try:
            sock = RtnlSocket.open(os.path.join(netns.NETNS_RUN_DIR, name))
        except (OSError, ValueError):
            continue  # gone, or not a namespace: nothing to say about it
        try:
            facts = [f for _idx, f in (link_facts(b) for b in sock.dump_links())]
        except (OSError, ValueError):
            continue
        finally:
            sock.close()
        # A tap a VMM holds has carrier (operstate up or unknown); one nobody holds does not:
        # a sandbox of another run root (a lab beside the node) is not taken for an orphan.
        taps = sorted(name for name, _mtu, oper in facts
                      if name and KATA_TAP_RE.match(name) and oper not in ("up", "unknown"))
        if taps:
            out.append((name, taps))
    return out
