"""The Snapshot model: one immutable tree per collection cycle.

Everything here is a frozen msgspec.Struct of plain values so a Snapshot can cross threads, be
diffed, serialised to the versioned JSON contract (`formats/schema/snapshot-1.json`) and
replayed. The JSON keys are the field names, in order, but where a field says otherwise
(`field(name=...)`). No object here is part of a reference cycle, so none is tracked by the
garbage collector (`gc=False`).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from msgspec import Struct, field
from msgspec.structs import replace as _replace

from kata_top.model_types import KATA_STATES as KATA_STATES
from kata_top.model_types import VMM_STATUSES as VMM_STATUSES
from kata_top.model_types import Direction as Direction
from kata_top.model_types import EventKind as EventKind
from kata_top.model_types import EventSource as EventSource
from kata_top.model_types import MonitorKind as MonitorKind
from kata_top.model_types import NetnsSource as NetnsSource
from kata_top.model_types import NetworkModel as NetworkModel
from kata_top.model_types import Runtime as Runtime
from kata_top.model_types import SandboxState as SandboxState
from kata_top.model_types import Severity as Severity
from kata_top.model_types import ShimMonitorState as ShimMonitorState
from kata_top.model_types import VmmSource as VmmSource
from kata_top.model_types import VmmStatus as VmmStatus
from kata_top.model_types import kata_state as kata_state
from kata_top.model_types import vmm_status as vmm_status

SCHEMA = "kata-top/snapshot/1"

_T = TypeVar("_T")


def evolve(obj: _T, **changes: Any) -> _T:
    """A copy of a model object with some fields changed (msgspec.structs.replace, typed)."""
    out: _T = _replace(obj, **changes)  # type: ignore[type-var]
    return out


class LinkStats(Struct, frozen=True, gc=False):
    """A link's 64-bit kernel counters (as `ip -s link` shows them)."""

    rx_bytes: int = 0
    rx_packets: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0
    rx_errors: int = 0
    tx_errors: int = 0


class TunInfo(Struct, frozen=True, gc=False):
    """A tun/tap device's flags: Kata's taps are `tap`, no packet info, vnet headers."""

    type: Literal["tap", "tun"]
    pi: bool
    vnet_hdr: bool
    multi_queue: bool
    num_queues: int | None


class PeerInfo(Struct, frozen=True, gc=False):
    """The other end of a veth: ifindex in its namespace, and what we know of it there."""

    ifindex: int
    netnsid: int | None
    netns: str | None = None
    name: str | None = None
    mtu: int | None = None
    operstate: str | None = None


class Link(Struct, frozen=True, gc=False):
    """A network device in the sandbox's namespace (or, for `none`, the sandbox's tap)."""

    name: str
    ifindex: int
    kind: str  # veth, tun, macvtap, ipvlan, ifb, loopback, device, ...
    mtu: int
    mac: str | None
    operstate: str
    up: bool
    carrier: bool | None
    stats: LinkStats
    master: int | None = None
    parent_ifindex: int | None = None
    tun: TunInfo | None = None
    peer: PeerInfo | None = None
    ipv6_disabled: bool | None = None  # the device's disable_ipv6 (None: not reported)


class QdiscStats(Struct, frozen=True, gc=False):
    """A qdisc's or class's counters (TCA_STATS2: basic + queue)."""

    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    requeues: int = 0
    backlog: int = 0
    qlen: int = 0


class Qdisc(Struct, frozen=True, gc=False):
    """A queueing discipline on a device, with its counters."""

    dev: str
    kind: str
    handle: str
    parent: str
    stats: QdiscStats
    default_class: str | None = None  # htb's `default N`


class TcClass(Struct, frozen=True, gc=False):
    """A class of a classful qdisc (htb): rate and ceil in bits/s, counters."""

    dev: str
    kind: str
    handle: str
    parent: str
    rate_bps: int | None
    ceil_bps: int | None
    stats: QdiscStats


class ActionStats(Struct, frozen=True, gc=False):
    """A tc action's counters: for mirred, the redirect's hit counters."""

    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0


class Action(Struct, frozen=True, gc=False):
    """A tc action of a filter (mirred: where it sends packets, and ages in seconds)."""

    kind: str
    # mirred only. Open sets: an eaction this code does not know shows as `eaction-N`.
    action: str | None  # "redirect" | "mirror" | "eaction-N"
    direction: str | None  # "egress" | "ingress"
    target: str | None  # target device name (in the same namespace)
    target_ifindex: int | None
    stats: ActionStats
    # When it was installed and last used, as Unix times. The kernel tells ages; kept as
    # times, an unchanged filter is the very same object cycle after cycle (nothing to
    # re-age, re-render or compare). The JSON contract shows them as ages at the
    # snapshot's time, `installed_s` and `last_used_s` (kata_top/formats/jsonout.py).
    installed_at: float | None = field(default=None, name="installed_s")
    last_used_at: float | None = field(default=None, name="last_used_s")


