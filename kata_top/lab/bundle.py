"""The sandbox container's OCI bundle, where containerd starts the shim.

containerd writes `config.json` (the OCI spec, with the CRI annotations) into the task's
bundle directory and starts the shim with that directory as its working directory; Kata's Go
shim re-executes itself there (src/runtime/pkg/containerd-shim-v2/service.go StartShim:
`cmd.Dir = cwd`) and runtime-rs takes it as its bundle (crates/shim/src/shim.rs). The lab
writes the spec and starts its shim stand-in there.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from kata_top.lab.layout import Layout
from kata_top.lab.scenario import SandboxSpec


def cri_annotations(spec: SandboxSpec) -> dict[str, str]:
    """What containerd's CRI plugin puts on a pod sandbox container."""
    return {
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-id": spec.id,
        "io.kubernetes.cri.sandbox-name": spec.pod_name,
        "io.kubernetes.cri.sandbox-namespace": spec.pod_namespace,
        "io.kubernetes.cri.sandbox-uid": str(uuid.uuid5(uuid.NAMESPACE_OID, spec.id)),
    }


def oci_spec(layout: Layout, spec: SandboxSpec) -> dict[str, Any]:
    netns = "" if spec.model == "none" else layout.netns_path(spec)
    return {
        "ociVersion": "1.1.0",
        "process": {"user": {"uid": 65535, "gid": 65535}, "args": ["/pause"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": spec.pod_name,
        "annotations": cri_annotations(spec),
        "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                 {"type": "mount"},
                                 {"type": "network", **({"path": netns} if netns else {})}],
                  "cgroupsPath": f"kubepods-besteffort-pod.slice:cri-containerd:{spec.id}"},
    }


def write_bundle(layout: Layout, spec: SandboxSpec) -> str:
    """The bundle directory with its config.json; returns the directory."""
    path = layout.bundle_dir(spec)
    os.makedirs(os.path.join(path, "rootfs"), mode=0o711, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(oci_spec(layout, spec), fh)
    return path
