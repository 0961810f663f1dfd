"""Kata's on-disk sandbox state: the Go runtime's persist.json and runtime-rs's state.json.

The input is untrusted (Kata rewrites persist.json in place, so a reader can see it empty or
half written; a disk can hold anything): every field is type-checked and a bad one becomes
`None`, never an exception. Field names follow Kata's persist API structs.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from msgspec import Struct

from kata_top.boundedjson import loads
from kata_top.collectors.safeopen import UnsafeFile, read_file, read_under
from kata_top.model import NetworkModel

KataRuntime = Literal["go", "rs"]

GO_MODEL_NAMES: dict[int, NetworkModel] = {0: "tcfilter", 1: "macvtap", 2: "tcfilter", 3: "none"}
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
# CRI-O writes its own keys.
CRIO_NAME = "io.kubernetes.cri-o.KubeName"
CRIO_NAMESPACE = "io.kubernetes.pod.namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
CRIO_UID = "io.kubernetes.pod.uid"


class StateRecord(Struct, frozen=True):
    id: str
    runtime: KataRuntime
    path: str
    state: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None
    hypervisor: str | None = None
    hypervisor_pid: int | None = None
    hypervisor_path: str | None = None
    api_socket: str | None = None
    virtiofsd_pid: int | None = None
    netns_path: str | None = None
    model: NetworkModel | None = None
    tap_name: str | None = None
    guest_mac: str | None = None
    virt_iface: str | None = None
    endpoint_type: str | None = None
    rx_rate_bps: int = 0
    tx_rate_bps: int = 0
    disable_vhost_net: bool | None = None
    vcpus: int | None = None  # HypervisorConfig's NumVCPUs (NumVCPUsF since Kata 3.3)
    debug: bool | None = None
    error: str | None = None  # set when the file could not be read or parsed
    # runtime-rs: where the VMM keeps its sockets (hypervisor_persist.rs vm_path, run_dir,
    # jailer_root); the Go runtime's are fixed paths under the run root
    vm_path: str | None = None
    run_dir: str | None = None
    jailer_root: str | None = None


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _i(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _b(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _vcpus(hcfg: dict[str, Any]) -> int | None:
    v = hcfg.get("NumVCPUsF", hcfg.get("NumVCPUs"))
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1 << 16:
        return None
    return int(-(-v // 1))  # a fraction of a vCPU boots as a whole one


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def parse_persist(sandbox_id: str, path: str, doc: Any) -> StateRecord:
    """The Go runtime's persist.json (already decoded)."""
    if not isinstance(doc, dict):
        return StateRecord(id=sandbox_id, runtime="go", path=path,
                           error=f"persist.json is a JSON {type(doc).__name__}, not an object")
    hv = _d(doc.get("HypervisorState"))
    net = _d(doc.get("Network"))
    cfg = _d(doc.get("Config"))
    hcfg = _d(cfg.get("HypervisorConfig"))
    ncfg = _d(cfg.get("NetworkConfig"))
    sandbox_container = _s(doc.get("SandboxContainer")) or sandbox_id
    annotations: dict[str, Any] = {}
    for cc in _l(cfg.get("ContainerConfigs")):
        cc = _d(cc)
        if cc.get("ID") == sandbox_container or not annotations:
            annotations = _d(cc.get("Annotations"))
    tap = mac = virt = etype = None
    model_code: int | None = None
    for ep in _l(net.get("Endpoints")):
        ep = _d(ep)
        etype = _s(ep.get("Type"))
        pair = None
        for key in ("Veth", "Macvlan", "IPVlan", "Netkit"):
            if key in ep:
                pair = _d(_d(ep.get(key)).get("NetPair"))
                break
        if pair is not None:
            tap = _s(_d(pair.get("TAPIface")).get("Name"))
            mac = _s(_d(pair.get("TAPIface")).get("HardAddr"))
            virt = _s(_d(pair.get("VirtIface")).get("Name"))
            model_code = _i(pair.get("NetInterworkingModel"))
        elif "Tap" in ep:
            ti = _d(_d(_d(ep.get("Tap")).get("TapInterface")))
            tap = _s(_d(ti.get("TAPIface")).get("Name")) or _s(ti.get("Name"))
            mac = _s(_d(ti.get("TAPIface")).get("HardAddr"))
            model_code = 3
        break  # the first endpoint is the pod's eth0
    if model_code is None:
        model_code = _i(ncfg.get("InterworkingModel"))
    # persist/api/network.go NetworkInfo.NetworkID; persist/api/config.go NetworkConfig.NetworkID
    netns_path = _s(net.get("NetworkID")) or _s(ncfg.get("NetworkID")) \
        or _s(ncfg.get("NetNSPath"))
    return StateRecord(
        id=sandbox_id, runtime="go", path=path,
        state=_s(doc.get("State")),
        pod_name=_s(annotations.get(SANDBOX_NAME)) or _s(annotations.get(CRIO_NAME)),
        pod_uid=_s(annotations.get(SANDBOX_UID)) or _s(annotations.get(CRIO_UID)),
        pod_namespace=_s(annotations.get(SANDBOX_NAMESPACE))
        or _s(annotations.get(CRIO_NAMESPACE)),
        hypervisor=_s(hv.get("Type")) or _s(cfg.get("HypervisorType")),
        hypervisor_pid=_i(hv.get("Pid")) or None,
        hypervisor_path=_s(hcfg.get("HypervisorPath")),
        api_socket=_s(hv.get("APISocket")),
        # pkg/hypervisors/hypervisor_state.go: VirtiofsDaemonPid
        virtiofsd_pid=_i(hv.get("VirtiofsDaemonPid")) or _i(hv.get("VirtiofsdPid")) or None,
        netns_path=netns_path,
        model=GO_MODEL_NAMES.get(model_code) if model_code is not None else None,
        tap_name=tap, guest_mac=mac, virt_iface=virt, endpoint_type=etype,
        rx_rate_bps=_i(hcfg.get("RxRateLimiterMaxRate")) or 0,
        tx_rate_bps=_i(hcfg.get("TxRateLimiterMaxRate")) or 0,
        disable_vhost_net=_b(hcfg.get("DisableVhostNet")),
        vcpus=_vcpus(hcfg),
        debug=_b(hcfg.get("Debug")),
    )