class Filter(Struct, frozen=True, gc=False):
    """A tc filter on a device's ingress, with its actions."""

    dev: str
    parent: str
    kind: str
    prio: int
    protocol: str
    handle: str
    match_all: bool
    actions: tuple[Action, ...] = ()


class Route(Struct, frozen=True, gc=False):
    """A route of the pod namespace's main table. `mtu` is the route's own MTU metric (what
    a CNI such as Cilium sets on it), None when it has none."""

    dst: str  # "default" or prefix/len
    dev: str | None
    gateway: str | None = None
    mtu: int | None = None


class Redirect(Struct, frozen=True, gc=False):
    """One direction of the tcfilter model: `in` = eth0 → tap (into the VM), `out` = tap → eth0."""

    direction: Direction
    from_dev: str = field(name="from")
    to_dev: str = field(name="to")
    present: bool
    packets: int = 0
    bytes: int = 0
    prio: int | None = None
    # What tc holds besides: the device a mirred redirect on from_dev's ingress sends to
    # instead of to_dev (and its filter's prio), whether from_dev has an ingress qdisc at all,
    # and the mirred action's failures (overlimits: the target could not take the packet,
    # e.g. it is down; drops) — attempts are `packets`, failures are not deliveries.
    elsewhere: str | None = None
    elsewhere_prio: int | None = None
    ingress_qdisc: bool = True
    overlimits: int = 0
    drops: int = 0


class RateLimit(Struct, frozen=True, gc=False):
    """A shaping qdisc; shape `kata-htb` is Kata's own (htb 1: default 2)."""

    direction: Direction
    dev: str
    rate_bps: int
    shape: str  # "kata-htb" | what else was found
    # the root qdisc's counters: packets held back (overlimits) and dropped by the limit
    overlimits: int = 0
    drops: int = 0


class ProcInfo(Struct, frozen=True, gc=False):
    """A process kata-top found for the sandbox (shim or VMM), with its resource use."""

    pid: int
    name: str
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    threads: int | None = None
    cmdline: tuple[str, ...] = ()


class Virtiofsd(Struct, frozen=True, gc=False):
    """A virtiofsd daemon serving the sandbox's shared directory."""

    pid: int
    alive: bool
    socket: str | None
    shared_dir: str | None
    cache: str | None
    thread_pool_size: int | None
    rate_limit_flags: tuple[str, ...] = ()
    cpu_percent: float | None = None
    # --rlimit-nofile: the open-files limit virtiofsd sets itself (not a rate limit)
    rlimit_nofile: int | None = None
    rss_bytes: int | None = None
    threads: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None


class VmmNic(Struct, frozen=True, gc=False):
    """A NIC of the VM as the monitor or the command line describes it."""

    netdev: str | None
    mac: str | None
    model: str | None
    tap: str | None = None
    vhost: bool | None = None
    queues: int | None = None
    fds: tuple[int, ...] = ()
    rx_filter: dict[str, Any] | None = None
    # The VMM's own counters of this NIC (Cloud Hypervisor's vm.counters: the point between
    # the tap and the guest); None where the VMM keeps none or was not asked.
    rx_bytes: int | None = None
    rx_frames: int | None = None
    tx_bytes: int | None = None
    tx_frames: int | None = None
    # The VMM's own rate limiters of this NIC in bits/s (Cloud Hypervisor, Firecracker)
    rx_rate_bps: int | None = None
    tx_rate_bps: int | None = None


class Vmm(Struct, frozen=True, gc=False):
    """The VMM's view; `source` says who answered, `reason` why QMP was not asked."""

    source: VmmSource
    status: VmmStatus
    reason: str | None = None
    name: str | None = None
    version: str | None = None
    machine: str | None = None
    accel: str | None = None
    vcpus: int | None = None
    vcpu_threads: tuple[int, ...] = ()
    memory_bytes: int | None = None
    plugged_memory_bytes: int | None = None
    nics: tuple[VmmNic, ...] = ()
    taps_held: tuple[str, ...] = ()
    vhost_net_fds: int = 0
    devices: tuple[str, ...] = ()
    chardevs: tuple[str, ...] = ()
    monitor_kind: MonitorKind | None = None  # which protocol the extra monitor spoke
    query_ms: float | None = None
    error: str | None = None
    # When the monitor or API was asked (Unix time). The dashboard re-asks a VMM at most every
    # few seconds, so this can be older than the snapshot.
    queried_at: float | None = None
    # Where each fact came from, by fact (`version`, `vcpus`, `nics`, `counters`, ...): an API
    # path (`GET /api/v1/vm.info`), `/proc` or the command line.
    sources: dict[str, str] = field(default_factory=dict)


