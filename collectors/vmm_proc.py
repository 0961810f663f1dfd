"""What /proc tells about a VMM without asking it anything.

QEMU's command line (machine, memory, vCPUs, netdevs, devices), the taps it holds (the `iff:`
line of each /dev/net/tun fd in /proc/PID/fdinfo), vhost-net fds and vCPU threads.
"""

from __future__ import annotations

import os
import re

from kata_top.model import Vmm, VmmNic, evolve

VCPU_THREAD_RE = re.compile(r"^CPU \d+/(KVM|TCG|HVF)")
# vCPU thread names of the other VMMs Kata runs: Cloud Hypervisor `vcpu<N>`
# (vmm/src/cpu.rs), Firecracker `fc_vcpu <N>` (src/vmm/src/vstate/vcpu.rs), Dragonball
# `db_vcpu<N>` in the runtime-rs shim (src/dragonball/src/vcpu/vcpu_impl.rs)
VCPU_THREAD_RES = {"qemu": VCPU_THREAD_RE, "clh": re.compile(r"^vcpu\d+$"),
                   "firecracker": re.compile(r"^fc_vcpu ?\d+$"),
                   "dragonball": re.compile(r"^db_vcpu\d+$")}
# What cannot be asked, per VMM without a monitor kata-top may use
NOT_ASKED = {
    "dragonball": "dragonball runs inside the runtime-rs shim: it has no API socket to ask; "
                  "vCPU threads and taps from /proc",
    "openvmm": "openvmm's control channel belongs to the runtime-rs shim and is not asked; "
               "taps from /proc",
}
SIZE_RE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _opts(value: str) -> tuple[str, dict[str, str]]:
    """`tap,id=x,vhost=on` -> ("tap", {"id": "x", "vhost": "on"}); the first bare word is kind."""
    kind = ""
    out: dict[str, str] = {}
    for i, part in enumerate(value.split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
        elif i == 0:
            kind = part
        else:
            out[part] = "on"
    return kind, out


def parse_qemu_cmdline(argv: tuple[str, ...] | list[str]) -> Vmm:
    """The VMM facts QEMU's command line states (source `proc`: nobody was asked)."""
    machine = accel = name = None
    memory_bytes = vcpus = None
    devices: list[str] = []
    nics: list[VmmNic] = []
    netdevs: dict[str, dict[str, str]] = {}
    nic_devices: list[dict[str, str]] = []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        val = argv[i + 1] if i + 1 < len(argv) else ""
        if a in ("-machine", "-M"):
            kind, o = _opts(val)
            machine = o.get("type", kind) or None
            accel = o.get("accel", accel)
        elif a == "-accel":
            accel = _opts(val)[0] or accel
        elif a == "-enable-kvm":
            accel = "kvm"
        elif a == "-m":
            kind, o = _opts(val)
            size = o.get("size", kind)
            m = SIZE_RE.match(size or "")
            if m:
                memory_bytes = int(m.group(1)) * UNITS[m.group(2).upper()]
        elif a == "-smp":
            kind, o = _opts(val)
            n = o.get("cpus", kind)
            vcpus = int(n) if n and n.isdigit() else vcpus
        elif a == "-name":
            name = _opts(val)[0] or None
        elif a == "-netdev":
            kind, o = _opts(val)
            o["_kind"] = kind
            netdevs[o.get("id", "")] = o
        elif a == "-device":
            kind, o = _opts(val)
            driver = o.get("driver", kind)
            devices.append(driver)
            if "netdev" in o:
                o["_driver"] = driver
                nic_devices.append(o)
        elif a in ("-qmp", "-monitor", "-mon"):
            pass  # takes a value; which monitors exist is read from the VM directory
        else:
            continue
        next(it, None)
    for dev in nic_devices:
        nd = netdevs.get(dev["netdev"], {})
        fds = tuple(int(x) for x in re.split(r"[:,]", nd.get("fds", nd.get("fd", "")))
                    if x.isdigit())
        queues = nd.get("queues")
        nics.append(VmmNic(
            netdev=dev["netdev"], mac=dev.get("mac", "").lower() or None, model=dev["_driver"],
            tap=nd.get("ifname"), vhost=nd.get("vhost") == "on" if "vhost" in nd else None,
            queues=int(queues) if queues and queues.isdigit() else (len(fds) or None), fds=fds))
    return Vmm(source="proc", status="unknown", name=name, machine=machine, accel=accel,
               vcpus=vcpus, memory_bytes=memory_bytes, nics=tuple(nics),
               devices=tuple(devices))


def read_fd_facts(pid: int, proc_root: str = "/proc") -> tuple[list[str], int]:
    """Tap names this process holds (tun fds' `iff:` lines) and its count of vhost-net fds."""
    taps: list[str] = []
    vhost = 0
    fd_dir = f"{proc_root}/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return taps, vhost
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target == "/dev/vhost-net":
            vhost += 1
        elif target == "/dev/net/tun" or target.startswith("/dev/tap"):
            try:
                with open(f"{proc_root}/{pid}/fdinfo/{fd}") as fh:
                    for line in fh:
                        if line.startswith("iff:"):
                            name = line.split(":", 1)[1].strip()
                            if name not in taps:
                                taps.append(name)
            except OSError:
                continue
            if target.startswith("/dev/tap") and target not in taps:
                taps.append(target)
    return taps, vhost


def vcpu_threads(pid: int, proc_root: str = "/proc",
                 pattern: re.Pattern[str] = VCPU_THREAD_RE) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"{proc_root}/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{proc_root}/{pid}/task/{tid}/comm") as fh:
                if pattern.match(fh.read().rstrip("\n")):
                    out.append(int(tid))
        except OSError:
            continue
    return sorted(out)


def inspect(pid: int, argv: tuple[str, ...]) -> Vmm:
    """The command line's facts plus what /proc/PID shows: taps held, vhost fds, vCPU threads."""
    vmm = parse_qemu_cmdline(argv)
    taps, vhost_fds = read_fd_facts(pid)
    nics = vmm.nics
    # Taps passed as fds carry no name on the command line: name them from fdinfo.
    if len(nics) == 1 and nics[0].tap is None and taps:
        nics = (evolve(nics[0], tap=taps[0]),)
    return evolve(vmm, taps_held=tuple(taps), vhost_net_fds=vhost_fds,
                  vcpu_threads=tuple(vcpu_threads(pid)), nics=nics, sources={
                      "vcpus": "command line (-smp)", "memory": "command line (-m)",
                      "nics": f"command line (-netdev, -device), /proc/{pid}/fdinfo",
                      "threads": f"/proc/{pid}/task/*/comm"})


def inspect_other(pid: int, kind: str) -> Vmm:
    """What /proc shows of a VMM other than QEMU: taps held (fdinfo), vhost fds, vCPU threads
    by their names, and the reason nothing else is known (yet)."""
    taps, vhost_fds = read_fd_facts(pid)
    pattern = VCPU_THREAD_RES.get(kind)
    threads = tuple(vcpu_threads(pid, pattern=pattern)) if pattern else ()
    sources = {"taps": f"/proc/{pid}/fdinfo"}
    if pattern:
        sources["vcpus"] = f"/proc/{pid}/task/*/comm ({pattern.pattern})"
    return Vmm(source="proc", status="unknown", vcpus=len(threads) or None,
               vcpu_threads=threads, taps_held=tuple(taps), vhost_net_fds=vhost_fds,
               nics=tuple(VmmNic(netdev=None, mac=None, model=None, tap=t) for t in taps),
               reason=NOT_ASKED.get(kind, f"{kind}: only /proc is read"), sources=sources)
