"""Cloud Hypervisor's and Firecracker's answers as VMM facts, and where their sockets are.

Untrusted input: every field is type-checked, anything else is left out.

Cloud Hypervisor (vmm/src/api/openapi/cloud-hypervisor.yaml): `GET /api/v1/vmm.ping`
(VmmPingResponse: version), `/api/v1/vm.info` (VmInfo: state, config.cpus.boot_vcpus,
config.memory.size, config.net[]: tap, mac, id, num_queues, rate_limiter_config),
`/api/v1/vm.counters` (VmCounters: per device id, for a NIC rx_bytes, rx_frames, tx_bytes,
tx_frames — virtio-devices/src/net.rs counters()).

Firecracker (src/firecracker/swagger/firecracker.yaml): `GET /` (InstanceInfo: state,
vmm_version), `/machine-config` (vcpu_count, mem_size_mib), `/vm/config`
(FullVmConfiguration: network-interfaces[]: iface_id, host_dev_name, guest_mac,
rx_rate_limiter, tx_rate_limiter). Never its metrics FIFO (the shim reads it: a second
reader steals the shim's per-flush deltas) and never `PUT /actions` FlushMetrics.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from kata_top.collectors.procs import arg_value
from kata_top.model import VmmNic, VmmStatus

CLH_PATHS = ("/api/v1/vmm.ping", "/api/v1/vm.info", "/api/v1/vm.counters")
FC_PATHS = ("/", "/machine-config", "/vm/config")
CLH_STATES: dict[str, VmmStatus] = {"Created": "created", "Running": "running",
                                    "Shutdown": "shutdown", "Paused": "paused",
                                    "BreakPoint": "debug"}
FC_STATES: dict[str, VmmStatus] = {"Not started": "created", "Running": "running",
                                   "Paused": "paused"}
FC_ID_LEN = 32


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _i(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def bucket_bps(limiter: Any) -> int | None:
    """A RateLimiter's bandwidth TokenBucket as bits/s: `size` bytes per `refill_time` ms."""
    bw = _d(_d(limiter).get("bandwidth"))
    size, refill = _i(bw.get("size")), _i(bw.get("refill_time"))
    if not size or not refill:
        return None
    return size * 8 * 1000 // refill


def clh_facts(answers: dict[str, object]) -> dict[str, Any]:
    """Vmm fields from Cloud Hypervisor's three answers."""
    ping = _d(answers.get(CLH_PATHS[0]))
    info = _d(answers.get(CLH_PATHS[1]))
    counters = _d(answers.get(CLH_PATHS[2]))
    cfg = _d(info.get("config"))
    nics: list[VmmNic] = []
    for net in _l(cfg.get("net")):
        net = _d(net)
        dev_id = _s(net.get("id"))
        c = _d(counters.get(dev_id)) if dev_id else {}
        # CH has one rate limiter per device, for both directions
        bps = bucket_bps(net.get("rate_limiter_config"))
        nics.append(VmmNic(
            netdev=dev_id, mac=(_s(net.get("mac")) or "").lower() or None, model="virtio-net",
            tap=_s(net.get("tap")), vhost=net.get("vhost_user") is True or None,
            queues=_i(net.get("num_queues")), rx_bytes=_i(c.get("rx_bytes")),
            rx_frames=_i(c.get("rx_frames")), tx_bytes=_i(c.get("tx_bytes")),
            tx_frames=_i(c.get("tx_frames")), rx_rate_bps=bps, tx_rate_bps=bps))
    state = _s(info.get("state"))
    return {
        "status": CLH_STATES.get(state or "", "unknown"),
        "version": _s(ping.get("version")),
        "vcpus": _i(_d(cfg.get("cpus")).get("boot_vcpus")),
        "memory_bytes": _i(_d(cfg.get("memory")).get("size")),
        "nics": tuple(nics),
        "sources": {"version": "GET /api/v1/vmm.ping", "status": "GET /api/v1/vm.info",
                    "vcpus": "GET /api/v1/vm.info", "memory": "GET /api/v1/vm.info",
                    "nics": "GET /api/v1/vm.info", "counters": "GET /api/v1/vm.counters"},
    }


