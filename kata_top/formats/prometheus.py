"""A snapshot as Prometheus series (written by prom_text.py; for an exporter, prom_cache.py).

One exposition serves `kata-top serve`'s /metrics (Prometheus text or OpenMetrics, as the
scraper's Accept header asks) and `kata-top snapshot --prometheus` (text for node_exporter's
textfile collector), so the two can never disagree.

Names and labels (docs/metrics.md maps them to kata-monitor's):
- every per-sandbox series carries kata-monitor's label set exactly — `sandbox_id`, `cri_uid`,
  `cri_name`, `cri_namespace` — so PromQL joins with kata-monitor's and kube-state-metrics'
  series; devices are `interface` (as kata-monitor's netdev series) or `device` (qdiscs, after
  node_exporter's qdisc collector);
- the pod's loopback link and `noqueue` qdiscs (which never count anything) are left out:
  a quarter of the series, none of the information;
- every name starts with `kata_top_`, also for quantities kata-monitor exports too: a cluster
  running both never gets two series of one name that `sum()` would double;
- rates are bytes per second (Prometheus' base unit, and what the kernel keeps for htb;
  `promtool check metrics` rejects bits), so `kata_top_rate_limit_bytes_per_second * 8` is
  what `tc` prints;
- kernel counters are counters (`_total`); they reset when a link or filter is re-created,
  which `rate()` handles.
"""

from __future__ import annotations

from kata_top.formats.prom_datapath import rate_limits, redirect_health, vm_counters
from kata_top.formats.prom_text import Exposition
from kata_top.model import Sandbox, Snapshot


def sandbox_series(ex: Exposition, sb: Sandbox) -> None:
    who = ex.who(sb)
    ex.add("sandbox_info", "gauge", "A Kata sandbox on this node (always 1); its facts as "
           "labels.", who, 1, runtime=sb.runtime, hypervisor=sb.hypervisor.kind, state=sb.state,
           network_model=sb.network_model)
    ex.add("sandbox_vmm_alive", "gauge", "1 when the sandbox's VMM process is running.", who,
           int(sb.hypervisor.alive))
    ex.add("sandbox_errors", "gauge", "Parts of this sandbox kata-top could not read.", who,
           len(sb.errors))
    counts: dict[tuple[str, str], int] = {}
    for f in sb.findings:
        counts[(f.code, f.severity)] = counts.get((f.code, f.severity), 0) + 1
    for (code, severity), n in sorted(counts.items()):
        ex.add("findings", "gauge", "Diagnoses that hold now, by code (see `kata-top check`).",
               who, n, code=code, severity=severity)
    _links(ex, sb, who)
    _tc(ex, sb, who)
    _vmm(ex, sb, who)
    if sb.shim_monitor is not None:
        ex.add("shim_monitor_up", "gauge", "1 when the shim's management socket "
               "(shim-monitor.sock, what kata-runtime exec and kata-monitor use) accepts a "
               "connection; 0 with `state` saying why not.", who,
               int(sb.shim_monitor == "listening"), state=sb.shim_monitor)
    for v in sb.virtiofsd:
        ex.add("virtiofsd_alive", "gauge", "1 when the sandbox's virtiofsd runs.", who,
               int(v.alive), pid=str(v.pid))
        ex.add("virtiofsd_info", "gauge", "virtiofsd's options (always 1): cache mode, thread "
               "pool and whether any rate-limit flag is set.", who, 1, pid=str(v.pid),
               cache=v.cache or "", thread_pool_size=str(v.thread_pool_size or ""),
               rate_limited="true" if v.rate_limit_flags else "false")


_LINK_COUNTERS = (("receive_bytes", "rx_bytes"), ("transmit_bytes", "tx_bytes"),
                  ("receive_packets", "rx_packets"), ("transmit_packets", "tx_packets"),
                  ("receive_dropped", "rx_dropped"), ("transmit_dropped", "tx_dropped"),
                  ("receive_errors", "rx_errors"), ("transmit_errors", "tx_errors"))
_QDISC_COUNTERS = ("bytes", "packets", "drops", "requeues", "overlimits")
_CLASS_COUNTERS = ("bytes", "packets", "drops", "overlimits")


def _links(ex: Exposition, sb: Sandbox, who: str) -> None:
    for lk in sb.links:
        if lk.kind == "loopback":  # the pod's lo: nothing of the datapath, 10 series each
            continue
        ex.add("link_up", "gauge", "1 when the link is administratively up with carrier.", who,
               int(lk.up and lk.carrier is not False), interface=lk.name)
        ex.add("link_mtu_bytes", "gauge", "Link MTU.", who, lk.mtu, interface=lk.name)
        for name, attr in _LINK_COUNTERS:
            ex.add(f"link_{name}", "counter", f"Link {name.replace('_', ' ')} (kernel "
                   "counter).", who, getattr(lk.stats, attr), interface=lk.name)


