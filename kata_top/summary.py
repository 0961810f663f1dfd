"""One-word summaries of a sandbox, shared by the text table and the dashboard."""

from __future__ import annotations

from kata_top.model import Sandbox
from kata_top.units import fmt_bytes, fmt_rate


def redirect_health(sb: Sandbox) -> str:
    """`both` (both redirects as Kata leaves them), `-` where the model has none; otherwise
    what is wrong, worst first: `out→eth1` (redirected elsewhere), `in failing` (target down
    or mirred failing), `in only` (out missing, or no ingress qdisc to hold it: the finding
    and the diagram name which), `none`."""
    if sb.network_model != "tcfilter":
        return "-"
    if not sb.redirects:
        return "?" if sb.errors else "none"
    from kata_top.derive import redirect_states

    st = redirect_states(sb)
    for d in ("in", "out"):
        if st.get(d) == "elsewhere":
            r = next(r for r in sb.redirects if r.direction == d)
            return f"{d}→{r.elsewhere}"
    for d in ("in", "out"):
        if st.get(d) == "failing":
            return f"{d} failing"
    present = {d for d, s in st.items() if s not in ("missing", "no-qdisc")}
    if present == {"in", "out"}:
        return "both"
    if not present:
        return "none"
    return f"{present.pop()} only"


def rate_limit_text(sb: Sandbox) -> str:
    cfg = sb.configured_rate_limits
    parts = [f"{r.direction} {fmt_rate(r.rate_bps)}" + ("" if r.shape == "kata-htb"
                                                        else f" ({r.shape})")
             + (" not Kata's" if cfg.get(r.direction) == 0 else "")
             for r in sorted(sb.rate_limits, key=lambda r: r.direction)]
    return ", ".join(parts) or "-"


def resources_text(sb: Sandbox) -> str:
    v = sb.vmm
    if v is None or (v.vcpus is None and v.memory_bytes is None):
        return "-"
    vcpus = v.vcpus or sb.config_vcpus  # the state file's NumVCPUs when no monitor told
    cpus = f"{vcpus}c" if vcpus else "?c"
    return f"{cpus}/{fmt_bytes(v.memory_bytes)}" if v.memory_bytes else cpus


def virtiofsd_text(sb: Sandbox) -> str:
    if not sb.virtiofsd:
        return "-"
    alive = [v for v in sb.virtiofsd if v.alive]
    if not alive:
        return "dead"
    v = alive[0]
    if v.rate_limit_flags:
        return "limited"
    return "ok"


def problem_count(sb: Sandbox) -> int:
    return len(sb.errors) + sum(1 for f in sb.findings if f.severity != "info")


def pod_text(sb: Sandbox) -> str:
    if sb.pod.name:
        return f"{sb.pod.namespace or '-'}/{sb.pod.name}"
    # runtime-rs records no CRI annotations; an orphan has no state at all
    return f"(orphan) {sb.id[:12]}" if sb.state == "orphan" else f"{sb.runtime}:{sb.id[:12]}"
