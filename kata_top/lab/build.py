"""`kata-top lab up|down|status`: bring a Kata-shaped node up in namespaces and take it down."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from kata_top.collectors.procs import pid_alive
from kata_top.lab import network, processes
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import LabSandbox, Manifest
from kata_top.lab.network import LabError
from kata_top.lab.scenario import build as build_specs
from kata_top.lab.shim_standin import SOURCE as SHIM_SOURCE
from kata_top.lab.statefiles import write_state

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class UpOptions:
    sandboxes: int = 10
    scenario: str = "demo"
    qemu: bool = True
    guest: bool = False
    accel: str = "tcg"
    traffic: bool = False


def terminal_progress(done: int, total: int, what: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K[{done:>{len(str(total))}}/{total}] {what}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _quiet(done: int, total: int, what: str) -> None:
    pass


def check_up(layout: Layout, opts: UpOptions) -> None:
    """Every refusal before anything is made: one sentence each."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces, links and taps); "
                       "run it with sudo")
    if opts.sandboxes < 1:
        raise LabError(f"--sandboxes must be at least 1 (got {opts.sandboxes})")
    if opts.accel not in ("tcg", "kvm"):
        raise LabError(f"--accel must be tcg or kvm (got {opts.accel!r})")
    if opts.qemu and processes.qemu_binary() is None:
        raise LabError("qemu-system-x86_64 is not installed; apt-get install qemu-system-x86 "
                       "(or use --no-qemu for namespaces and tc state only)")
    if opts.qemu and processes.virtiofsd_binary() is None:
        raise LabError("virtiofsd is not installed; apt-get install qemu-system-x86")
    if opts.guest and not opts.qemu:
        raise LabError("--guest needs QEMU; drop --no-qemu")
    existing = Manifest.load(layout.run_root)
    if existing is not None or network.list_namespaces(layout.prefix):
        raise LabError(f"a lab already exists at {layout.run_root} (prefix {layout.prefix}); "
                       "run `kata-top lab down` first")


def up(layout: Layout, opts: UpOptions, progress: Progress = _quiet) -> Manifest:
    check_up(layout, opts)
    try:
        specs = build_specs(opts.scenario, opts.sandboxes)
    except ValueError as exc:
        raise LabError(str(exc)) from exc
    if sum(1 for s in specs if s.model == "none") > 1:
        raise LabError("only one `none`-model sandbox fits a lab node (its tap lives there)")
    guest_files: tuple[str, str] | None = None
    if opts.guest:
        from kata_top.lab.guest import prepare_guest

        progress(0, 1, "preparing the guest kernel and initramfs")
        guest_files = prepare_guest()
    man = Manifest(run_root=layout.run_root, prefix=layout.prefix,
                   options={"sandboxes": opts.sandboxes, "scenario": opts.scenario,
                            "qemu": opts.qemu, "guest": opts.guest, "accel": opts.accel})
    man.namespaces = [layout.node_ns] + [layout.pod_ns(s) for s in specs if s.model != "none"]
    man.sandboxes = [LabSandbox(spec=s, netns=None if s.model == "none" else layout.pod_ns(s))
                     for s in specs]
    man.save()  # before anything exists, so a crash from here on is undone by `down`
    total = len(specs) * (2 if opts.qemu else 1) + 2
    step = 0
    try:
        network.build_node(layout)
        network.add_pod_namespaces(layout, specs)
        network.build_node_side(layout, specs)
        step += 2
        progress(step, total, "namespaces and veth pairs")
        for sb in man.sandboxes:
            network.build_pod(layout, sb.spec)
            os.makedirs(layout.vm_dir(sb.spec), mode=0o700, exist_ok=True)
            step += 1
            progress(step, total, f"datapath of {sb.spec.pod_namespace}/{sb.spec.pod_name}")
        if opts.qemu:
            _write_shim(layout)
            for sb in man.sandboxes:
                _start_sandbox(layout, man, sb, opts, guest_files)
                step += 1
                progress(step, total, f"{sb.spec.hypervisor} of "
                                      f"{sb.spec.pod_namespace}/{sb.spec.pod_name}")
        for sb in man.sandboxes:
            sb.state_file = write_state(layout, sb.spec, sb.qemu_pid or sb.vmm_standin_pid or 0,
                                        sb.virtiofsd_pid or 0)
        if opts.qemu:
            _plant_dead_vmm(man)
        if opts.traffic:
            man.extra_pids.append(_start_background_traffic(layout))
        man.status = "up"
        man.save()
        progress(total, total, f"lab up: {len(specs)} sandboxes under {layout.run_root}")
        return man
    except BaseException as exc:
        man.status = "failed"
        man.save()
        down(layout)
        if isinstance(exc, LabError):
            raise LabError(f"{exc} (everything made so far was removed)") from exc
        if isinstance(exc, OSError):
            raise LabError(f"lab up failed: {exc} (everything made so far was removed)") from exc
        raise


