"""Host findings judged against the node's sandboxes: a host fault matters as much as the
sandboxes that meet it (each sandbox's DisableVhostNet, recorded in its state file)."""

from __future__ import annotations

from collections.abc import Iterable

from kata_top.model import Finding, Snapshot, evolve


def in_context(host: Iterable[Finding], snap: Snapshot) -> tuple[Finding, ...]:
    """KT-H002 (no /dev/vhost-net) is info when every QEMU sandbox here runs with
    DisableVhostNet: true (Kata never opens the device for them), critical when one runs
    without it; with no sandbox recorded either way, as the host check said."""
    host = tuple(host)
    if not any(f.code == "KT-H002" for f in host):
        return host  # the very tuple: a stream's consumers see "unchanged" by identity
    qemu = [sb for sb in snap.sandboxes if sb.hypervisor.kind == "qemu"
            and sb.disable_vhost_net is not None]
    needs = [sb.id[:12] for sb in qemu if sb.disable_vhost_net is False]
    out = []
    for f in host:
        if f.code == "KT-H002" and qemu:
            ev = {**f.evidence, "sandboxes_using_vhost_net": needs,
                  "sandboxes_without_vhost_net": len(qemu) - len(needs)}
            if needs:
                f = evolve(f, severity="critical", evidence=ev,
                           summary=f"{f.summary}; {len(needs)} sandbox(es) here use vhost-net")
            else:
                f = evolve(f, severity="info", evidence=ev, summary=(
                    f"{f.summary}; no sandbox here meets it: all {len(qemu)} run with "
                    "DisableVhostNet: true"))
        out.append(f)
    return tuple(out)
