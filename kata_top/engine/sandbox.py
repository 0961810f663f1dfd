"""One Sandbox of the model from what the collectors read of it: its state file, its
processes, its namespace's dump and its VMM's answers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kata_top import derive
from kata_top.collectors import procs, state
from kata_top.collectors.vmm_target import VmmTarget
from kata_top.engine import kinds
from kata_top.model import (
    Direction,
    Hypervisor,
    NetnsInfo,
    NetnsSource,
    Pod,
    ProcInfo,
    Runtime,
    Sandbox,
    SandboxError,
    SandboxState,
    ShimMonitorState,
    Virtiofsd,
    Vmm,
    evolve,
    kata_state,
)

if TYPE_CHECKING:
    from kata_top.collectors.rtnetlink import NetnsDump

HYPERVISOR_NAMES = {"qemu": "qemu", "clh": "cloud-hypervisor", "firecracker": "firecracker",
                    "dragonball": "dragonball"}


def build_sandbox(sid: str, rec: state.StateRecord | None, dump: NetnsDump | None,
           ns_source: NetnsSource | None, runtime: Runtime, sb_state: SandboxState,
           vmm_pid: int | None, alive: bool, kind: str, netns_info: NetnsInfo,
           errors: list[SandboxError], vmm_proc_info: ProcInfo | None,
           shim: ProcInfo | None, shim_monitor: ShimMonitorState | None,
           vfs: tuple[Virtiofsd, ...],
           target: VmmTarget | None) -> Sandbox:
    links = dump.links if dump else ()
    filters = dump.filters if dump else ()
    tap = derive.find_tap(links, rec.tap_name if rec else None)
    virt = rec.virt_iface if rec and rec.virt_iface else derive.DEFAULT_VIRT
    model = derive.infer_model(rec.model if rec else None, links, filters, tap,
                               dump.routes if dump else ())
    if dump is not None and model == "none" and ns_source == "proc":
        # `none` often shares the node's namespace: show only this sandbox's tap.
        links = tuple(lk for lk in links if lk.name == tap)
    redirects = derive.redirects(model, filters, tap, virt, dump.qdiscs) if dump else ()
    limits = derive.rate_limits(model, links, dump.qdiscs, dump.classes, tap, virt) \
        if dump else ()
    configured: dict[Direction, int] = {}
    if rec is not None and (rec.rx_rate_bps or rec.tx_rate_bps
                            or (rec.runtime == "go" and not rec.error)):
        # The Go runtime's persist.json always holds both (0 = no limit); runtime-rs
        # records none, so nothing is known there.
        configured = {"in": rec.rx_rate_bps, "out": rec.tx_rate_bps}

    vmm: Vmm | None = None
    if target is None and kind == kinds.REMOTE:
        vmm = kinds.remote_vmm()
    elif target is None:
        vmm = Vmm(source="none", status="dead" if rec else "unknown",
                  reason="the VMM process is not running" if vmm_pid or rec else None)
    return Sandbox(
        id=sid, runtime=runtime, state=sb_state,
        pod=Pod(name=rec.pod_name if rec else None,
                namespace=rec.pod_namespace if rec else None,
                uid=rec.pod_uid if rec else None),
        hypervisor=Hypervisor(kind=HYPERVISOR_NAMES.get(kind, kind), pid=vmm_pid,
                              alive=alive, path=rec.hypervisor_path if rec else None),
        netns=netns_info, network_model=model, links=links,
        qdiscs=dump.qdiscs if dump else (), classes=dump.classes if dump else (),
        filters=filters, routes=dump.routes if dump else (), redirects=redirects,
        rate_limits=limits,
        configured_rate_limits=configured,
        disable_vhost_net=rec.disable_vhost_net if rec else None,
        config_vcpus=rec.vcpus if rec else None, tap_name=tap,
        guest_mac=rec.guest_mac if rec else None, vmm=vmm, virtiofsd=vfs, shim=shim,
        shim_monitor=shim_monitor, vmm_proc=vmm_proc_info, state_path=rec.path if rec else None,
        errors=tuple(errors),
        endpoint=derive.endpoint_kind(rec.endpoint_type if rec else None, links, virt),
    )




def netns_path(rec: state.StateRecord | None,
               vmm_pid: int | None) -> tuple[str | None, NetnsSource | None]:
    """Where the sandbox's network namespace is: its state file's word, else its VMM's."""
    if rec is not None and rec.netns_path:
        return rec.netns_path, "state"
    pid = (rec.hypervisor_pid if rec else None) or vmm_pid
    if pid and procs.pid_alive(pid):
        return f"/proc/{pid}/ns/net", "proc"
    return None, None


def resolve_id(ids: list[str], records: Mapping[str, state.StateRecord], query: str) -> str:
    """The one of ids that query names (kata_top/select.py), by the state files' pod names."""
    from kata_top.select import resolve

    stubs = [Sandbox(id=sid, runtime="unknown", state="orphan",
                     pod=Pod(name=rec.pod_name if rec else None,
                             namespace=rec.pod_namespace if rec else None),
                     hypervisor=Hypervisor(kind="unknown", pid=None, alive=False),
                     netns=NetnsInfo(path=None, inode=None), network_model="unknown")
             for sid in ids for rec in (records.get(sid),)]
    return resolve(stubs, query).id


def unreadable(sid: str, rec: state.StateRecord | None, netns_path: str | None,
                exc: Exception) -> Sandbox:
    """A sandbox whose collection raised: what its state file said, and the error with the
    path it was reading (the rest of the snapshot is unaffected)."""
    where = f" (namespace {netns_path})" if netns_path else ""
    return Sandbox(
        id=sid, runtime=rec.runtime if rec else "unknown",
        state=kata_state(rec.state) if rec and not rec.error else "corrupt" if rec else "orphan",
        pod=Pod(name=rec.pod_name if rec else None, namespace=rec.pod_namespace if rec else None,
                uid=rec.pod_uid if rec else None),
        hypervisor=Hypervisor(kind=rec.hypervisor or "unknown" if rec else "unknown",
                              pid=rec.hypervisor_pid if rec else None, alive=False),
        netns=NetnsInfo(path=netns_path, inode=None), network_model="unknown",
        state_path=rec.path if rec else None,
        errors=(SandboxError("collect", f"could not read this sandbox{where}: "
                                        f"{type(exc).__name__}: {exc}"[:500]),))


def with_vmm(sb: Sandbox, vmm: Vmm | None) -> Sandbox:
    """The sandbox with its VMM facts. A VMM seen dead when it was asked, after the sandbox
    was seen alive, died during this collection: the later look wins, so one snapshot never
    says both running and dead."""
    if vmm is None:
        return sb
    if vmm.status == "dead" and sb.hypervisor.alive:
        state = sb.state if sb.state in ("orphan", "corrupt") else "stale"
        return evolve(sb, vmm=vmm, state=state, hypervisor=evolve(sb.hypervisor, alive=False))
    return evolve(sb, vmm=vmm)


def same_root(named: str | None, root: str) -> bool:
    if named is None:
        return True
    named = os.path.normpath(named)
    # Kata writes /run/vc/... but /var/run is the same directory on every modern distro.
    alias = {"/var/run": "/run"}
    return alias.get(named, named) == alias.get(root, root)