def _write_shim(layout: Layout) -> None:
    from kata_top.lab.vmms import write_standins

    os.makedirs(os.path.dirname(layout.shim_script), exist_ok=True)
    with open(layout.shim_script, "w") as fh:
        fh.write(SHIM_SOURCE)
    os.chmod(layout.shim_script, 0o755)
    write_standins(layout)


def _start_sandbox(layout: Layout, man: Manifest, sb: LabSandbox, opts: UpOptions,
                   guest: tuple[str, str] | None) -> None:
    from kata_top.lab import vmms

    vmms.start(layout, sb, lambda: processes.start_qemu(layout, sb.spec, opts.accel, guest),
               man.save)


def _plant_dead_vmm(man: Manifest) -> None:
    """The `dead-vmm` fault: QEMU killed, its state files left behind as after a crash."""
    for sb in man.sandboxes:
        if "dead-vmm" in sb.spec.faults and sb.qemu_pid:
            os.kill(sb.qemu_pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and pid_alive(sb.qemu_pid):
                time.sleep(0.02)


def _start_background_traffic(layout: Layout) -> int:
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "kata_top", "lab", "--run-root", layout.run_root, "traffic",
         "--seconds", "0", "--rate", "20", "--quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    return proc.pid


@dataclass(frozen=True)
class DownReport:
    namespaces: int
    processes: int
    files: bool
    problems: tuple[str, ...]

    def sentence(self, run_root: str) -> str:
        if not (self.namespaces or self.processes or self.files):
            return f"nothing to remove: no lab at {run_root}"
        return (f"lab removed: {self.namespaces} namespaces, {self.processes} processes, "
                f"files under {run_root}")


def down(layout: Layout) -> DownReport:
    if os.geteuid() != 0:
        raise LabError("lab down needs root (it deletes network namespaces); run it with sudo")
    try:
        man = Manifest.load(layout.run_root)
    except ValueError:
        man = None  # a torn manifest: fall back to the sweep by prefix and run root
    prefix = man.prefix if man else layout.prefix
    pids = set(man.all_pids() if man else []) | set(processes.lab_pids(layout.run_root))
    stopped = processes.stop_pids(sorted(pids), layout.run_root)
    names = sorted(set(man.namespaces if man else []) | set(network.list_namespaces(prefix)))
    present = set(network.list_namespaces(prefix))
    problems = network.delete_namespaces([n for n in names if n in present])
    files = False
    # Only a root with the lab's own manifest dir is the lab's to empty; never a real node's.
    ours = man is not None or os.path.isdir(layout.lab_dir)
    for sub in ("lab", "vc", "kata", "containerd") if ours else ():
        path = os.path.join(layout.run_root, sub)
        if os.path.exists(path):
            shutil.rmtree(path, ignore_errors=True)
            files = True
    if ours and os.path.isdir(layout.run_root) and not os.listdir(layout.run_root):
        os.rmdir(layout.run_root)
        files = True
    return DownReport(namespaces=len([n for n in names if n in present]),
                      processes=len(stopped), files=files, problems=tuple(problems))


def status(layout: Layout) -> Manifest | None:
    return Manifest.load(layout.run_root)
