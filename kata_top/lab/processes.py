"""Start and stop the lab's processes: virtiofsd, QEMU (in the pod namespace) and the shim."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence

from kata_top.collectors import netns
from kata_top.collectors.procs import pid_alive, read_cmdline
from kata_top.collectors.shimsock import SOCKET_NAME
from kata_top.lab.layout import TAP, Layout
from kata_top.lab.network import LabError, guest_mac
from kata_top.lab.scenario import SandboxSpec
from kata_top.lab.statefiles import QEMU, VIRTIOFSD

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_MULTI_QUEUE, IFF_VNET_HDR = 0x0002, 0x1000, 0x0100, 0x4000


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64") or (QEMU if os.path.exists(QEMU) else None)


def virtiofsd_binary() -> str | None:
    for cand in (VIRTIOFSD, "/usr/libexec/virtiofsd", shutil.which("virtiofsd")):
        if cand and os.path.exists(cand):
            return cand
    return None


def open_tap(netns_path: str, name: str) -> int:
    """Open a queue of the multi-queue tap inside its namespace, as Kata does, for QEMU's fds=."""

    def attach() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
                          | IFF_MULTI_QUEUE)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        return fd

    # TUNSETIFF creates the tap when the name is unknown: always attach inside the namespace.
    return netns.run_in(netns_path, attach)


def open_macvtap(netns_path: str, name: str) -> int:
    """Open /dev/tap<ifindex> of the macvtap; its ifindex comes from netlink in the namespace."""
    from kata_top.collectors.rtnetlink import RtnlSocket, dump_netns

    sock = RtnlSocket.open(netns_path)
    try:
        links = {lk.name: lk.ifindex for lk in dump_netns(sock, with_tc=False).links}
    finally:
        sock.close()
    return os.open(f"/dev/tap{links[name]}", os.O_RDWR)


def _enter_ns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    netns.setns(fd)
    os.close(fd)