def fc_facts(answers: dict[str, object]) -> dict[str, Any]:
    """Vmm fields from Firecracker's three answers."""
    inst = _d(answers.get(FC_PATHS[0]))
    mc = _d(answers.get(FC_PATHS[1]))
    cfg = _d(answers.get(FC_PATHS[2]))
    nics = tuple(VmmNic(
        netdev=_s(_d(n).get("iface_id")), mac=(_s(_d(n).get("guest_mac")) or "").lower() or None,
        model="virtio-net", tap=_s(_d(n).get("host_dev_name")),
        rx_rate_bps=bucket_bps(_d(n).get("rx_rate_limiter")),
        tx_rate_bps=bucket_bps(_d(n).get("tx_rate_limiter")))
        for n in _l(cfg.get("network-interfaces")))
    mem = _i(mc.get("mem_size_mib"))
    return {
        "status": FC_STATES.get(_s(inst.get("state")) or "", "unknown"),
        "version": _s(inst.get("vmm_version")),
        "vcpus": _i(mc.get("vcpu_count")),
        "memory_bytes": mem << 20 if mem is not None else None,
        "nics": nics,
        "sources": {"version": "GET /", "status": "GET /", "vcpus": "GET /machine-config",
                    "memory": "GET /machine-config", "nics": "GET /vm/config",
                    "counters": "not kept by the API (its metrics FIFO is the shim's)"},
    }


def _under_root(path: str, run_root: str) -> str:
    """A host path Kata wrote (/run/...) as seen under kata-top's run root (a DaemonSet
    mounts the host's /run/vc and /run/kata under /host/run)."""
    for prefix in ("/var/run/", "/run/"):
        if path.startswith(prefix) and run_root.rstrip("/") not in ("/run", "/var/run"):
            return os.path.join(run_root, path[len(prefix):])
    return path


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def api_socket(kind: str, sid: str, runtime: str, run_root: str, argv: tuple[str, ...],
               recorded: str | None = None, run_dir: str | None = None) -> str | None:
    """Where this VMM's API listens: the path Kata's source gives it, else what its command
    line or Kata's state names (seen under the run root); the first that is a socket."""
    named: list[str] = []
    fixed: str | None = None
    if kind == "clh":
        arg = arg_value(argv, "--api-socket")
        if arg and arg.startswith("path="):  # CH also takes `path=<p>[,fd=..]`
            arg = arg[5:].split(",", 1)[0]
        named = [p for p in (arg, recorded) if p and p.startswith("/")]
        if runtime == "rs":  # crates/hypervisor/src/ch/utils.rs get_api_socket_path
            fixed = os.path.join(run_root, "kata", sid, "ch-api.sock")
        else:  # virtcontainers/clh.go apiSocketPath: <VMStorePath>/<id>/clh-api.sock
            fixed = os.path.join(run_root, "vc", "vm", sid, "clh-api.sock")
    elif kind == "firecracker":
        arg = arg_value(argv, "--api-sock")
        named = [p for p in (arg, os.path.join(run_dir, "fc.sock") if run_dir else None)
                 if p and p.startswith("/")]  # runtime-rs firecracker/inner_hypervisor.rs
        # virtcontainers/fc.go setPaths: jailed under <chroot base>/firecracker/<id[:32]>/
        # root, the API at run/firecracker.socket inside it
        fixed = os.path.join(run_root, "vc", "firecracker", sid[:FC_ID_LEN], "root", "run",
                             "firecracker.socket")
    else:
        return None
    # only sockets in Kata's trees under the run root: a process's command line cannot point
    # kata-top at another service's socket
    trees = tuple(os.path.join(run_root, t, "") for t in ("vc", "kata"))
    candidates = [fixed, *(p for p in (*named, *(_under_root(p, run_root) for p in named))
                           if os.path.normpath(p).startswith(trees))]
    return next((p for p in candidates if _is_socket(p)), fixed)
