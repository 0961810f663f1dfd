"""Start a lab sandbox's processes the way Kata starts them, per VMM.

- QEMU: virtiofsd, QEMU in the pod namespace with the tap as an fd, the shim holding qmp.sock
  (kata_top/lab/processes.py).
- Cloud Hypervisor: virtiofsd, then `cloud-hypervisor --api-socket <path>` in the pod
  namespace — the Go runtime's clh.go launchClh (`--api-socket` only; started from the
  shim, in its working directory, inside the pod namespace: sandbox.go startVM runs StartVM
  under network.Run), runtime-rs's ch/inner_hypervisor.rs (`--api-socket`,
  working directory `/`, setns into the pod namespace before exec); the shim holds one API
  connection.
- Firecracker (Go runtime, jailed — fc.go fcInit): the jailer makes
  /run/vc/firecracker/<id[:32]>/root, joins `--netns`, chroots there and execs
  `/firecracker --id <id[:32]> --start-time-us .. --start-time-cpu-us ..
  --parent-cpu-time-us .. --config-file <jailed path>` (firecracker src/jailer/src/env.rs
  exec_command); the PID is read from <jailer root>/firecracker.pid. The shim creates
  metrics.fifo and logs.fifo in the VM path and reads them (fc.go fcListenToFifo). The lab
  plays the jailer: it makes the same tree and starts the stand-in with the jail as its
  working directory (no chroot).
- Dragonball: no VMM process; the shim holds the tap and runs the vCPU threads.

The API VMMs are kata_top/lab/vmm_standin.py; the real QEMU stays QEMU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

from kata_top.lab import processes
from kata_top.lab.layout import TAP, Layout
from kata_top.lab.manifest import LabSandbox
from kata_top.lab.network import guest_mac
from kata_top.lab.scenario import SandboxSpec

STANDINS = ("cloud-hypervisor", "firecracker")
FC_FIFOS = ("metrics.fifo", "logs.fifo")


def standin_path(layout: Layout, name: str) -> str:
    return os.path.join(layout.lab_dir, "bin", name)


def ledger_path(layout: Layout, spec: SandboxSpec) -> str:
    """The stand-in's record of who connected and what they asked (for tests)."""
    return os.path.join(layout.lab_dir, f"vmm-{spec.short}.json")


def read_ledger(layout: Layout, spec: SandboxSpec) -> dict[str, object]:
    with open(ledger_path(layout, spec)) as fh:
        doc: dict[str, object] = json.load(fh)
    return doc


def _netns(layout: Layout, spec: SandboxSpec) -> str:
    return layout.netns_path(spec)


def _start_api_vmm(layout: Layout, spec: SandboxSpec) -> int:
    ns = _netns(layout, spec)
    tap_fd = processes.open_tap(ns, TAP)
    cfg = {"tap": TAP, "mac": guest_mac(spec), "vcpus": 1, "memory_mib": 256,
           "rx_bps": spec.rx_rate_bps, "tx_bps": spec.tx_rate_bps}
    # the command line Kata gives the VMM: clh.go execs clhPath, the jailer execs
    # "/" + the binary's name inside the jail (firecracker src/jailer/src/env.rs)
    argv0 = "/opt/kata/bin/cloud-hypervisor" if spec.hypervisor == "clh" else "/firecracker"
    env = dict(os.environ, KATA_TOP_LAB_VMM=json.dumps(cfg), KATA_TOP_LAB_ARGV0=argv0,
               KATA_TOP_LAB_TAP_FD=str(tap_fd),
               KATA_TOP_LAB_VMM_LEDGER=ledger_path(layout, spec))
    sock = layout.api_socket(spec)
    assert sock is not None
    if spec.hypervisor == "clh":
        argv = [standin_path(layout, "cloud-hypervisor"), "--api-socket", sock]
        cwd = "/" if spec.runtime == "rs" else layout.bundle_dir(spec)
    else:
        jail = layout.fc_jailer_root(spec)
        os.makedirs(os.path.join(jail, "run"), mode=0o750, exist_ok=True)
        now_us = str(int(time.time() * 1e6))
        argv = [standin_path(layout, "firecracker"), "--id", spec.id[:32],
                "--start-time-us", now_us, "--start-time-cpu-us", "0",
                "--parent-cpu-time-us", "0", "--config-file", "/fcConfig.json"]
        cwd = jail
    os.makedirs(cwd, exist_ok=True)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, pass_fds=(tap_fd,), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=lambda: processes._enter_ns(ns))
    finally:
        os.close(tap_fd)
    processes.wait_for(sock, 10, spec.hypervisor, proc.pid)
    if spec.hypervisor == "firecracker":
        with open(os.path.join(layout.fc_jailer_root(spec), "firecracker.pid"), "w") as fh:
            fh.write(str(proc.pid))
    return proc.pid


def _fc_fifos(layout: Layout, spec: SandboxSpec) -> list[str]:
    """metrics.fifo and logs.fifo in the VM path, linked into the jail (fc.go
    fcJailResource) — the shim's alone to read."""
    paths = []
    for name in FC_FIFOS:
        path = os.path.join(layout.fc_vm_path(spec), name)
        if not os.path.exists(path):
            os.mkfifo(path, 0o600)
        jailed = os.path.join(layout.fc_jailer_root(spec), name)
        if not os.path.exists(jailed):
            os.link(path, jailed)
        paths.append(path)
    return paths


def start(layout: Layout, sb: LabSandbox, start_qemu: Callable[[], int],
          save: Callable[[], None]) -> None:
    spec = sb.spec
    if spec.hypervisor in ("qemu", "clh"):
        sb.virtiofsd_pid = processes.start_virtiofsd(layout, spec)
        save()
    if spec.hypervisor == "qemu":
        sb.qemu_pid = start_qemu()
        save()
        sb.shim_pid = processes.start_shim(layout, spec)
    elif spec.hypervisor in ("clh", "firecracker"):
        if spec.hypervisor == "firecracker":
            os.makedirs(layout.fc_jailer_root(spec), mode=0o750, exist_ok=True)
        sb.vmm_standin_pid = _start_api_vmm(layout, spec)
        save()
        sock = layout.api_socket(spec) or ""
        env = {"KATA_TOP_LAB_SHIM_API": sock,
               "KATA_TOP_LAB_SHIM_API_GET": "/api/v1/vmm.ping" if spec.hypervisor == "clh"
               else "/"}
        if spec.hypervisor == "firecracker":
            env["KATA_TOP_LAB_SHIM_FIFOS"] = ":".join(_fc_fifos(layout, spec))
        sb.shim_pid = processes.start_shim(layout, spec, env)
    elif spec.hypervisor == "dragonball":
        tap_fd = processes.open_tap(_netns(layout, spec), TAP)
        try:
            sb.shim_pid = processes.start_shim(
                layout, spec, {"KATA_TOP_LAB_DB_VCPUS": "1", "KATA_TOP_LAB_TAP_FD": str(tap_fd)},
                pass_fds=(tap_fd,))
        finally:
            os.close(tap_fd)
    else:
        raise ValueError(f"the lab cannot start a {spec.hypervisor!r} sandbox")
    save()


def write_standins(layout: Layout) -> None:
    from kata_top.lab.vmm_standin import SOURCE

    for name in STANDINS:
        path = standin_path(layout, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            # run by this interpreter directly, so the process's name (comm) is the VMM's
            fh.write(SOURCE.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
        os.chmod(path, 0o755)
