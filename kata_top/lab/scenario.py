"""What each lab sandbox looks like: network model, runtime, monitors and planted faults."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

# One runtime and VMM each: how Kata leaves a node of that kind (kata_top/lab/vmms.py).
KIND_SCENARIOS = {
    "go-qemu": ("go", "qemu", "tcfilter"),
    "go-clh": ("go", "clh", "tcfilter"),
    "go-fc": ("go", "firecracker", "tcfilter"),
    "rs-qemu": ("rs", "qemu", "tcfilter"),
    "rs-clh": ("rs", "clh", "tcfilter"),
    "rs-dragonball": ("rs", "dragonball", "tcfilter"),
    "rs-l3fwd": ("rs", "qemu", "l3forwarding"),
}
SCENARIOS = ("demo", "tcfilter", "plain", "faults", "kinds", *KIND_SCENARIOS)
SCENARIO_HELP = {
    "faults": "one sandbox per datapath fault planted by hand on a node (wrong redirect "
              "target, no ingress qdisc, tap down, a limit Kata's config does not hold, dead "
              "VMM over an MTU mismatch, IPv6 off), then healthy tcfilter",
    "demo": "every network model and every fault kata-top must recognise, then healthy tcfilter",
    "tcfilter": "healthy tcfilter sandboxes, each with a QMP extra monitor",
    "plain": "healthy tcfilter sandboxes without extra monitors (as most nodes run)",
    "kinds": "one sandbox of each runtime x VMM below, in turn",
    "go-qemu": "Go runtime, QEMU (persist.json, qmp.sock held by the shim)",
    "go-clh": "Go runtime, Cloud Hypervisor (API stand-in on clh-api.sock)",
    "go-fc": "Go runtime, Firecracker under its jailer root (API stand-in)",
    "rs-qemu": "runtime-rs, QEMU (state.json without pid or netns)",
    "rs-clh": "runtime-rs, Cloud Hypervisor (ch-api.sock, no pid or api_socket saved)",
    "rs-dragonball": "runtime-rs, Dragonball: the VMM inside the shim (db_vcpu threads)",
    "rs-l3fwd": "runtime-rs, QEMU, l3forwarding network model (proxy ARP, /32 route, no tc)",
}
NAMESPACES = ("default", "payments", "batch", "monitoring")


@dataclass(frozen=True)
class SandboxSpec:
    index: int
    id: str
    pod_name: str
    pod_namespace: str
    model: str = "tcfilter"  # tcfilter | macvtap | none | l3forwarding
    runtime: str = "go"  # go | rs
    hypervisor: str = "qemu"  # qemu | clh | firecracker | dragonball
    extra_monitor: str | None = None  # None | "qmp" | "hmp"
    rx_rate_bps: int = 0  # into the VM (Kata's RxRateLimiterMaxRate)
    tx_rate_bps: int = 0
    # no-out-redirect, mtu, dead-vmm, stale-shim-monitor, route-mtu, and (the `faults`
    # scenario) redirect-elsewhere, no-ingress-qdisc, tap-down, foreign-limit, ipv6-off
    faults: frozenset[str] = field(default_factory=frozenset)

    @property
    def short(self) -> str:
        return self.id[:8]

    @property
    def ip(self) -> str:
        return f"10.77.{self.index // 250}.{self.index % 250 + 2}"

    @property
    def node_mtu(self) -> int:
        return 1450 if "mtu" in self.faults else 1500


# The demo mix: one sandbox per model and per fault first, then healthy ones.
_DEMO_MIX: tuple[tuple[str, dict[str, object]], ...] = (
    ("web", {"extra_monitor": "qmp"}),
    ("api", {"extra_monitor": "hmp"}),
    ("throttled", {"extra_monitor": "qmp", "rx_rate_bps": 20_000_000, "tx_rate_bps": 10_000_000,
                   "faults": frozenset({"route-mtu"})}),
    ("no-out-redirect", {"faults": frozenset({"no-out-redirect"})}),
    ("mtu-mismatch", {"faults": frozenset({"mtu", "stale-shim-monitor"}),
                      "extra_monitor": "qmp"}),
    ("macvtap", {"model": "macvtap"}),
    ("hostnet", {"model": "none"}),
    ("rs", {"runtime": "rs"}),
    ("dead-vm", {"faults": frozenset({"dead-vmm"})}),
)


# Faults planted the way they happen on nodes, each on a tcfilter sandbox as Kata builds it
# (kata-containers src/runtime/virtcontainers/network_linux.go: setupTCFiltering adds an
# ingress qdisc and a u32 match-all mirred redirect on each of eth0 and the tap).
_FAULTS_MIX: tuple[tuple[str, dict[str, object]], ...] = (
    ("web", {}),
    # `tc filter … action mirred egress redirect dev eth1` on the tap: out goes elsewhere
    ("elsewhere", {"faults": frozenset({"redirect-elsewhere"})}),
    # the tap's ingress qdisc deleted (and with it the out redirect)
    ("no-ingress", {"faults": frozenset({"no-ingress-qdisc"})}),
    # `ip link set tap0_kata down`: the in redirect fails every packet (mirred overlimits)
    ("tap-down", {"faults": frozenset({"tap-down"})}),
    # an HTB added by hand on the tap while the sandbox's RxRateLimiterMaxRate is 0
    ("foreign-limit", {"faults": frozenset({"foreign-limit"})}),
    # the VMM killed on a sandbox whose node link is 1450 under a 1500 eth0
    ("dead-mtu", {"faults": frozenset({"dead-vmm", "mtu"})}),
    # net.ipv6.conf.all.disable_ipv6=1 in the pod namespace
    ("ipv6-off", {"faults": frozenset({"ipv6-off"})}),
    # an MTU mismatch whose VMM a test kills: the finding must outlive it
    ("mtu", {"faults": frozenset({"mtu"})}),
)


def build(scenario: str, count: int) -> list[SandboxSpec]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    specs: list[SandboxSpec] = []
    kinds = list(KIND_SCENARIOS) if scenario == "kinds" else [scenario]
    mix = _DEMO_MIX if scenario == "demo" else _FAULTS_MIX if scenario == "faults" else ()
    for i in range(count):
        sid = secrets.token_hex(32)
        ns = NAMESPACES[i % len(NAMESPACES)]
        kind = kinds[i % len(kinds)]
        if kind in KIND_SCENARIOS:
            runtime, hypervisor, model = KIND_SCENARIOS[kind]
            specs.append(SandboxSpec(index=i, id=sid, pod_name=f"{kind}-{i}", pod_namespace=ns,
                                     model=model, runtime=runtime, hypervisor=hypervisor,
                                     rx_rate_bps=50_000_000 if hypervisor == "firecracker"
                                     else 0,
                                     extra_monitor="hmp" if kind == "rs-qemu" else None))
        elif i < len(mix):
            role, extra = mix[i]
            specs.append(SandboxSpec(index=i, id=sid, pod_name=f"{role}-{i}", pod_namespace=ns,
                                     **extra))  # type: ignore[arg-type]
        else:
            monitor = "qmp" if scenario == "tcfilter" or (scenario == "demo" and i % 2 == 0) \
                else None
            specs.append(SandboxSpec(index=i, id=sid, pod_name=f"web-{i}", pod_namespace=ns,
                                     extra_monitor=monitor))
    return specs
