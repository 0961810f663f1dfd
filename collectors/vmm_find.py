"""A sandbox's VMM process when Kata's state does not name one.

runtime-rs saves no `pid` for any VMM (crates/hypervisor/src/*/inner.rs `save()` leaves
hypervisor_persist.rs HypervisorState.pid at its Default), and the process scan
(collectors/procs.py) finds most VMMs by the sandbox id on their command line. What is left:

- a jailed Firecracker names only `--id <id[:32]>` (Go runtime, virtcontainers/fc.go
  truncateID): matched to the one sandbox whose id starts with it;
- Dragonball runs inside the runtime-rs shim (crates/hypervisor/src/dragonball: the VMM is a
  library in the shim's process, its vCPU threads `db_vcpu<N>`): the VMM is the shim;
- a VMM whose command line names no id at all: matched by the network namespace it runs in,
  when exactly one sandbox records that namespace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kata_top.collectors.procs import FC_ID_LEN, ProcessIndex
from kata_top.collectors.state import StateRecord


def _ns_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def attach(idx: ProcessIndex, records: Mapping[str, StateRecord]) -> None:
    """Add to idx.vmm (and vmm_kind) the VMMs of recorded sandboxes found other than by id."""
    if not (idx.vmm_short or idx.unnamed) and not any(
            r.hypervisor == "dragonball" for r in records.values()):
        return
    for sid, rec in records.items():
        if sid in idx.vmm:
            continue
        short = sid[:FC_ID_LEN]
        pid = idx.vmm_short.get(short)
        if pid is not None:
            idx.vmm[sid] = pid
            idx.vmm_kind[sid] = idx.vmm_kind.get(short, "firecracker")
        elif rec.hypervisor == "dragonball" and sid in idx.shim:
            idx.vmm[sid] = idx.shim[sid]
            idx.vmm_kind[sid] = "dragonball"
    if not idx.unnamed:
        return
    by_ns: dict[tuple[int, int], list[int]] = {}
    for pid in idx.unnamed:
        key = _ns_key(f"/proc/{pid}/ns/net")
        if key is not None:
            by_ns.setdefault(key, []).append(pid)
    wanted: dict[tuple[int, int], list[str]] = {}
    for sid, rec in records.items():
        if sid not in idx.vmm and rec.netns_path:
            key = _ns_key(rec.netns_path)
            if key is not None:
                wanted.setdefault(key, []).append(sid)
    for key, sids in wanted.items():
        pids = by_ns.get(key, [])
        if len(sids) == 1 and len(pids) == 1:  # only an unambiguous match
            idx.vmm[sids[0]] = pids[0]
            idx.vmm_kind[sids[0]] = idx.unnamed[pids[0]]