# runtime-rs resource/src/network/endpoint/endpoint_persist.rs EndpointState: one key per kind
RS_ENDPOINTS = {"veth_endpoint": "virtual", "ipvlan_endpoint": "ipvlan",
                "macvlan_endpoint": "macvlan", "vlan_endpoint": "vlan", "tap_endpoint": "tap",
                "vhost_user_endpoint": "vhost-user", "physical_endpoint": "physical"}


def parse_rs_state(sandbox_id: str, path: str, doc: Any) -> StateRecord:
    """runtime-rs's state.json (already decoded): virt_container sandbox_persist.rs
    SandboxState {sandbox_type, resource, hypervisor}. Each VMM's save() fills only part of
    `hypervisor` (hypervisor_persist.rs): no pid and no api_socket for any of them, no netns
    for QEMU; the VMM is then found by its process (collectors/procs.py)."""
    if not isinstance(doc, dict):
        return StateRecord(id=sandbox_id, runtime="rs", path=path,
                           error=f"state.json is a JSON {type(doc).__name__}, not an object")
    hv = _d(doc.get("hypervisor"))
    cfg = _d(hv.get("config"))  # kata-types Hypervisor: its *_info sections are flattened
    virt = etype = None
    for ep in _l(_d(doc.get("resource")).get("endpoint")):
        for key, kind in RS_ENDPOINTS.items():
            body = _d(_d(ep).get(key))
            if body:
                virt, etype = _s(body.get("if_name")), kind
                break
        if etype:
            break
    return StateRecord(
        id=sandbox_id, runtime="rs", path=path, state="running",
        hypervisor=_s(hv.get("hypervisor_type")),
        hypervisor_pid=_i(hv.get("pid")) or None,
        hypervisor_path=_s(cfg.get("path")),
        api_socket=_s(hv.get("api_socket")),
        virtiofsd_pid=_i(hv.get("virtiofs_daemon_pid")) or None,
        netns_path=_s(hv.get("netns")),
        virt_iface=virt, endpoint_type=etype,
        # runtime-rs always names taps tap<N>_kata (network_pair.rs)
        tap_name="tap0_kata" if virt and etype != "tap" else virt,
        rx_rate_bps=_i(cfg.get("rx_rate_limiter_max_rate")) or 0,
        tx_rate_bps=_i(cfg.get("tx_rate_limiter_max_rate")) or 0,
        disable_vhost_net=_b(cfg.get("disable_vhost_net")),
        debug=_b(cfg.get("enable_debug")),
        vm_path=_s(hv.get("vm_path")), run_dir=_s(hv.get("run_dir")),
        jailer_root=_s(hv.get("jailer_root")),
    )


MAX_STATE_BYTES = 16 << 20


def _below(path: str, root: str) -> str:
    """path relative to root. discover() joins its paths onto the root, so most are a prefix
    cut; relpath (which asks for the working directory twice) only for any other."""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)