def _tc(ex: Exposition, sb: Sandbox, who: str) -> None:
    for r in sb.redirects:
        red = {"direction": r.direction, "from": r.from_dev, "to": r.to_dev}
        ex.add("redirect_present", "gauge", "1 when Kata's tc mirred redirect for this "
               "direction exists (in = eth0 → tap, out = tap → eth0).", who, int(r.present),
               **red)
        ex.add("redirect_packets", "counter", "Packets the redirect carried (mirred hit "
               "counter).", who, r.packets, **red)
        ex.add("redirect_bytes", "counter", "Bytes the redirect carried.", who, r.bytes, **red)
        redirect_health(ex, sb, r, who, red)
    vm_counters(ex, sb, who)
    rate_limits(ex, sb, who)
    for d, rate in sorted(sb.configured_rate_limits.items()):
        if rate:
            ex.add("configured_rate_limit_bytes_per_second", "gauge", "Rate limit Kata's "
                   "configuration asks for (rx/tx_rate_limiter_max_rate, in bytes/s).", who,
                   rate / 8, direction=d)
    for q in sb.qdiscs:
        if q.kind == "noqueue":  # no queue, so nothing it could ever count
            continue
        ql = {"device": q.dev, "kind": q.kind, "handle": q.handle, "parent": q.parent}
        for name in _QDISC_COUNTERS:
            ex.add(f"qdisc_{name}", "counter", f"Qdisc {name} (kernel counter).", who,
                   getattr(q.stats, name), **ql)
        ex.add("qdisc_backlog_bytes", "gauge", "Bytes queued in the qdisc.", who,
               q.stats.backlog, **ql)
        ex.add("qdisc_current_queue_length", "gauge", "Packets queued in the qdisc.", who,
               q.stats.qlen, **ql)
    for c in sb.classes:
        cl = {"device": c.dev, "kind": c.kind, "handle": c.handle, "parent": c.parent}
        for name in _CLASS_COUNTERS:
            ex.add(f"class_{name}", "counter", f"Traffic class {name} (kernel counter).", who,
                   getattr(c.stats, name), **cl)
        if c.rate_bps is not None:
            ex.add("class_rate_bytes_per_second", "gauge", "An htb class's rate.", who,
                   c.rate_bps / 8, **cl)
        if c.ceil_bps is not None:
            ex.add("class_ceil_bytes_per_second", "gauge", "An htb class's ceil.", who,
                   c.ceil_bps / 8, **cl)
    for f in sb.filters:
        for a in f.actions:
            al = {"device": f.dev, "parent": f.parent, "prio": str(f.prio), "kind": a.kind,
                  "action": a.action or "", "target": a.target or ""}
            ex.add("filter_action_packets", "counter", "Packets a tc filter's action handled.",
                   who, a.stats.packets, **al)
            ex.add("filter_action_bytes", "counter", "Bytes a tc filter's action handled.",
                   who, a.stats.bytes, **al)
            ex.add("filter_action_drops", "counter", "Packets a tc filter's action dropped.",
                   who, a.stats.drops, **al)


def _vmm(ex: Exposition, sb: Sandbox, who: str) -> None:
    v = sb.vmm
    if v is None:
        return
    ex.add("vmm_status", "gauge", "The VMM's run state: 1 for the state it is in (source: who "
           "told).", who, 1, status=v.status, source=v.source)
    if v.vcpus is not None:
        ex.add("vmm_vcpus", "gauge", "vCPUs of the VM.", who, v.vcpus)
    if v.memory_bytes is not None:
        ex.add("vmm_memory_bytes", "gauge", "Memory of the VM (boot memory).", who,
               v.memory_bytes)
    if v.query_ms is not None:
        ex.add("vmm_query_seconds", "gauge", "How long the VMM's monitor took to answer.", who,
               v.query_ms / 1000)
    for nic in v.nics:
        promisc = (nic.rx_filter or {}).get("promiscuous")
        if isinstance(promisc, bool):
            ex.add("vmm_nic_rx_filter_promiscuous", "gauge", "1 when the guest put the NIC in "
                   "promiscuous mode (QMP query-rx-filter).", who, int(promisc),
                   netdev=nic.netdev or "", mac=nic.mac or "")
        for name in ("rx_bytes", "rx_frames", "tx_bytes", "tx_frames"):  # CH vm.counters
            if getattr(nic, name) is not None:
                ex.add(f"vmm_nic_{name}", "counter", f"The VMM's own NIC counter {name} (rx: "
                       "taken from the tap for the guest).", who, getattr(nic, name),
                       netdev=nic.netdev or "", tap=nic.tap or "")


def node_series(ex: Exposition, snap: Snapshot) -> None:
    ex.add("snapshot_timestamp_seconds", "gauge", "When this snapshot was taken (Unix time).",
           None, snap.taken_at)
    ex.add("collection_duration_seconds", "gauge", "How long the collection took.", None,
           snap.duration_ms / 1000)
    ex.add("sandboxes", "gauge", "Sandboxes found (one kata_top_sandbox_info series each).",
           None, len(snap.sandboxes))
    ex.add("collection_errors", "gauge", "Node-wide problems reading Kata's state.", None,
           len(snap.errors))


def host_series(ex: Exposition, snap: Snapshot) -> None:
    host: dict[tuple[str, str], int] = {}
    for f in snap.host_findings:
        host[(f.code, f.severity)] = host.get((f.code, f.severity), 0) + 1
    for (code, severity), n in sorted(host.items()):
        ex.add("host_findings", "gauge", "Host diagnoses that hold now, by code.", None, n,
               code=code, severity=severity)


def exposition(snap: Snapshot) -> Exposition:
    """Every series of one snapshot, node-wide series first."""
    ex = Exposition()
    node_series(ex, snap)
    for sb in snap.sandboxes:
        sandbox_series(ex, sb)
    host_series(ex, snap)
    return ex


def render(snap: Snapshot, openmetrics: bool = False) -> str:
    """One snapshot in the Prometheus text format (0.0.4), or OpenMetrics."""
    return exposition(snap).text(openmetrics).decode("utf-8")
