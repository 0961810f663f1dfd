"""What a kernel drop reason means on a Kata sandbox's datapath, and what fixes it.

The reasons' names come from the running kernel (collectors/droptrace.py); this module only
explains the ones a Kata datapath meets, by hop. A reason it does not know is shown with its
kernel name and a pointer to the kernel's documentation of `enum skb_drop_reason`.
"""

from __future__ import annotations

from kata_top.drops.model import Hop

# (reason, hop) first, then (reason, None): (meaning, fix)
_MEANINGS: dict[tuple[str, Hop | None], tuple[str, str]] = {
    ("FULL_RING", "vmm"): (
        "the VMM is not reading the tap: its queue is full (guest frozen, or its virtio-net "
        "driver stuck)",
        "look at the VMM (kata-top's VMM status, `virsh`/QMP query-status) and the guest's "
        "virtio-net driver; a paused or wedged VM drains nothing"),
    ("DEV_READY", "vmm"): (
        "no VMM has the tap open: packets redirected to it have nowhere to go",
        "the VMM exited or detached its NIC; restart the pod (kata-top shows the VMM state)"),
    ("QDISC_DROP", "tap"): (
        "the rate limit on the tap is full: packets into the VM beyond Kata's "
        "RxRateLimiterMaxRate are dropped",
        "raise the limit (`kata-top ratelimit set SANDBOX --in RATE`, or the pod's "
        "rx_rate_limiter_max_rate) or send less"),
    ("QDISC_DROP", "eth0"): (
        "the rate limit on eth0 is full: packets out of the VM beyond Kata's "
        "TxRateLimiterMaxRate are dropped",
        "raise the limit (`kata-top ratelimit set SANDBOX --out RATE`) or send less"),
    ("QDISC_OVERLIMIT", None): (
        "a qdisc's limit was exceeded (the shaping on this device is full)",
        "raise the qdisc's limit or rate on this device"),
    ("TC_INGRESS", "mirred"): (
        "the tc mirred redirect on this device failed: its target device is down or has no "
        "carrier (for eth0: the tap, so the VMM side is gone)",
        "bring the target up, or restart the pod if its VMM is gone (`ip link show` in the "
        "sandbox's namespace)"),
    ("TC_EGRESS", "mirred"): (
        "a tc egress action dropped the packet",
        "check the egress filters on this device (`tc filter show dev DEV egress`)"),
    ("PKT_TOO_BIG", None): (
        "the packet is larger than this hop's MTU: the MTU ladder node → eth0 → tap → guest "
        "is not monotone",
        "give every hop the same MTU (the guest's must not exceed the node's veth; kata-top "
        "check shows the MTUs)"),
    ("NOT_SPECIFIED", "node-veth"): (
        "the veth pair refused to hand the frame to its other end: the frame is larger than "
        "that end's MTU (the MTU ladder node veth → eth0 → tap → guest is not even)",
        "give both ends of the pair and the guest the same MTU (kata-top check shows the "
        "MTUs; Kata takes the guest's MTU from eth0)"),
    ("TAP_FILTER", None): (
        "the tap's own filter (set by the VMM) rejected the frame",
        "the guest's MAC or the VMM's tap filter disagree; check the NIC's MAC"),
    ("TAP_TXFILTER", None): (
        "the tap's TX filter (eBPF set by the VMM) rejected the frame", "check the VMM's NIC"),
    ("NEIGH_FAILED", None): (
        "neighbour resolution failed: nobody answered ARP/ND for the next hop",
        "check the guest's IP and that the redirects carry ARP both ways"),
    ("CPU_BACKLOG", None): (
        "the CPU's input backlog was full (netdev_max_backlog)",
        "the node is overloaded on softirq; raise net.core.netdev_max_backlog or spread load"),
    ("NO_SOCKET", None): (
        "no socket listens for the packet (an application-level miss, not the datapath)",
        "nothing to fix in the datapath"),
}
_GENERIC = ("the kernel dropped the packet ({reason})",
            "see `enum skb_drop_reason` in the kernel's include/net/dropreason-core.h")


def explain(reason: str, hop: Hop) -> tuple[str, str]:
    """(meaning, fix) for `reason` on `hop`."""
    got = _MEANINGS.get((reason, hop)) or _MEANINGS.get((reason, None))
    if got is not None:
        return got
    meaning, fix = _GENERIC
    return meaning.format(reason=reason), fix


# A veth hands a frame to its peer here; a drop in it is the peer refusing the frame (larger
# than the peer's MTU), whichever end the packet's device still names.
VETH_FORWARD = ("__dev_forward_skb", "__dev_forward_skb2", "veth_xmit", "veth_forward_skb")


def hop_of(device: str | None, reason: str, *, eth0: str, tap: str | None,
           node_side: bool, function: str = "") -> Hop:
    """Where on a sandbox's datapath a drop on `device` at kernel `function` happened."""
    if node_side or (device == eth0 and function in VETH_FORWARD):
        return "node-veth"
    if tap is not None and device == tap:
        if reason in ("FULL_RING", "DEV_READY"):
            return "vmm"
        if reason in ("TC_INGRESS", "TC_EGRESS"):
            return "mirred"  # the out redirect's source
        return "tap"
    if device == eth0:
        return "mirred" if reason in ("TC_INGRESS", "TC_EGRESS") else "eth0"
    return "other"
