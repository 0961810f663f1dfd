"""A snapshot as Prometheus metric families, through prometheus_client.

One collector serves `kata-top serve`'s /metrics (Prometheus text or OpenMetrics, as the
scraper's Accept header asks) and `kata-top snapshot --prometheus` (text for node_exporter's
textfile collector), so the two can never disagree.

Names and labels (README, "Prometheus series", maps them to kata-monitor's):
- every per-sandbox series carries kata-monitor's label set exactly — `sandbox_id`, `cri_uid`,
  `cri_name`, `cri_namespace` — so PromQL joins with kata-monitor's and kube-state-metrics'
  series; devices are `interface` (as kata-monitor's netdev series) or `device` (qdiscs, after
  node_exporter's qdisc collector);
- every name starts with `kata_top_`, also for quantities kata-monitor exports too: a cluster
  running both never gets two series of one name that `sum()` would double;
- rates are bytes per second (Prometheus' base unit, and what the kernel keeps for htb;
  `promtool check metrics` rejects bits), so `kata_top_rate_limit_bytes_per_second * 8` is
  what `tc` prints;
- kernel counters are counters (`_total`); they reset when a link or filter is re-created,
  which `rate()` handles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kata_top.model import Sandbox, Snapshot

PREFIX = "kata_top_"
SANDBOX_LABELS = ("sandbox_id", "cri_uid", "cri_name", "cri_namespace")


def _who(sb: Sandbox) -> list[str]:
    return [sb.id, sb.pod.uid or "", sb.pod.name or "", sb.pod.namespace or ""]


class _Families:
    """Families by name, created on first use with their label names (HELP/TYPE once)."""

    def __init__(self) -> None:
        self._by_name: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = GaugeMetricFamily(PREFIX + name, doc,
                                                          labels=list(labels))
        assert isinstance(fam, GaugeMetricFamily)
        return fam

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = CounterMetricFamily(PREFIX + name, doc,
                                                            labels=list(labels))
        assert isinstance(fam, CounterMetricFamily)
        return fam

    def all(self) -> Iterator[Metric]:
        yield from self._by_name.values()


def _sandbox(fx: _Families, sb: Sandbox) -> None:
    who = _who(sb)
    sl = SANDBOX_LABELS
    fx.gauge("sandbox_info", "A Kata sandbox on this node (always 1); its facts as labels.",
             [*sl, "runtime", "hypervisor", "state", "network_model"]).add_metric(
        [*who, sb.runtime, sb.hypervisor.kind, sb.state, sb.network_model], 1)
    fx.gauge("sandbox_vmm_alive", "1 when the sandbox's VMM process is running.", sl
             ).add_metric(who, int(sb.hypervisor.alive))
    fx.gauge("sandbox_errors", "Parts of this sandbox kata-top could not read.", sl
             ).add_metric(who, len(sb.errors))
    counts: dict[tuple[str, str], int] = {}
    for f in sb.findings:
        counts[(f.code, f.severity)] = counts.get((f.code, f.severity), 0) + 1
    findings = fx.gauge("findings", "Diagnoses that hold now, by code (see `kata-top check`).",
                        [*sl, "code", "severity"])
    for (code, severity), n in sorted(counts.items()):
        findings.add_metric([*who, code, severity], n)
    _links(fx, sb, who)
    _tc(fx, sb, who)
    _vmm(fx, sb, who)
    for v in sb.virtiofsd:
        fx.gauge("virtiofsd_alive", "1 when the sandbox's virtiofsd runs.", [*sl, "pid"]
                 ).add_metric([*who, str(v.pid)], int(v.alive))
        fx.gauge("virtiofsd_info", "virtiofsd's options (always 1): cache mode, thread pool "
                 "and whether any rate-limit flag is set.",
                 [*sl, "pid", "cache", "thread_pool_size", "rate_limited"]).add_metric(
            [*who, str(v.pid), v.cache or "", str(v.thread_pool_size or ""),
             "true" if v.rate_limit_flags else "false"], 1)


def _links(fx: _Families, sb: Sandbox, who: list[str]) -> None:
    lab = [*SANDBOX_LABELS, "interface"]
    for lk in sb.links:
        w = [*who, lk.name]
        st = lk.stats
        fx.gauge("link_up", "1 when the link is administratively up with carrier.", lab
                 ).add_metric(w, int(lk.up and lk.carrier is not False))
        fx.gauge("link_mtu_bytes", "Link MTU.", lab).add_metric(w, lk.mtu)
        for name, value in (("receive_bytes", st.rx_bytes), ("transmit_bytes", st.tx_bytes),
                            ("receive_packets", st.rx_packets),
                            ("transmit_packets", st.tx_packets),
                            ("receive_dropped", st.rx_dropped),
                            ("transmit_dropped", st.tx_dropped),
                            ("receive_errors", st.rx_errors),
                            ("transmit_errors", st.tx_errors)):
            fx.counter(f"link_{name}", f"Link {name.replace('_', ' ')} (kernel counter).",
                       lab).add_metric(w, value)


def _tc(fx: _Families, sb: Sandbox, who: list[str]) -> None:
    sl = SANDBOX_LABELS
    red = [*sl, "direction", "from", "to"]
    for r in sb.redirects:
        w = [*who, r.direction, r.from_dev, r.to_dev]
        fx.gauge("redirect_present", "1 when Kata's tc mirred redirect for this direction "
                 "exists (in = eth0 → tap, out = tap → eth0).", red).add_metric(w, int(r.present))
        fx.counter("redirect_packets", "Packets the redirect carried (mirred hit counter).",
                   red).add_metric(w, r.packets)
        fx.counter("redirect_bytes", "Bytes the redirect carried.", red).add_metric(w, r.bytes)
    for lim in sb.rate_limits:
        fx.gauge("rate_limit_bytes_per_second", "Rate limit found in tc (bytes/s, "
                 "Prometheus' base unit; tc shows bits/s).",
                 [*sl, "direction", "device", "shape"]).add_metric(
            [*who, lim.direction, lim.dev, lim.shape], lim.rate_bps / 8)
    for d, rate in sorted(sb.configured_rate_limits.items()):
        if rate:
            fx.gauge("configured_rate_limit_bytes_per_second", "Rate limit Kata's "
                     "configuration asks for (rx/tx_rate_limiter_max_rate, in bytes/s).",
                     [*sl, "direction"]).add_metric([*who, d], rate / 8)
    ql = [*sl, "device", "kind", "handle", "parent"]
    for q in sb.qdiscs:
        w = [*who, q.dev, q.kind, q.handle, q.parent]
        for name, value in (("bytes", q.stats.bytes), ("packets", q.stats.packets),
                            ("drops", q.stats.drops), ("requeues", q.stats.requeues),
                            ("overlimits", q.stats.overlimits)):
            fx.counter(f"qdisc_{name}", f"Qdisc {name} (kernel counter).", ql
                       ).add_metric(w, value)
        fx.gauge("qdisc_backlog_bytes", "Bytes queued in the qdisc.", ql
                 ).add_metric(w, q.stats.backlog)
        fx.gauge("qdisc_current_queue_length", "Packets queued in the qdisc.", ql
                 ).add_metric(w, q.stats.qlen)
    for c in sb.classes:
        w = [*who, c.dev, c.kind, c.handle, c.parent]
        for name, value in (("bytes", c.stats.bytes), ("packets", c.stats.packets),
                            ("drops", c.stats.drops), ("overlimits", c.stats.overlimits)):
            fx.counter(f"class_{name}", f"Traffic class {name} (kernel counter).", ql
                       ).add_metric(w, value)
        if c.rate_bps is not None:
            fx.gauge("class_rate_bytes_per_second", "An htb class's rate.", ql
                     ).add_metric(w, c.rate_bps / 8)
        if c.ceil_bps is not None:
            fx.gauge("class_ceil_bytes_per_second", "An htb class's ceil.", ql
                     ).add_metric(w, c.ceil_bps / 8)
    al = [*sl, "device", "parent", "prio", "kind", "action", "target"]
    for f in sb.filters:
        for a in f.actions:
            w = [*who, f.dev, f.parent, str(f.prio), a.kind, a.action or "", a.target or ""]
            fx.counter("filter_action_packets", "Packets a tc filter's action handled.", al
                       ).add_metric(w, a.stats.packets)
            fx.counter("filter_action_bytes", "Bytes a tc filter's action handled.", al
                       ).add_metric(w, a.stats.bytes)
            fx.counter("filter_action_drops", "Packets a tc filter's action dropped.", al
                       ).add_metric(w, a.stats.drops)


def _vmm(fx: _Families, sb: Sandbox, who: list[str]) -> None:
    v = sb.vmm
    if v is None:
        return
    sl = SANDBOX_LABELS
    fx.gauge("vmm_status", "The VMM's run state: 1 for the state it is in (source: who told).",
             [*sl, "status", "source"]).add_metric([*who, v.status, v.source], 1)
    if v.vcpus is not None:
        fx.gauge("vmm_vcpus", "vCPUs of the VM.", sl).add_metric(who, v.vcpus)
    if v.memory_bytes is not None:
        fx.gauge("vmm_memory_bytes", "Memory of the VM (boot memory).", sl
                 ).add_metric(who, v.memory_bytes)
    if v.query_ms is not None:
        fx.gauge("vmm_query_seconds", "How long the VMM's monitor took to answer.", sl
                 ).add_metric(who, v.query_ms / 1000)
    for nic in v.nics:
        rf = nic.rx_filter or {}
        if "promiscuous" in rf and isinstance(rf["promiscuous"], bool):
            fx.gauge("vmm_nic_rx_filter_promiscuous", "1 when the guest put the NIC in "
                     "promiscuous mode (QMP query-rx-filter).", [*sl, "netdev", "mac"]
                     ).add_metric([*who, nic.netdev or "", nic.mac or ""],
                                  int(rf["promiscuous"]))


def families(snap: Snapshot) -> list[Metric]:
    """Every family of one snapshot, node-wide series first."""
    fx = _Families()
    fx.gauge("snapshot_timestamp_seconds", "When this snapshot was taken (Unix time)."
             ).add_metric([], snap.taken_at)
    fx.gauge("collection_duration_seconds", "How long the collection took."
             ).add_metric([], snap.duration_ms / 1000)
    fx.gauge("sandboxes", "Sandboxes found (one kata_top_sandbox_info series each)."
             ).add_metric([], len(snap.sandboxes))
    fx.gauge("collection_errors", "Node-wide problems reading Kata's state."
             ).add_metric([], len(snap.errors))
    for sb in snap.sandboxes:
        _sandbox(fx, sb)
    host: dict[tuple[str, str], int] = {}
    for f in snap.host_findings:
        host[(f.code, f.severity)] = host.get((f.code, f.severity), 0) + 1
    hf = fx.gauge("host_findings", "Host diagnoses that hold now, by code.", ["code", "severity"])
    for (code, severity), n in sorted(host.items()):
        hf.add_metric([code, severity], n)
    return list(fx.all())


class SnapshotCollector(Collector):
    """A prometheus_client collector over whatever snapshot `get()` returns at scrape time."""

    def __init__(self, get: Callable[[], Snapshot]) -> None:
        self._get = get

    def collect(self) -> Iterable[Metric]:
        return families(self._get())


def registry_for(get: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get))
    return registry


def render(snap: Snapshot) -> str:
    """Prometheus text exposition (0.0.4) of one snapshot."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry_for(lambda: snap)).decode("utf-8", errors="replace")
