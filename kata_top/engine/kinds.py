"""What the engine does differently per Kata runtime and VMM, as Kata's source leaves a node.

- VMMs the state names no pid of (runtime-rs saves none; a jailed Firecracker names only
  `--id <id[:32]>`; Dragonball is the shim): collectors/vmm_find.py.
- Pod names from the shim's OCI bundle when the state has none (runtime-rs):
  collectors/bundle.py.
- The API socket of Cloud Hypervisor and Firecracker: collectors/vmm_api.py.
- Kata's `remote` hypervisor (Go virtcontainers/remote.go, runtime-rs
  crates/hypervisor/src/remote): the VM is made by a remote service, no VMM runs here.

Each collector is imported only when a sandbox needs it (a one-shot command on a node without
one imports none of them).
"""

from __future__ import annotations

from collections.abc import Mapping

from kata_top.collectors import procs, state
from kata_top.model import ProcInfo, Vmm, evolve

REMOTE = "remote"
REMOTE_REASON = "remote hypervisor: the VM runs elsewhere; nothing on this node to read"
SHIM_NAME = "containerd-shim-kata-v2"


def attach_vmms(pidx: procs.ProcessIndex, records: Mapping[str, state.StateRecord]) -> None:
    if records:
        from kata_top.collectors.vmm_find import attach

        attach(pidx, records)


def with_bundle_pod(rec: state.StateRecord | None,
                    shim_pid: int | None) -> state.StateRecord | None:
    """The record with the pod named by the shim's bundle, when the state names none."""
    if rec is None or rec.pod_name is not None or not shim_pid:
        return rec
    from kata_top.collectors.bundle import pod_of_shim

    name, namespace, uid = pod_of_shim(shim_pid)
    if name is None:
        return rec
    return evolve(rec, pod_name=name, pod_namespace=namespace, pod_uid=uid or rec.pod_uid)


def shim_as_vmm(shim_pid: int | None, vmm_pid: int | None,
                vmm_info: ProcInfo | None) -> ProcInfo | None:
    """Dragonball: the shim is the VMM; one CPU sample of it, not two a moment apart."""
    if shim_pid and shim_pid == vmm_pid and vmm_info is not None:
        return evolve(vmm_info, name=SHIM_NAME)
    return None


def api_socket(kind: str, sid: str, runtime: str, run_root: str, argv: tuple[str, ...],
               rec: state.StateRecord | None) -> str | None:
    recorded = rec.api_socket if rec else None
    if kind not in ("clh", "firecracker"):
        return recorded
    from kata_top.collectors.vmm_api import api_socket as find

    return find(kind, sid, runtime, run_root, argv, recorded, rec.run_dir if rec else None)


def remote_vmm() -> Vmm:
    return Vmm(source="none", status="unknown", reason=REMOTE_REASON)
