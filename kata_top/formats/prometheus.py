"""A snapshot in the Prometheus text exposition format (version 0.0.4).

Made for node_exporter's textfile collector from cron (`kata-top snapshot --prometheus
--output /var/lib/node_exporter/textfile/kata.prom`, written atomically) or any scraper of
plain files. Counters are the kernel's own (they reset when a link or filter is re-created,
which Prometheus' rate() handles); every sandbox series carries `sandbox` (the full id) and
`pod` (namespace/name) labels, so a dashboard can join either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kata_top import summary
from kata_top.model import Sandbox, Snapshot

PREFIX = "kata_top_"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


@dataclass
class _Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


class _Exposition:
    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict[str, str],
            value: float) -> None:
        fam = self._families.get(name)
        if fam is None:
            fam = self._families[name] = _Family(PREFIX + name, kind, help_text)
        fam.samples.append((labels, value))

    def lines(self) -> Iterable[str]:
        # One HELP/TYPE block per family with all its samples together, as the format wants.
        for fam in self._families.values():
            yield f"# HELP {fam.name} {fam.help}"
            yield f"# TYPE {fam.name} {fam.kind}"
            for labels, value in fam.samples:
                yield f"{fam.name}{_labels(labels)} {_number(value)}"


def _sandbox(ex: _Exposition, sb: Sandbox) -> None:
    who = {"sandbox": sb.id, "pod": summary.pod_text(sb)}
    ex.add("sandbox_info", "gauge", "A Kata sandbox on this node (always 1).",
           {**who, "runtime": sb.runtime, "hypervisor": sb.hypervisor.kind,
            "state": sb.state, "network_model": sb.network_model}, 1)
    ex.add("sandbox_vmm_alive", "gauge", "1 when the sandbox's VMM process is running.",
           who, int(sb.hypervisor.alive))
    ex.add("sandbox_errors", "gauge", "Parts of this sandbox kata-top could not read.",
           who, len(sb.errors))
    counts: dict[tuple[str, str], int] = {}
    for f in sb.findings:
        counts[(f.code, f.severity)] = counts.get((f.code, f.severity), 0) + 1
    for (code, severity), n in sorted(counts.items()):
        ex.add("findings", "gauge", "Diagnoses that hold now, by code (see `kata-top check`).",
               {**who, "code": code, "severity": severity}, n)
    for lk in sb.links:
        lab = {**who, "link": lk.name}
        st = lk.stats
        ex.add("link_up", "gauge", "1 when the link is administratively up with carrier.",
               lab, int(lk.up and lk.carrier is not False))
        ex.add("link_mtu_bytes", "gauge", "Link MTU.", lab, lk.mtu)
        for name, value in (("receive_bytes", st.rx_bytes), ("transmit_bytes", st.tx_bytes),
                            ("receive_packets", st.rx_packets),
                            ("transmit_packets", st.tx_packets),
                            ("receive_dropped", st.rx_dropped),
                            ("transmit_dropped", st.tx_dropped)):
            ex.add(f"link_{name}_total", "counter",
                   f"Link {name.replace('_', ' ')} (kernel counter).", lab, value)
    for r in sb.redirects:
        lab = {**who, "direction": r.direction, "from": r.from_dev, "to": r.to_dev}
        ex.add("redirect_present", "gauge",
               "1 when Kata's tc mirred redirect for this direction exists.", lab,
               int(r.present))
        ex.add("redirect_packets_total", "counter", "Packets the redirect carried.", lab,
               r.packets)
        ex.add("redirect_bytes_total", "counter", "Bytes the redirect carried.", lab, r.bytes)
    for lim in sb.rate_limits:
        ex.add("rate_limit_bits_per_second", "gauge", "Rate limit found in tc.",
               {**who, "direction": lim.direction, "dev": lim.dev, "shape": lim.shape},
               lim.rate_bps)
    for q in sb.qdiscs:
        lab = {**who, "dev": q.dev, "kind": q.kind, "handle": q.handle, "parent": q.parent}
        ex.add("qdisc_drops_total", "counter", "Packets the qdisc dropped.", lab, q.stats.drops)
        ex.add("qdisc_overlimits_total", "counter", "Qdisc overlimit events.", lab,
               q.stats.overlimits)
        ex.add("qdisc_backlog_bytes", "gauge", "Bytes queued in the qdisc.", lab,
               q.stats.backlog)
    for v in sb.virtiofsd:
        ex.add("virtiofsd_alive", "gauge", "1 when the sandbox's virtiofsd runs.",
               {**who, "pid": str(v.pid)}, int(v.alive))


def render(snap: Snapshot) -> str:
    ex = _Exposition()
    ex.add("snapshot_timestamp_seconds", "gauge", "When this snapshot was taken (Unix time).",
           {}, snap.taken_at)
    ex.add("collection_duration_seconds", "gauge", "How long the collection took.", {},
           snap.duration_ms / 1000)
    ex.add("sandboxes", "gauge", "Sandboxes found (one kata_top_sandbox_info series each).",
           {}, len(snap.sandboxes))
    ex.add("collection_errors", "gauge", "Node-wide problems reading Kata's state.", {},
           len(snap.errors))
    for sb in snap.sandboxes:
        _sandbox(ex, sb)
    host: dict[tuple[str, str], int] = {}
    for f in snap.host_findings:
        host[(f.code, f.severity)] = host.get((f.code, f.severity), 0) + 1
    for (code, severity), n in sorted(host.items()):
        ex.add("host_findings", "gauge", "Host diagnoses that hold now, by code.",
               {"code": code, "severity": severity}, n)
    return "\n".join(ex.lines()) + "\n"
