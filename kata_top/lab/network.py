"""Build the lab's namespaces, links and tc state with iproute2, the way Kata leaves them.

The lab writes with `ip`/`tc` in batch mode (one process per namespace), so what it builds is
exactly what an operator would type; kata-top's own read path never shells out.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from kata_top.collectors import netns
from kata_top.lab.layout import BRIDGE, NODE_CIDR, NODE_IP, TAP, Layout
from kata_top.lab.scenario import SandboxSpec


class LabError(RuntimeError):
    pass


L3FWD_TAP_ADDR = "169.254.0.1"


def run_batch(argv: Sequence[str], lines: Sequence[str]) -> None:
    if not lines:
        return
    proc = subprocess.run([*argv, "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def guest_mac(spec: SandboxSpec) -> str:
    """The veth's MAC, which Kata hands to the guest NIC (locally administered, from the id)."""
    b = bytes.fromhex(spec.id[:10])
    return "02:" + ":".join(f"{x:02x}" for x in b)


def eth0_mac_after_macvtap(spec: SandboxSpec) -> str:
    b = bytes.fromhex(spec.id[10:20])
    return "06:" + ":".join(f"{x:02x}" for x in b)


def macvtap_ifindex(spec: SandboxSpec) -> int:
    return 20000 + int(spec.id[:8], 16) % 40000


def rate_limit_lines(dev: str, rate_bps: int) -> list[str]:
    """Kata's HTB shape: `htb 1: root default 2`, class 1:1 under 1:, class 1:2 under 1:1."""
    r = f"{rate_bps}bit"
    return [
        f"qdisc add dev {dev} root handle 1: htb default 2",
        f"class add dev {dev} parent 1: classid 1:1 htb rate {r} ceil {r}",
        f"class add dev {dev} parent 1:1 classid 1:2 htb rate {r} ceil {r}",
    ]


def redirect_lines(src: str, dst: str) -> list[str]:
    return [f"filter add dev {src} parent ffff: protocol all u32 match u8 0 0 "
            f"action mirred egress redirect dev {dst}"]


def build_node(layout: Layout) -> None:
    run_batch(["ip"], [f"netns add {layout.node_ns}"])
    # A Kubernetes node forwards, and a forwarding host sends no IPv6 router solicitations.
    # Without this every node-side veth port solicits on its own backoff and the bridge floods
    # each one to every pod: with 1,000 sandboxes every pod's counters move every ~2 s.
    subprocess.run(["ip", "netns", "exec", layout.node_ns, "sysctl", "-qw",
                    "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.forwarding=1"],
                   check=True, capture_output=True)
    run_batch(["ip", "-n", layout.node_ns], [
        "link set lo up",
        # A fixed MAC: otherwise each joining port may change it, and a MAC change flushes
        # the bridge's neighbours, permanent ones included.
        f"link add {BRIDGE} address 02:6b:74:00:00:01 type bridge",
        f"addr add {NODE_IP}/{NODE_CIDR} dev {BRIDGE}",
        f"link set {BRIDGE} up",
    ])


def add_pod_namespaces(layout: Layout, specs: Sequence[SandboxSpec]) -> None:
    run_batch(["ip"], [f"netns add {layout.pod_ns(s)}" for s in specs if s.model != "none"])
    for s in specs:
        if s.model != "none":
            netns.run_in(os.path.join(netns.NETNS_RUN_DIR, layout.pod_ns(s)), _no_solicitations)


def _no_solicitations() -> None:
    """A pod namespace's own IPv6 router solicitations are flooded to every other pod by the
    lab's bridge: 1,000 pods soliciting on their backoffs keep every pod's counters moving.
    (/proc/sys/net belongs to the namespace of the thread that opens it.)"""
    for conf in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{conf}/forwarding", "w") as fh:
            fh.write("1")


def build_node_side(layout: Layout, specs: Sequence[SandboxSpec]) -> None:
    """veth pairs (node end on the bridge), host-side taps for the `none` model, neighbours."""
    lines: list[str] = []
    for s in specs:
        if s.model == "none":
            lines += [f"tuntap add dev {TAP} mode tap multi_queue vnet_hdr",
                      f"link set {TAP} master {BRIDGE} up"]
            continue
        veth = layout.node_veth(s)
        lines += [
            f"link add {veth} mtu {s.node_mtu} type veth peer name eth0 netns {layout.pod_ns(s)} "
            f"address {guest_mac(s)} mtu 1500",
            f"link set {veth} master {BRIDGE} up",
        ]
    # Permanent neighbours let traffic reach the redirects even when no guest answers ARP;
    # added after every port has joined the bridge.
    lines += [f"neigh replace {s.ip} lladdr {guest_mac(s)} dev {BRIDGE} nud permanent"
              for s in specs]
    run_batch(["ip", "-n", layout.node_ns], lines)


