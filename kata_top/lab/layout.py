"""Names and paths of everything the lab makes, derived from its prefix and run root."""

from __future__ import annotations

import os
from dataclasses import dataclass

from kata_top.lab.scenario import SandboxSpec

DEFAULT_RUN_ROOT = "/run/kata-top-lab"
DEFAULT_PREFIX = "ktlab"
GUEST_CACHE = "/var/cache/kata-top-lab"
TAP = "tap0_kata"
BRIDGE = "ktbr0"
NODE_IP = "10.77.255.254"
NODE_CIDR = 16
MAX_UNIX_PATH = 107  # sun_path is 108 bytes with the terminating NUL
FORBIDDEN_ROOTS = ("/run", "/run/vc", "/run/kata", "/var/run", "/var/run/vc", "/var/run/kata")


@dataclass(frozen=True)
class Layout:
    run_root: str
    prefix: str

    def __post_init__(self) -> None:
        if os.path.normpath(self.run_root) in FORBIDDEN_ROOTS or self.run_root in ("", "/"):
            raise ValueError(f"the lab never uses {self.run_root!r}: that is a real node's root")
        longest = len(os.path.join(self.run_root, "vc", "vm", "0" * 64, "extra-monitor.sock"))
        if longest > MAX_UNIX_PATH:
            raise ValueError(
                f"run root {self.run_root!r} is too long: QEMU's sockets under it would need "
                f"{longest} bytes and unix sockets take {MAX_UNIX_PATH}; use at most "
                f"{len(self.run_root) - (longest - MAX_UNIX_PATH)} characters")

    @property
    def node_ns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def lab_dir(self) -> str:
        return os.path.join(self.run_root, "lab")

    @property
    def manifest(self) -> str:
        return os.path.join(self.lab_dir, "manifest.json")

    @property
    def shim_script(self) -> str:
        return os.path.join(self.lab_dir, "bin", "containerd-shim-kata-v2")

    def pod_ns(self, spec: SandboxSpec) -> str:
        return f"{self.prefix}-cni-{spec.short}"

    def netns_path(self, spec: SandboxSpec) -> str:
        return f"/var/run/netns/{self.pod_ns(spec)}"

    def node_veth(self, spec: SandboxSpec) -> str:
        return f"veth{spec.short}"

    def state_dir(self, spec: SandboxSpec) -> str:
        if spec.runtime == "rs":
            return os.path.join(self.run_root, "kata", spec.id)
        return os.path.join(self.run_root, "vc", "sbs", spec.id)

    def vm_dir(self, spec: SandboxSpec) -> str:
        if spec.runtime == "rs":
            return os.path.join(self.run_root, "kata", spec.id)
        return os.path.join(self.run_root, "vc", "vm", spec.id)

    def shared_dir(self, spec: SandboxSpec) -> str:
        return os.path.join(self.lab_dir, "shared", spec.id, "shared")

    def bundle_dir(self, spec: SandboxSpec) -> str:
        """The OCI bundle containerd makes for the sandbox container and starts the shim in
        (containerd's runtime v2: <state>/io.containerd.runtime.v2.task/<namespace>/<id>)."""
        return os.path.join(self.run_root, "containerd", "io.containerd.runtime.v2.task",
                            "k8s.io", spec.id)

    def fc_vm_path(self, spec: SandboxSpec) -> str:
        """The Go runtime's Firecracker jail: <chroot base>/firecracker/<id[:32]>
        (virtcontainers/fc.go setPaths: chrootBaseDir /run/vc, truncateID)."""
        return os.path.join(self.run_root, "vc", "firecracker", spec.id[:32])

    def fc_jailer_root(self, spec: SandboxSpec) -> str:
        return os.path.join(self.fc_vm_path(spec), "root")

    def api_socket(self, spec: SandboxSpec) -> str | None:
        """The VMM API socket Kata gives Cloud Hypervisor or Firecracker."""
        if spec.hypervisor == "clh":
            # runtime-rs: crates/hypervisor/src/ch/utils.rs get_api_socket_path (ch-api.sock);
            # Go: virtcontainers/clh.go apiSocketPath (<VMStorePath>/<id>/clh-api.sock)
            name = "ch-api.sock" if spec.runtime == "rs" else "clh-api.sock"
            return os.path.join(self.vm_dir(spec), name)
        if spec.hypervisor == "firecracker":
            # fc.go setPaths: <jailerRoot>/run/firecracker.socket
            return os.path.join(self.fc_jailer_root(spec), "run", "firecracker.socket")
        return None
