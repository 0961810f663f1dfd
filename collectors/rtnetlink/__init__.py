"""rtnetlink, read without a library: a namespace's links, tc and routes as model objects.

The one entry for the rest of kata-top:
- `RtnlSocket` (netlink.py): a NETLINK_ROUTE socket in a namespace, its dumps with deadlines,
  its notifications; `NetlinkError`, `request_seconds` (time spent waiting on the kernel);
- `dump_netns`, `dump_tc`, `NetnsDump`, `tc_changes` (dump.py): a namespace read whole, and
  the filter notifications it received as changes;
- `DecodeMemo` (memo.py): messages that differ from last cycle's only in their counters are
  not decoded again;
- `link_facts`, `link_stats`, `stats_by_ifindex` (decode.py): what a veth's peer and a
  counters probe need.
The modules below decode untrusted bytes (decode.py), frame requests and replies
(netlink.py) and compare messages layout by layout (memo.py).
"""

from kata_top.collectors.rtnetlink.decode import link_facts, link_stats, stats_by_ifindex
from kata_top.collectors.rtnetlink.dump import NetnsDump, dump_netns, dump_tc, tc_changes
from kata_top.collectors.rtnetlink.memo import DecodeMemo
from kata_top.collectors.rtnetlink.netlink import NetlinkError, RtnlSocket, request_seconds

__all__ = ["DecodeMemo", "NetlinkError", "NetnsDump", "RtnlSocket", "dump_netns", "dump_tc",
           "link_facts", "link_stats", "request_seconds", "stats_by_ifindex", "tc_changes"]
