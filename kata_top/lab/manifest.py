"""The lab's manifest: everything it made, written before each thing is made.

`lab down` trusts it first and then sweeps by prefix and run root, so a crashed `up` is undone
too. It lives at `<run-root>/lab/manifest.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from kata_top.lab.scenario import SandboxSpec


@dataclass
class LabSandbox:
    spec: SandboxSpec
    netns: str | None
    state_file: str | None = None
    qemu_pid: int | None = None
    virtiofsd_pid: int | None = None
    shim_pid: int | None = None
    vmm_standin_pid: int | None = None  # Cloud Hypervisor / Firecracker stand-in

    def to_json(self) -> dict[str, Any]:
        d = asdict(self.spec)
        d["faults"] = sorted(self.spec.faults)
        d.update(ip=self.spec.ip, netns=self.netns, state_file=self.state_file,
                 pids={"qemu": self.qemu_pid, "virtiofsd": self.virtiofsd_pid,
                       "shim": self.shim_pid, "vmm": self.vmm_standin_pid})
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabSandbox:
        spec = SandboxSpec(index=d["index"], id=d["id"], pod_name=d["pod_name"],
                           pod_namespace=d["pod_namespace"], model=d["model"],
                           runtime=d["runtime"], hypervisor=d.get("hypervisor", "qemu"),
                           extra_monitor=d["extra_monitor"],
                           rx_rate_bps=d["rx_rate_bps"], tx_rate_bps=d["tx_rate_bps"],
                           faults=frozenset(d["faults"]))
        pids = d.get("pids") or {}
        return cls(spec=spec, netns=d.get("netns"), state_file=d.get("state_file"),
                   qemu_pid=pids.get("qemu"), virtiofsd_pid=pids.get("virtiofsd"),
                   shim_pid=pids.get("shim"), vmm_standin_pid=pids.get("vmm"))


@dataclass
class Manifest:
    run_root: str
    prefix: str
    status: str = "building"
    options: dict[str, Any] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    sandboxes: list[LabSandbox] = field(default_factory=list)
    extra_pids: list[int] = field(default_factory=list)  # traffic generator

    @property
    def path(self) -> str:
        return os.path.join(self.run_root, "lab", "manifest.json")

    def all_pids(self) -> list[int]:
        pids = list(self.extra_pids)
        for sb in self.sandboxes:
            pids += [p for p in (sb.shim_pid, sb.qemu_pid, sb.virtiofsd_pid,
                                 sb.vmm_standin_pid) if p]
        return pids

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        doc = {"version": 1, "run_root": self.run_root, "prefix": self.prefix,
               "status": self.status, "options": self.options, "namespaces": self.namespaces,
               "sandboxes": [sb.to_json() for sb in self.sandboxes],
               "extra_pids": self.extra_pids}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1)
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, run_root: str) -> Manifest | None:
        path = os.path.join(run_root, "lab", "manifest.json")
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(f"lab manifest {path} is unreadable: {exc}") from exc
        return cls(run_root=doc["run_root"], prefix=doc["prefix"], status=doc["status"],
                   options=doc.get("options", {}), namespaces=doc.get("namespaces", []),
                   sandboxes=[LabSandbox.from_json(d) for d in doc.get("sandboxes", [])],
                   extra_pids=doc.get("extra_pids", []))
