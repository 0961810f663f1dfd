"""A snapshot without process command lines, for /api/v1/snapshot when asked to leave them out.

A QEMU command line names every device, socket and path of the VM, and a shim's or VMM's may
carry whatever the operator put in Kata's configuration (kernel parameters, agent options):
not for whoever can reach the port. What remains (pids, names, resources) is what the console
shows in its lists; its process panel shows an empty command line.
"""

from __future__ import annotations

from kata_top.model import ProcInfo, Sandbox, Snapshot, evolve


def _proc(p: ProcInfo | None) -> ProcInfo | None:
    return evolve(p, cmdline=()) if p is not None and p.cmdline else p


def _sandbox(sb: Sandbox) -> Sandbox:
    shim, vmm_proc = _proc(sb.shim), _proc(sb.vmm_proc)
    if shim is sb.shim and vmm_proc is sb.vmm_proc:
        return sb
    return evolve(sb, shim=shim, vmm_proc=vmm_proc)


def without_cmdlines(snap: Snapshot) -> Snapshot:
    return evolve(snap, sandboxes=tuple(_sandbox(sb) for sb in snap.sandboxes))