def build_pod(layout: Layout, spec: SandboxSpec) -> None:
    if spec.model == "none":
        return
    ns = layout.pod_ns(spec)
    ip_lines = ["link set lo up", "link set eth0 up", f"addr add {spec.ip}/{NODE_CIDR} dev eth0"]
    tc_lines: list[str] = []
    if spec.model == "tcfilter":
        ip_lines += [f"tuntap add dev {TAP} mode tap multi_queue vnet_hdr",
                     f"link set {TAP} mtu 1500 up"]
        tc_lines += ["qdisc add dev eth0 ingress"]
        if "no-ingress-qdisc" not in spec.faults:
            tc_lines.append(f"qdisc add dev {TAP} ingress")
        tc_lines += redirect_lines("eth0", TAP)
        if "redirect-elsewhere" in spec.faults:
            ip_lines += ["link add eth1 type veth peer name eth1p", "link set eth1 up"]
            tc_lines += redirect_lines(TAP, "eth1")
        elif not spec.faults & {"no-out-redirect", "no-ingress-qdisc"}:
            tc_lines += redirect_lines(TAP, "eth0")
        if "tap-down" in spec.faults:
            ip_lines.append(f"link set {TAP} down")
        if "foreign-limit" in spec.faults:
            tc_lines += rate_limit_lines(TAP, 5_000_000)  # by hand: Kata's config has 0
        # Cloud Hypervisor and Firecracker limit rates inside the VMM (IsRateLimiterBuiltin
        # in clh.go and fc.go): Kata adds its HTB for QEMU only
        if spec.rx_rate_bps and spec.hypervisor == "qemu":
            tc_lines += rate_limit_lines(TAP, spec.rx_rate_bps)
        if spec.tx_rate_bps and spec.hypervisor == "qemu":
            tc_lines += rate_limit_lines("eth0", spec.tx_rate_bps)
    elif spec.model == "l3forwarding":
        # runtime-rs network_model/l3_forwarding_model.rs add(): a link-local address on the
        # tap (port_forwarding.rs TAP_IPV4_ADDR), the pod IP's local route off eth0, a /32
        # route to it via the tap, proxy ARP on both, forwarding on; no tc at all
        ip_lines += [f"tuntap add dev {TAP} mode tap multi_queue vnet_hdr",
                     f"link set {TAP} mtu 1500 up", f"addr add {L3FWD_TAP_ADDR}/32 dev {TAP}",
                     f"route del local {spec.ip} dev eth0 table local",
                     f"route add {spec.ip}/32 dev {TAP} scope link"]
    elif spec.model == "macvtap":
        # Kata gives the macvtap the veth's MAC and moves the veth to a fresh one.
        ip_lines += [
            f"link set eth0 address {eth0_mac_after_macvtap(spec)}",
            # /dev/tap<ifindex> is global: an ifindex from the id keeps two labs apart.
            f"link add link eth0 name {TAP} index {macvtap_ifindex(spec)} type macvtap "
            "mode bridge",
            f"link set {TAP} address {guest_mac(spec)} mtu 1500 up",
        ]
    if "route-mtu" in spec.faults:
        # What Cilium does: the device keeps 1500, the default route says 1400.
        ip_lines.append(f"route add default via {NODE_IP} dev eth0 mtu 1400")
    run_batch(["ip", "-n", ns], ip_lines)
    run_batch(["tc", "-n", ns], tc_lines)
    quiet_pod_stack(layout.netns_path(spec), ipv6_off="ipv6-off" in spec.faults)
    if spec.model == "l3forwarding":
        netns.run_in(layout.netns_path(spec), _l3fwd_sysctls)


def _l3fwd_sysctls() -> None:
    for path in (f"/proc/sys/net/ipv4/conf/{TAP}/proxy_arp", "/proc/sys/net/ipv4/conf/eth0/"
                 "proxy_arp", "/proc/sys/net/ipv4/ip_forward"):
        with open(path, "w") as fh:
            fh.write("1")


def quiet_pod_stack(netns_path: str, ipv6_off: bool = False) -> None:
    """The pod namespace keeps the pod IP on eth0 (as Kata does) but ignores ICMP echo, so a
    ping reply proves the guest answered, not the namespace's own stack behind a lost
    redirect. /proc/sys/net follows the namespace of the thread that opens it."""

    def write() -> None:
        with open("/proc/sys/net/ipv4/icmp_echo_ignore_all", "w") as fh:
            fh.write("1")
        if ipv6_off:  # the `ipv6-off` fault: IPv6 off on every device of the namespace
            for conf in ("all", "default", "eth0", TAP):
                with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as fh:
                    fh.write("1")

    netns.run_in(netns_path, write)


def delete_namespaces(names: Sequence[str]) -> list[str]:
    """Delete the named namespaces that exist; returns what could not be deleted."""
    failed: list[str] = []
    for name in names:
        proc = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0 and "No such file" not in proc.stderr:
            failed.append(f"{name}: {proc.stderr.strip()}")
    return failed


def list_namespaces(prefix: str) -> list[str]:
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]