def wait_for(path: str, timeout: float, what: str, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if pid is not None and not pid_alive(pid):
            raise LabError(f"{what} exited before creating {path}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not create {path} within {timeout:.0f} s")
        time.sleep(0.02)


def start_virtiofsd(layout: Layout, spec: SandboxSpec) -> int:
    binary = virtiofsd_binary()
    if binary is None:
        raise LabError("virtiofsd not found (Debian's qemu-system-x86 ships it in /usr/lib/qemu)")
    vm = layout.vm_dir(spec)
    shared = layout.shared_dir(spec)
    os.makedirs(shared, exist_ok=True)
    with open(os.path.join(shared, "README"), "w") as fh:
        fh.write(f"kata-top lab sandbox {spec.id}\n")
    sock = os.path.join(vm, "vhost-fs.sock")
    with open(os.path.join(vm, "virtiofsd.log"), "ab") as log:
        proc = subprocess.Popen(
            [binary, f"--socket-path={sock}", "-o", f"source={shared}", "-o", "cache=auto",
             "--thread-pool-size=1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    wait_for(sock, 10, "virtiofsd", proc.pid)
    return proc.pid


def qemu_argv(layout: Layout, spec: SandboxSpec, tap_fd: int | None, accel: str,
              guest: tuple[str, str] | None) -> list[str]:
    vm = layout.vm_dir(spec)
    mem = "256M" if guest else "128M"
    argv = [
        qemu_binary() or QEMU, "-name", f"sandbox-{spec.id}",
        "-uuid", _uuid(spec), "-machine", f"q35,accel={accel},memory-backend=dimm1",
        "-m", mem, "-smp", "1,cores=1,threads=1,sockets=2,maxcpus=2",
        "-object", f"memory-backend-memfd,id=dimm1,size={mem},share=on",
        "-qmp", f"unix:{vm}/qmp.sock,server=on,wait=off",
    ]
    if spec.extra_monitor == "qmp":
        argv += ["-qmp", f"unix:{vm}/extra-monitor.sock,server=on,wait=off"]
    elif spec.extra_monitor == "hmp":
        argv += ["-monitor", f"unix:{vm}/extra-monitor.sock,server=on,wait=off"]
    argv += [
        "-chardev", f"socket,id=charconsole0,path={vm}/console.sock,server=on,wait=off",
        "-device", "virtio-serial-pci,disable-modern=false,id=serial0",
        "-device", "virtconsole,chardev=charconsole0,id=console0",
        "-chardev", f"socket,id=char-fs,path={vm}/vhost-fs.sock",
        "-device", "vhost-user-fs-pci,chardev=char-fs,tag=kataShared,queue-size=1024",
        "-pidfile", f"{vm}/pid", "-nographic", "-nodefaults", "-vga", "none",
        "-serial", f"file:{vm}/guest-console.log",
    ]
    if tap_fd is not None:
        argv += ["-netdev", f"tap,id=network-0,vhost=off,fds={tap_fd}",
                 "-device", f"driver=virtio-net-pci,netdev=network-0,mac={guest_mac(spec)},"
                            "disable-modern=false,romfile="]
    if guest:
        kernel, initrd = guest
        argv += ["-kernel", kernel, "-initrd", initrd, "-append",
                 f"console=ttyS0 quiet panic=-1 kata_top_ip={spec.ip}/16"]
    return argv


def _uuid(spec: SandboxSpec) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_DNS, spec.id))


def start_qemu(layout: Layout, spec: SandboxSpec, accel: str,
               guest: tuple[str, str] | None) -> int:
    vm = layout.vm_dir(spec)
    # `none` (disable_new_netns): the tap and QEMU live in the node's namespace, never ours.
    ns_path = f"/var/run/netns/{layout.node_ns}" if spec.model == "none" \
        else layout.netns_path(spec)
    tap_fd: int | None = None
    if spec.model in ("tcfilter", "none"):
        tap_fd = open_tap(ns_path, TAP)
    elif spec.model == "macvtap":
        tap_fd = open_macvtap(ns_path, TAP)
    try:
        with open(os.path.join(vm, "qemu.log"), "ab") as log:
            proc = subprocess.Popen(
                qemu_argv(layout, spec, tap_fd, accel, guest),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                pass_fds=(tap_fd,) if tap_fd is not None else (),
                preexec_fn=lambda: _enter_ns(ns_path))
    finally:
        # QEMU has its own copy of the tap fd now (or failed to start): ours must go.
        if tap_fd is not None:
            os.close(tap_fd)
    wait_for(os.path.join(vm, "qmp.sock"), 20, "QEMU", proc.pid)
    if spec.extra_monitor:
        wait_for(os.path.join(vm, "extra-monitor.sock"), 20, "QEMU", proc.pid)
    return proc.pid


def start_shim(layout: Layout, spec: SandboxSpec) -> int:
    vm = layout.vm_dir(spec)
    state_dir = layout.state_dir(spec)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    monitor = os.path.join(state_dir, SOCKET_NAME)
    env = dict(os.environ)
    if "stale-shim-monitor" in spec.faults:
        # What an earlier shim of the same id leaves when it dies (kata-containers#6427): a
        # socket file nobody listens on; the new shim's management server cannot bind it.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(monitor)
        stale.close()
    else:
        env["KATA_TOP_LAB_SHIM_MONITOR"] = monitor
    proc = subprocess.Popen(
        [sys.executable, layout.shim_script, "-namespace", "k8s.io", "-id", spec.id,
         "-qmp", os.path.join(vm, "qmp.sock")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=env)
    return proc.pid


def _is_lab_process(pid: int, run_root: str) -> bool:
    """Its command line names this lab's run root: the lab's own, nothing else."""
    marker = run_root.rstrip("/") + "/"
    return any(marker in a or a == run_root for a in read_cmdline(pid))


def lab_pids(run_root: str) -> list[int]:
    """Processes whose command line names this lab's run root."""
    own = os.getpid()
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and int(e) != own and _is_lab_process(int(e), run_root)]


def stop_pids(pids: Sequence[int], run_root: str, grace: float = 2.0) -> list[int]:
    """SIGTERM then SIGKILL the given pids, only while they still belong to this lab."""
    live = [p for p in pids if _is_lab_process(p, run_root)]
    for p in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_alive(p) for p in live):
        time.sleep(0.05)
    for p in live:
        if pid_alive(p) and _is_lab_process(p, run_root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
    return live