class Hypervisor(Struct, frozen=True, gc=False):
    """The sandbox's hypervisor process as the state files and /proc tell it."""

    kind: str
    pid: int | None
    alive: bool
    path: str | None = None


class Pod(Struct, frozen=True, gc=False):
    """The Kubernetes pod (from the CRI annotations in Kata's state)."""

    name: str | None
    namespace: str | None
    uid: str | None = None  # the pod's UID (kata-monitor's `cri_uid`)


class NetnsInfo(Struct, frozen=True, gc=False):
    """The sandbox's network namespace: path, inode, name under /run/netns."""

    path: str | None
    inode: int | None
    dev: int | None = None
    name: str | None = None
    source: NetnsSource | None = None


class SandboxError(Struct, frozen=True, gc=False):
    """A part of the sandbox (or node) kata-top could not read, and why."""

    where: str
    message: str


class Finding(Struct, frozen=True, gc=False):
    """A diagnosed problem with a stable code, severity, evidence and fix."""

    code: str
    severity: Severity
    summary: str
    evidence: dict[str, Any]
    fix: str
    sandbox: str | None = None


class Sandbox(Struct, frozen=True, gc=False):
    """A Kata sandbox: state files, processes, network namespace and VMM."""

    id: str
    runtime: Runtime
    state: SandboxState
    pod: Pod
    hypervisor: Hypervisor
    netns: NetnsInfo
    network_model: NetworkModel
    links: tuple[Link, ...] = ()
    qdiscs: tuple[Qdisc, ...] = ()
    classes: tuple[TcClass, ...] = ()
    filters: tuple[Filter, ...] = ()
    routes: tuple[Route, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    rate_limits: tuple[RateLimit, ...] = ()
    configured_rate_limits: dict[Direction, int] = field(default_factory=dict)
    # from the state file's hypervisor config: DisableVhostNet, and the vCPUs it boots with
    disable_vhost_net: bool | None = None
    config_vcpus: int | None = None
    tap_name: str | None = None
    guest_mac: str | None = None
    vmm: Vmm | None = None
    virtiofsd: tuple[Virtiofsd, ...] = ()
    shim: ProcInfo | None = None
    # the shim's management socket (collectors/shimsock.py); None: not looked at (no shim)
    shim_monitor: ShimMonitorState | None = None
    vmm_proc: ProcInfo | None = None
    state_path: str | None = None
    errors: tuple[SandboxError, ...] = ()
    findings: tuple[Finding, ...] = ()
    rates: dict[str, float] = field(default_factory=dict)
    # The pod's endpoint as Kata records it or the kernel shows it (veth, macvlan, ipvlan,
    # tap, netkit, ...); one Kata cannot attach is shown as what it is.
    endpoint: str | None = None


class Event(Struct, frozen=True, gc=False):
    """A change between two collections (`diff`), told by the kernel's tc notifications as it
    happened (`netlink`, so a change undone before the next collection is still seen), or an
    action of kata-top's own (`audit`). `by` is "kata-top" when kata-top made the change."""

    at: float
    kind: EventKind
    severity: Severity
    summary: str
    sandbox_id: str | None = None
    pod: str | None = None
    before: Any = None
    after: Any = None
    source: EventSource = "diff"
    by: str | None = None
    # the run root whose sandboxes it is about: journals and --follow show only their own
    run_root: str | None = None


class HostInfo(Struct, frozen=True, gc=False):
    """The node the snapshot was taken on."""

    node: str
    kernel: str
    run_root: str
    root: bool


class Snapshot(Struct, frozen=True, gc=False, kw_only=True):
    """One collection cycle of a node running Kata Containers."""

    schema: str = SCHEMA  # first, for humans reading a stream
    taken_at: float
    host: HostInfo
    sandboxes: tuple[Sandbox, ...]
    errors: tuple[SandboxError, ...] = ()
    host_findings: tuple[Finding, ...] = ()
    duration_ms: float = 0.0
    events: tuple[Event, ...] = ()  # what changed since the previous snapshot of the stream
    # Per sandbox this collection did not read again (the dashboard's rows off screen,
    # kata_top/engine/options.py): when the collection that read its links' counters,
    # and its tc counters (qdiscs, filters' actions), took place. A sandbox not named was
    # read at `taken_at`. Rates divide by these (kata_top/rates.py).
    links_read_at: dict[str, float] = field(default_factory=dict)
    tc_read_at: dict[str, float] = field(default_factory=dict)

    def find(self, sandbox_id: str) -> Sandbox | None:
        for sb in self.sandboxes:
            if sb.id == sandbox_id:
                return sb
        return None


class TcChange(Struct, frozen=True, gc=False):
    """One tc change notification, decoded: a filter added or removed on a device (the
    engine keeps them per sandbox for change detection, kata_top/events/diff.py)."""

    added: bool
    dev: str
    parent: str
    prio: int
    target: str | None  # where its mirred action redirects, when it has one
