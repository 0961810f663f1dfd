"""Kata state files as the runtimes write them (Go: persist.json; runtime-rs: state.json).

Field names follow Kata's `virtcontainers/persist/api` (Go) and `runtime-rs` persist structs.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from kata_top.lab.layout import TAP, Layout
from kata_top.lab.network import guest_mac
from kata_top.lab.scenario import SandboxSpec

MODEL_CODES = {"macvtap": 1, "tcfilter": 2, "none": 3}
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
QEMU = "/usr/bin/qemu-system-x86_64"


def _write(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def _annotations(spec: SandboxSpec) -> dict[str, str]:
    return {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": spec.id,
        "io.kubernetes.cri.sandbox-name": spec.pod_name,
        "io.kubernetes.cri.sandbox-namespace": spec.pod_namespace,
        "io.kubernetes.cri.sandbox-uid": str(uuid.uuid5(uuid.NAMESPACE_OID, spec.id)),
    }


def _endpoint(layout: Layout, spec: SandboxSpec) -> dict[str, Any]:
    mac = guest_mac(spec)
    if spec.model == "none":
        return {"Type": "tap", "Tap": {"TapInterface": {
            "ID": str(uuid.uuid5(uuid.NAMESPACE_URL, spec.id)), "Name": TAP,
            "TAPIface": {"Name": TAP, "HardAddr": mac, "Addrs": None}}}}
    return {"Type": "virtual", "Veth": {"NetPair": {
        "ID": str(uuid.uuid5(uuid.NAMESPACE_URL, spec.id)),
        "Name": "br0_kata",
        "TAPIface": {"Name": TAP, "HardAddr": mac, "Addrs": None},
        "VirtIface": {"Name": "eth0", "HardAddr": mac, "Addrs": None},
        "NetInterworkingModel": MODEL_CODES[spec.model],
    }}}


def persist_json(layout: Layout, spec: SandboxSpec, qemu_pid: int, virtiofsd_pid: int,
                 debug: bool) -> dict[str, Any]:
    netns_path = "" if spec.model == "none" else layout.netns_path(spec)
    return {
        "PersistVersion": 2,
        "State": "running",
        "GuestMemoryBlockSizeMB": 128,
        "GuestMemoryHotplugProbe": False,
        "SandboxContainer": spec.id,
        "CgroupPath": f"/kubepods/kata_{spec.id}",
        "CgroupPaths": None,
        "Devices": [],
        "HypervisorState": {
            "BlockIndexMap": {}, "Type": "qemu",
            "UUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.id)), "APISocket": "",
            "Bridges": [], "HotpluggedVCPUs": [], "HotpluggedMemory": 0,
            "VirtiofsdPid": virtiofsd_pid, "Pid": qemu_pid, "PCIeRootPort": 0,
            "HotplugVFIOOnRootBus": False,
        },
        "AgentState": {"ProxyPid": 0, "URL": "vsock://0:1024"},
        "Network": {"NetworkID": netns_path, "Endpoints": [_endpoint(layout, spec)],
                    "NetworkCreated": False},
        "Config": {
            "HypervisorType": "qemu",
            "HypervisorConfig": {
                "NumVCPUs": 1, "DefaultMaxVCPUs": 2, "MemorySize": 256, "DefaultBridges": 1,
                "KernelPath": "", "InitrdPath": "", "HypervisorPath": QEMU,
                "HypervisorMachineType": "q35", "SharedFS": "virtio-fs",
                "VirtioFSDaemon": VIRTIOFSD, "VirtioFSCache": "auto",
                "VirtioFSExtraArgs": ["--thread-pool-size=1"], "Debug": debug,
                "DisableVhostNet": True,
                "RxRateLimiterMaxRate": spec.rx_rate_bps,
                "TxRateLimiterMaxRate": spec.tx_rate_bps,
            },
            "NetworkConfig": {"NetNSPath": netns_path, "NetNsCreated": False,
                              "DisableNewNetNs": spec.model == "none",
                              "InterworkingModel": MODEL_CODES[spec.model]},
            "ShimType": "kataShim",
            "ContainerConfigs": [{"ID": spec.id, "Annotations": _annotations(spec),
                                  "RootFs": "", "Resources": {}}],
        },
    }


def state_json(layout: Layout, spec: SandboxSpec, qemu_pid: int,
               virtiofsd_pid: int) -> dict[str, Any]:
    return {
        "sandbox_type": "VIRTCONTAINER",
        "resource": {"endpoint": [{"veth_endpoint": {"if_name": "eth0", "network_qos": False}}],
                     "cgroup_state": None},
        "hypervisor": {
            "hypervisor_type": "qemu", "pid": qemu_pid,
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.id)), "api_socket": "",
            "id": spec.id, "vm_path": layout.vm_dir(spec), "jailed": False, "jailer_root": "",
            "netns": layout.netns_path(spec), "virtiofs_daemon_pid": virtiofsd_pid,
            "config": {"path": QEMU, "network_info": {"network_queues": 1},
                       "debug_info": {"enable_debug": False}},
            "cached_block_devices": [], "capabilities": [],
        },
    }


def write_state(layout: Layout, spec: SandboxSpec, qemu_pid: int, virtiofsd_pid: int) -> str:
    if spec.runtime == "rs":
        path = os.path.join(layout.state_dir(spec), "state.json")
        _write(path, state_json(layout, spec, qemu_pid, virtiofsd_pid))
    else:
        path = os.path.join(layout.state_dir(spec), "persist.json")
        _write(path, persist_json(layout, spec, qemu_pid, virtiofsd_pid,
                                  debug=spec.extra_monitor is not None))
    return path
