"""A snapshot as Prometheus metric families, through prometheus_client.

One collector serves `kata-top serve`'s /metrics (Prometheus text or OpenMetrics, as the
scraper's Accept header asks) and `kata-top snapshot --prometheus` (text for node_exporter's
textfile collector), so the two can never disagree.

Names and labels (README, "Prometheus series", maps them to kata-monitor's):
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

import math
from collections.abc import Callable, Iterable
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from kata_top.formats.prom_datapath import rate_limits, redirect_health, vm_counters
from kata_top.formats.terminal import CONTROL, for_terminal
from kata_top.model import Sandbox, Snapshot

PREFIX = "kata_top_"
SANDBOX_LABELS = ("sandbox_id", "cri_uid", "cri_name", "cri_namespace")
Kind = Literal["gauge", "counter"]


def _esc(value: str) -> str:
    """Label-value escaping of both formats (backslash, double quote, newline). Other control
    characters (only a hostile state file has them: Kubernetes names cannot) are shown as
    \\xNN, so a scrape printed to a terminal cannot drive it."""
    if CONTROL.search(value):
        value = for_terminal(value)
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value.__class__ is int:
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


class _Family:
    """One family: its extra label names, and rows of (sandbox label text, extra values,
    value). The sandbox label text is escaped once per sandbox, not once per sample."""

    __slots__ = ("doc", "extra", "kind", "name", "rows", "sandbox")

    def __init__(self, name: str, kind: Kind, doc: str, extra: tuple[str, ...],
                 sandbox: bool) -> None:
        self.name, self.kind, self.doc, self.extra, self.sandbox = name, kind, doc, extra, sandbox
        self.rows: list[tuple[str, tuple[str, ...], float]] = []


RestMemo = dict[tuple[tuple[str, ...], tuple[str, ...]], str]


def _lines(fam: _Family, memo: RestMemo) -> str:
    """The sample lines of one family (the same in both formats)."""
    out: list[str] = []
    sample = fam.name + "_total" if fam.kind == "counter" else fam.name
    names = fam.extra
    for who, values, value in fam.rows:
        if names:
            # The same extra labels recur across sandboxes (eth0, tap0_kata, ingress…):
            # escape and join each combination once.
            rest = memo.get((names, values))
            if rest is None:
                rest = memo[(names, values)] = ",".join(
                    f'{k}="{_esc(v)}"' for k, v in zip(names, values, strict=True))
            labels = f"{who},{rest}" if who else rest
        else:
            labels = who
        out.append(f"{sample}{{{labels}}} {_num(value)}\n" if labels
                   else f"{sample} {_num(value)}\n")
    return "".join(out)


def _assemble(families: Iterable[tuple[str, Kind, str, bytes]], openmetrics: bool,
              eof: bool = True) -> bytes:
    """HELP and TYPE once per family, then its samples; `# EOF` for OpenMetrics (unless
    `eof` is false: a block of a longer exposition)."""
    out: list[bytes] = []
    for name, kind, doc, body in families:
        doc = doc.replace("\\", "\\\\").replace("\n", "\\n")
        if openmetrics:
            doc = doc.replace('"', '\\"')
        elif kind == "counter":
            # Text 0.0.4 names a counter by its sample name; OpenMetrics by the family's.
            name += "_total"
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
        out.append(body)
    if openmetrics and eof:
        out.append(b"# EOF\n")
    return b"".join(out)


class Exposition:
    """The series of one snapshot, built once and written in either format.

    `text()` is kata-top's encoder (a scrape of 200 sandboxes is ~18,000 samples; this writes
    them several times faster than prometheus_client's generic one); `metrics()` hands the same
    series to prometheus_client as Metric families, and tests/test_promout.py checks that the
    two agree sample for sample."""

    def __init__(self, memo: RestMemo | None = None) -> None:
        self._families: dict[str, _Family] = {}
        self._who_raw: dict[str, tuple[str, ...]] = {}
        self._rest_memo: RestMemo = {} if memo is None else memo

    def who(self, sb: Sandbox) -> str:
        raw = (sb.id, sb.pod.uid or "", sb.pod.name or "", sb.pod.namespace or "")
        text = ",".join(f'{k}="{_esc(v)}"' for k, v in zip(SANDBOX_LABELS, raw, strict=True))
        self._who_raw[text] = raw
        return text

    def add(self, name: str, kind: Kind, doc: str, who: str | None, value: float, /,
            **extra: str) -> None:
        """One sample; `extra` are its labels beyond the sandbox's (positional-only
        parameters above, so a label may be called `kind`)."""
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(PREFIX + name, kind, doc, tuple(extra),
                                                 who is not None)
        fam.rows.append((who or "", tuple(extra.values()), value))

    def bodies(self) -> dict[str, tuple[Kind, str, bytes]]:
        """Family name → (kind, doc, its sample lines, encoded). Label values come from state
        files: lone surrogates become '?', never a crash."""
        return {f.name: (f.kind, f.doc,
                         _lines(f, self._rest_memo).encode("utf-8", errors="replace"))
                for f in self._families.values()}

    def text(self, openmetrics: bool = False) -> bytes:
        return _assemble(((name, kind, doc, body) for name, (kind, doc, body)
                          in self.bodies().items()), openmetrics)

    def metrics(self) -> list[Metric]:
        """The same series as prometheus_client Metric families."""
        result: list[Metric] = []
        for fam in self._families.values():
            labelnames = [*SANDBOX_LABELS, *fam.extra] if fam.sandbox else list(fam.extra)
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            metric = cls(fam.name, fam.doc, labels=labelnames)
            for who, values, value in fam.rows:
                metric.add_metric([*self._who_raw.get(who, ()), *values], value)
            result.append(metric)
        return result


def _sandbox(ex: Exposition, sb: Sandbox) -> None:
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


def _node(ex: Exposition, snap: Snapshot) -> None:
    ex.add("snapshot_timestamp_seconds", "gauge", "When this snapshot was taken (Unix time).",
           None, snap.taken_at)
    ex.add("collection_duration_seconds", "gauge", "How long the collection took.", None,
           snap.duration_ms / 1000)
    ex.add("sandboxes", "gauge", "Sandboxes found (one kata_top_sandbox_info series each).",
           None, len(snap.sandboxes))
    ex.add("collection_errors", "gauge", "Node-wide problems reading Kata's state.", None,
           len(snap.errors))


def _host(ex: Exposition, snap: Snapshot) -> None:
    host: dict[tuple[str, str], int] = {}
    for f in snap.host_findings:
        host[(f.code, f.severity)] = host.get((f.code, f.severity), 0) + 1
    for (code, severity), n in sorted(host.items()):
        ex.add("host_findings", "gauge", "Host diagnoses that hold now, by code.", None, n,
               code=code, severity=severity)


def exposition(snap: Snapshot) -> Exposition:
    """Every series of one snapshot, node-wide series first."""
    ex = Exposition()
    _node(ex, snap)
    for sb in snap.sandboxes:
        _sandbox(ex, sb)
    _host(ex, snap)
    return ex


def _sandbox_key(sb: Sandbox) -> tuple[object, ...]:
    """Everything `_sandbox` reads. Rates are not in it: Prometheus computes its own."""
    # Filters only as far as they are exported: their actions' ages change every cycle.
    actions = tuple((f.dev, f.parent, f.prio, a.kind, a.action, a.target, a.stats)
                    for f in sb.filters for a in f.actions)
    return (sb.pod, sb.runtime, sb.state, sb.network_model, sb.hypervisor, len(sb.errors),
            sb.findings, sb.links, sb.redirects, sb.rate_limits,
            tuple(sorted(sb.configured_rate_limits.items())), sb.qdiscs, sb.classes,
            actions, sb.vmm, sb.virtiofsd)


def _same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # Identity first: idle namespaces hand back the very same tuples cycle after cycle.
    return all(x is y or x == y for x, y in zip(a, b, strict=True))


Bodies = dict[str, tuple[Kind, str, bytes]]
MEMO_MAX = 50_000  # escaped label combinations a TextCache keeps


def _touched(last: list[Bodies], now: list[Bodies]) -> set[str] | None:
    """The families whose lines changed between two renders; None when every family must be
    made again (sandboxes came, went or moved; a sandbox's families came or went)."""
    if len(last) != len(now):
        return None
    touched: set[str] = set()
    for old, new in zip(last, now, strict=True):
        if old is not new:
            if old.keys() != new.keys():
                return None
            touched.update(new)
    return touched


class TextCache:
    """Renders snapshots for a long-running exporter: each sandbox's sample lines are kept
    and reused while the data they come from is unchanged (most sandboxes, most scrapes), and
    so is each family's whole block while none of its sandboxes' lines changed, so a scrape
    costs the sandboxes that changed, not all of them. `parts()` hands the blocks out as the
    very same bytes objects while they are unchanged, which lets the exporter's gzip
    (kata_top/serve/gzip_parts.py) compress only what changed. Output equals
    `exposition(snap).text()` (tests/test_promout.py)."""

    def __init__(self) -> None:
        # sandbox id → (what its lines come from, its lines per family, the sandbox)
        self._entries: dict[str, tuple[tuple[object, ...], Bodies, Sandbox]] = {}
        self._memo: RestMemo = {}
        # per format (OpenMetrics or not): family name → the family's block
        self._blocks: dict[bool, dict[str, bytes]] = {}
        self._last_bodies: list[dict[str, tuple[Kind, str, bytes]]] = []
        self._order: dict[str, tuple[Kind, str]] = {}  # families in order of appearance
        self.hits = 0

    def render(self, snap: Snapshot, openmetrics: bool = False,
               tail: Exposition | None = None) -> bytes:
        return b"".join(self.parts(snap, openmetrics, tail))

    def parts(self, snap: Snapshot, openmetrics: bool = False,
              tail: Exposition | None = None) -> list[bytes]:
        """The exposition as blocks (one per family, `# EOF` last for OpenMetrics)."""
        if len(self._memo) > MEMO_MAX:
            # Label combinations come and go with the pods (a virtiofsd's pid, …): an
            # exporter that runs for months starts the memo afresh now and then.
            self._memo.clear()
        head = Exposition()
        _node(head, snap)
        per_sandbox: list[dict[str, tuple[Kind, str, bytes]]] = []
        entries: dict[str, tuple[tuple[object, ...], Bodies, Sandbox]] = {}
        for sb in snap.sandboxes:
            cached = self._entries.get(sb.id)
            if cached is not None and cached[2] is sb:  # an idle sandbox: the same object
                entries[sb.id] = cached
                per_sandbox.append(cached[1])
                self.hits += 1
                continue
            key = _sandbox_key(sb)
            if cached is not None and _same(cached[0], key):
                bodies = cached[1]
                self.hits += 1
            else:
                ex = Exposition(self._memo)
                _sandbox(ex, sb)
                bodies = ex.bodies()
            entries[sb.id] = (key, bodies, sb)
            per_sandbox.append(bodies)
        self._entries = entries  # sandboxes that are gone are forgotten
        # Which families can any sandbox's change have touched? With the same sandboxes in
        # the same order, only those of the sandboxes whose lines are new objects; the other
        # families' blocks stand as they are (most of them, most scrapes).
        touched = _touched(self._last_bodies, per_sandbox)
        self._last_bodies = per_sandbox
        order = self._order
        if touched is None or not touched <= order.keys():
            order = {}
            for bodies in per_sandbox:
                for name, (kind, doc, _body) in bodies.items():
                    order.setdefault(name, (kind, doc))
            self._order = order
            touched = None
        out = [_assemble([(n, k, d, b)], openmetrics, eof=False)
               for n, (k, d, b) in head.bodies().items()]
        blocks = self._blocks.setdefault(openmetrics, {})
        for name, (kind, doc) in order.items():
            block = blocks.get(name)
            if block is None or touched is None or name in touched:
                lines = [b[name][2] for b in per_sandbox if name in b]
                if not lines:  # a family no sandbox has any more
                    blocks.pop(name, None)
                    continue
                block = blocks[name] = _assemble([(name, kind, doc, b"".join(lines))],
                                                 openmetrics, eof=False)
            out.append(block)  # the very same object while unchanged: its gzip is reused
        if self._blocks.get(not openmetrics) and touched != set():
            self._blocks[not openmetrics] = {}  # the other format's blocks are stale now
        end = Exposition()
        _host(end, snap)
        for more in (end, tail):
            if more is not None:
                out += [_assemble([(n, k, d, b)], openmetrics, eof=False)
                        for n, (k, d, b) in more.bodies().items()]
        if openmetrics:
            out.append(b"# EOF\n")
        return out


class SnapshotCollector(Collector):
    """A prometheus_client collector over whatever snapshot `get()` returns at scrape time."""

    def __init__(self, get: Callable[[], Snapshot]) -> None:
        self._get = get

    def collect(self) -> Iterable[Metric]:
        return exposition(self._get()).metrics()


def registry_for(get: Callable[[], Snapshot]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get))
    return registry


def render(snap: Snapshot, openmetrics: bool = False) -> str:
    """One snapshot in the Prometheus text format (0.0.4), or OpenMetrics."""
    return exposition(snap).text(openmetrics).decode("utf-8")
