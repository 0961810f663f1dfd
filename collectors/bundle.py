"""The pod a sandbox belongs to, from the OCI bundle its shim runs in.

runtime-rs's state.json holds no annotations (virt_container/src/sandbox_persist.rs
SandboxState: sandbox_type, resource, hypervisor). containerd starts every shim with its
working directory in the task's bundle, and the shim keeps it: the Go shim's StartShim
re-executes itself with `cmd.Dir = cwd` (src/runtime/pkg/containerd-shim-v2/service.go),
runtime-rs takes the bundle as its working directory (crates/shim/src/shim.rs,
kata_sys_util::spec::get_bundle_path). So
`/proc/<shim pid>/cwd/config.json` is the sandbox container's OCI spec with the CRI
annotations — for both runtimes.

Read safely: `config.json` itself is never followed if it is a symlink, never blocks (a FIFO
is refused), and is size-capped; an answer is kept while the file is the same.
"""

from __future__ import annotations

import os
from typing import Any

from kata_top.boundedjson import loads
from kata_top.collectors.safeopen import UnsafeFile, read_under
from kata_top.collectors.state import (
    CRIO_NAME,
    CRIO_NAMESPACE,
    CRIO_UID,
    SANDBOX_NAME,
    SANDBOX_NAMESPACE,
    SANDBOX_UID,
)

MAX_SPEC_BYTES = 4 << 20
CONFIG = "config.json"
PodNames = tuple[str | None, str | None, str | None]  # name, namespace, uid
_cache: dict[int, tuple[tuple[int, int, int, int], PodNames]] = {}
_CACHE_MAX = 8192


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def parse_spec(raw: bytes) -> PodNames:
    """(pod name, namespace, uid) from an OCI spec's annotations; Nones when absent or when
    the spec is not what containerd writes."""
    try:
        doc = loads(raw)
    except ValueError:
        return None, None, None
    ann = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(ann, dict):
        return None, None, None
    return (_str(ann.get(SANDBOX_NAME)) or _str(ann.get(CRIO_NAME)),
            _str(ann.get(SANDBOX_NAMESPACE)) or _str(ann.get(CRIO_NAMESPACE)),
            _str(ann.get(SANDBOX_UID)) or _str(ann.get(CRIO_UID)))


def pod_of_shim(pid: int, proc_root: str = "/proc") -> PodNames:
    """The pod named by the bundle the shim `pid` works in (Nones when it cannot be read)."""
    cwd = f"{proc_root}/{pid}/cwd"
    try:
        st = os.stat(os.path.join(cwd, CONFIG), follow_symlinks=False)
    except (OSError, ValueError):
        _cache.pop(pid, None)
        return None, None, None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _cache.get(pid)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        names = parse_spec(read_under(cwd, CONFIG, MAX_SPEC_BYTES))
    except (UnsafeFile, OSError):
        names = (None, None, None)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[pid] = (key, names)
    return names
