"""runtime-rs's `state.json` as it saves it, per hypervisor.

`/run/kata/<id>/state.json` (crates/persist/src/lib.rs to_disk, PERSIST_FILE) holds a
virt_container/src/sandbox_persist.rs SandboxState {sandbox_type, resource, hypervisor}.
`hypervisor` is hypervisor_persist.rs HypervisorState as each VMM's `save()` fills it; the
rest is `Default` — so no VMM has a `pid` or an `api_socket`, and QEMU not even a netns:

- QEMU (qemu/inner.rs): hypervisor_type, id, config;
- Cloud Hypervisor (ch/inner.rs): hypervisor_type, id, vm_path, jailed, jailer_root, netns,
  config, run_dir, guest_protection_to_use (vm_path = run_dir = /run/kata/<id>,
  ch/inner_hypervisor.rs);
- Dragonball (dragonball/inner.rs): hypervisor_type, id, vm_path, jailed, jailer_root, netns,
  config, run_dir, cached_block_devices, passfd_listener_port.

`resource.endpoint[]` is endpoint_persist.rs EndpointState (one optional key per kind).
`config` is kata-types' Hypervisor, its *_info sections `#[serde(flatten)]`ed.
"""

from __future__ import annotations

import os
from typing import Any

from kata_top.lab.layout import Layout
from kata_top.lab.scenario import SandboxSpec

RS_PATHS = {"qemu": "/opt/kata/bin/qemu-system-x86_64",
            "clh": "/opt/kata/bin/cloud-hypervisor", "dragonball": ""}


def _config(spec: SandboxSpec) -> dict[str, Any]:
    return {"path": RS_PATHS.get(spec.hypervisor, ""), "jailer_path": "", "ctlpath": "",
            "default_vcpus": 1.0, "default_maxvcpus": 2, "default_memory": 256,
            "enable_debug": spec.extra_monitor is not None,
            "extra_monitor_socket": spec.extra_monitor or "", "disable_vhost_net": False,
            "rx_rate_limiter_max_rate": spec.rx_rate_bps,
            "tx_rate_limiter_max_rate": spec.tx_rate_bps, "network_queues": 1,
            "shared_fs": "virtio-fs" if spec.hypervisor != "dragonball" else "inline-virtio-fs"}


def hypervisor(layout: Layout, spec: SandboxSpec) -> dict[str, Any]:
    hv: dict[str, Any] = {  # HypervisorState::default()
        "hypervisor_type": "", "pid": None, "uuid": "", "api_socket": "", "id": "",
        "vm_path": "", "jailed": False, "jailer_root": "", "netns": None, "config": {},
        "run_dir": "", "cached_block_devices": [], "virtiofs_daemon_pid": 0,
        "passfd_listener_port": None, "guest_protection_to_use": "NoProtection",
    }
    hv.update(hypervisor_type=spec.hypervisor, id=spec.id, config=_config(spec))
    if spec.hypervisor in ("clh", "dragonball"):
        run_dir = os.path.join(layout.run_root, "kata", spec.id)
        hv.update(vm_path=run_dir, run_dir=run_dir, netns=layout.netns_path(spec))
    return hv


def state_json(layout: Layout, spec: SandboxSpec) -> dict[str, Any]:
    kinds = ("physical_endpoint", "veth_endpoint", "ipvlan_endpoint", "macvlan_endpoint",
             "vlan_endpoint", "tap_endpoint", "vhost_user_endpoint")
    endpoint: dict[str, object] = {k: None for k in kinds}
    endpoint["veth_endpoint"] = {"if_name": "eth0", "network_qos": False}
    return {"sandbox_type": "virt_container",  # virt_container/src/sandbox.rs VIRTCONTAINER
            "resource": {"endpoint": [endpoint], "cgroup_state": None},
            "hypervisor": hypervisor(layout, spec)}