# A file written this recently may be mid-rewrite (Kata truncates persist.json, then writes
# it): worth a retry even when it did not change while read.
BEING_WRITTEN_S = 1.0


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _settled(before: tuple[int, int, int] | None, path: str) -> bool:
    """The file did not change while it was read and was not written just now: reading it
    again would read the same bytes, so a retry (and its sleep) is pointless."""
    after = _identity(path)
    return after is not None and after == before and \
        time.time() - after[2] / 1e9 > BEING_WRITTEN_S


def read_state_file(sandbox_id: str, path: str, runtime: KataRuntime, retries: int = 2,
                    retry_delay: float = 0.02, root: str | None = None) -> StateRecord:
    """Read and parse; retried when the file was being rewritten (Kata rewrites persist.json
    in place): it changed while read, or was written within BEING_WRITTEN_S. A file that
    is simply corrupt costs one read, no sleep.

    With `root` (the state tree the path lies in), nothing below it is followed if it is a
    symlink; in any case a FIFO, device or oversized file is refused without blocking."""
    parse = parse_persist if runtime == "go" else parse_rs_state
    last_error = "unknown"
    for attempt in range(retries + 1):
        before = _identity(path)
        try:
            raw = read_under(root, _below(path, root), MAX_STATE_BYTES) if root \
                else read_file(path, MAX_STATE_BYTES)
        except UnsafeFile as exc:
            return StateRecord(id=sandbox_id, runtime=runtime, path=path,
                               error=f"refused: {exc.strerror}")
        except FileNotFoundError:
            return StateRecord(id=sandbox_id, runtime=runtime, path=path,
                               error="state file vanished (sandbox being removed)")
        except PermissionError:
            return StateRecord(id=sandbox_id, runtime=runtime, path=path,
                               error="permission denied reading the state file (needs root)")
        except OSError as exc:
            return StateRecord(id=sandbox_id, runtime=runtime, path=path,
                               error=f"cannot read state file: {exc.strerror}")
        try:
            return parse(sandbox_id, path, loads(raw))
        except (ValueError, RecursionError, TypeError, AttributeError) as exc:
            # Not JSON, too deep, or JSON of the wrong shape: this sandbox's error, not ours.
            last_error = "empty file" if not raw.strip() else f"not valid JSON ({exc})"[:200]
        if attempt < retries and not _settled(before, path):
            time.sleep(retry_delay * (attempt + 1))
            continue
        break
    return StateRecord(id=sandbox_id, runtime=runtime, path=path,
                       error=f"corrupt state file: {last_error}")


class StateCache:
    """Parsed state files keyed by (inode, size, mtime): an unchanged file is not re-read.

    Kata rewrites persist.json in place on every change, which changes size or mtime. A file
    that was corrupt is not retried (with its sleeps) every cycle either: only when it changed,
    or after CORRUPT_RETRY_S, so twenty broken sandboxes cost what twenty healthy ones do.
    """

    CORRUPT_RETRY_S = 30.0

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int, int], StateRecord, float]] = {}

    def read(self, sandbox_id: str, path: str, runtime: KataRuntime,
             root: str | None = None) -> StateRecord:
        try:
            st = os.lstat(path)  # lstat: a symlink is refused by the read, not followed here
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except (OSError, ValueError):
            self._cache.pop(path, None)
            return read_state_file(sandbox_id, path, runtime, root=root)
        hit = self._cache.get(path)
        now = time.monotonic()
        if hit is not None and hit[0] == key and (
                hit[1].error is None or now - hit[2] < self.CORRUPT_RETRY_S):
            return hit[1]
        rec = read_state_file(sandbox_id, path, runtime, root=root)
        self._cache[path] = (key, rec, now)
        return rec

    def prune(self, live: set[str]) -> None:
        for path in list(self._cache):
            if path not in live:
                del self._cache[path]


class DiscoveryError(Struct, frozen=True):
    where: str
    message: str


def discover(run_root: str) -> tuple[list[tuple[str, KataRuntime, str]],
                                     list[DiscoveryError]]:
    """(sandbox id, runtime, state file path) for every sandbox recorded under run_root."""
    found: list[tuple[str, KataRuntime, str]] = []
    errors: list[DiscoveryError] = []
    trees: tuple[tuple[KataRuntime, str, str], ...] = (
        ("go", os.path.join(run_root, "vc", "sbs"), "persist.json"),
        ("rs", os.path.join(run_root, "kata"), "state.json"))
    for runtime, base, fname in trees:
        try:
            with os.scandir(base) as it:
                # A symlinked sandbox directory is not followed (it could lead anywhere).
                entries = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(DiscoveryError(base, f"cannot list {base}: {exc.strerror}"))
            continue
        for entry in entries:
            found.append((entry, runtime, os.path.join(base, entry, fname)))
    return found, errors
