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
SCENARIOS = ("demo", "tcfilter", "plain", "kinds", *KIND_SCENARIOS)
SCENARIO_HELP = {
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
    # no-out-redirect, mtu, dead-vmm, stale-shim-monitor, route-mtu
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


def build(scenario: str, count: int) -> list[SandboxSpec]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    specs: list[SandboxSpec] = []
    kinds = list(KIND_SCENARIOS) if scenario == "kinds" else [scenario]
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
        elif scenario == "demo" and i < len(_DEMO_MIX):
            role, extra = _DEMO_MIX[i]
            specs.append(SandboxSpec(index=i, id=sid, pod_name=f"{role}-{i}", pod_namespace=ns,
                                     **extra))  # type: ignore[arg-type]
        else:
            monitor = "qmp" if scenario == "tcfilter" or (scenario == "demo" and i % 2 == 0) \
                else None
            specs.append(SandboxSpec(index=i, id=sid, pod_name=f"web-{i}", pod_namespace=ns,
                                     extra_monitor=monitor))
    return specs
