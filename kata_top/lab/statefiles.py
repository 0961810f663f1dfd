"""Kata state files as the runtimes write them, per hypervisor.

The Go runtime: `/run/vc/sbs/<id>/persist.json`, a persist/api/sandbox.go SandboxState whose
keys are Go field names; its `HypervisorState` (pkg/hypervisors/hypervisor_state.go) holds
what each VMM's `Save()` fills: QEMU (virtcontainers/qemu.go) Pid, VirtiofsDaemonPid, Type,
UUID; Cloud Hypervisor (clh.go) Pid, Type, VirtiofsDaemonPid, APISocket; Firecracker (fc.go)
Pid and Type only. runtime-rs: kata_top/lab/statefiles_rs.py. The OCI bundle beside both:
kata_top/lab/bundle.py.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from kata_top.lab import bundle
from kata_top.lab.layout import TAP, Layout
from kata_top.lab.network import guest_mac
from kata_top.lab.scenario import SandboxSpec

# virtcontainers/network.go NetInterworkingModel: default 0, macvtap 1, tcfilter 2, none 3
MODEL_CODES = {"macvtap": 1, "tcfilter": 2, "none": 3}
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
QEMU = "/usr/bin/qemu-system-x86_64"
# the paths Kata's configuration-*.toml files default to
HYPERVISOR_PATHS = {"qemu": QEMU, "clh": "/opt/kata/bin/cloud-hypervisor",
                    "firecracker": "/opt/kata/bin/firecracker"}
JAILER = "/opt/kata/bin/jailer"


def write_json(path: str, doc: dict[str, Any]) -> None:
    """0600 in a 0700 directory, as both runtimes write their state."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)


def vm_uuid(spec: SandboxSpec) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.id))


def _endpoint(spec: SandboxSpec) -> dict[str, Any]:
    """persist/api/network.go NetworkEndpoint; NetworkInterfacePair embeds TapInterface, so
    its ID, Name and TAPIface sit beside VirtIface."""
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


def hypervisor_state(layout: Layout, spec: SandboxSpec, vmm_pid: int,
                     virtiofsd_pid: int) -> dict[str, Any]:
    """HypervisorState as each Go VMM's Save() leaves it (the rest Go's zero values)."""
    hv: dict[str, Any] = {
        "BlockIndexMap": None, "Type": spec.hypervisor, "UUID": "", "APISocket": "",
        "Bridges": None, "HotpluggedVCPUs": None, "HotpluggedMemory": 0,
        "VirtiofsDaemonPid": 0, "Pid": vmm_pid, "HotPlugVFIO": "no-port",
        "ColdPlugVFIO": "no-port", "PCIeRootPort": 0, "PCIeSwitchPort": 0,
    }
    if spec.hypervisor == "qemu":  # qemu.go Save()
        hv.update(UUID=vm_uuid(spec), VirtiofsDaemonPid=virtiofsd_pid, Bridges=[],
                  HotpluggedVCPUs=[])
    elif spec.hypervisor == "clh":  # clh.go Save()
        hv.update(VirtiofsDaemonPid=virtiofsd_pid, APISocket=layout.api_socket(spec))
    return hv  # firecracker: fc.go Save() sets Pid and Type only


def persist_json(layout: Layout, spec: SandboxSpec, vmm_pid: int, virtiofsd_pid: int,
                 debug: bool) -> dict[str, Any]:
    netns_path = "" if spec.model == "none" else layout.netns_path(spec)
    return {
        "PersistVersion": 2,
        "State": "running",
        "GuestMemoryBlockSizeMB": 128,
        "GuestMemoryHotplugProbe": False,
        "SandboxContainer": spec.id,
        "SandboxCgroupPath": f"/kubepods/kata_{spec.id}",
        "OverheadCgroupPath": "",
        "CgroupPaths": None,
        "Devices": [],
        "HypervisorState": hypervisor_state(layout, spec, vmm_pid, virtiofsd_pid),
        "AgentState": {"URL": "vsock://0:1024"},
        "Network": {"NetworkID": netns_path, "Endpoints": [_endpoint(spec)],
                    "NetworkCreated": False},
        "Config": {
            "HypervisorType": spec.hypervisor,
            "HypervisorConfig": {
                "NumVCPUsF": 1, "DefaultMaxVCPUs": 2, "MemorySize": 256, "DefaultBridges": 1,
                "KernelPath": "", "InitrdPath": "",
                "HypervisorPath": HYPERVISOR_PATHS.get(spec.hypervisor, QEMU),
                "JailerPath": JAILER if spec.hypervisor == "firecracker" else "",
                "HypervisorMachineType": "q35" if spec.hypervisor == "qemu" else "",
                "SharedFS": "virtio-fs" if spec.hypervisor != "firecracker" else "",
                "VirtioFSDaemon": VIRTIOFSD, "VirtioFSCache": "auto",
                "VirtioFSExtraArgs": ["--thread-pool-size=1"], "Debug": debug,
                "DisableVhostNet": True,
                "RxRateLimiterMaxRate": spec.rx_rate_bps,
                "TxRateLimiterMaxRate": spec.tx_rate_bps,
            },
            # persist/api/config.go NetworkConfig
            "NetworkConfig": {"NetworkID": netns_path,
                              "DisableNewNetwork": spec.model == "none",
                              "InterworkingModel": MODEL_CODES.get(spec.model, 0)},
            "ContainerConfigs": [{"ID": spec.id, "Annotations": bundle.cri_annotations(spec),
                                  "RootFs": "", "Resources": {}}],
        },
    }


def write_state(layout: Layout, spec: SandboxSpec, vmm_pid: int, virtiofsd_pid: int) -> str:
    if spec.runtime == "rs":
        from kata_top.lab.statefiles_rs import state_json

        path = os.path.join(layout.state_dir(spec), "state.json")
        write_json(path, state_json(layout, spec))
    else:
        path = os.path.join(layout.state_dir(spec), "persist.json")
        write_json(path, persist_json(layout, spec, vmm_pid, virtiofsd_pid,
                                      debug=spec.extra_monitor is not None))
    return path
