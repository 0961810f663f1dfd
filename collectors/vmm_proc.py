"""What /proc tells about a VMM without asking it anything.

QEMU's command line (machine, memory, vCPUs, netdevs, devices), the taps it holds (the `iff:`
line of each /dev/net/tun fd in /proc/PID/fdinfo), vhost-net fds and vCPU threads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from kata_top.model import VmmNic

VCPU_THREAD_RE = re.compile(r"^CPU \d+/(KVM|TCG|HVF)")
SIZE_RE = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
UNITS = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass
class ProcVmm:
    machine: str | None = None
    accel: str | None = None
    memory_bytes: int | None = None
    vcpus: int | None = None
    name: str | None = None
    nics: list[VmmNic] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    taps_held: list[str] = field(default_factory=list)
    vhost_net_fds: int = 0
    vcpu_threads: list[int] = field(default_factory=list)
    monitors: list[str] = field(default_factory=list)


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


def parse_qemu_cmdline(argv: tuple[str, ...] | list[str]) -> ProcVmm:
    pv = ProcVmm()
    netdevs: dict[str, dict[str, str]] = {}
    nic_devices: list[dict[str, str]] = []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        val = argv[i + 1] if i + 1 < len(argv) else ""
        if a in ("-machine", "-M"):
            kind, o = _opts(val)
            pv.machine = o.get("type", kind) or None
            pv.accel = o.get("accel", pv.accel)
        elif a == "-accel":
            pv.accel = _opts(val)[0] or pv.accel
        elif a == "-enable-kvm":
            pv.accel = "kvm"
        elif a == "-m":
            kind, o = _opts(val)
            size = o.get("size", kind)
            m = SIZE_RE.match(size or "")
            if m:
                pv.memory_bytes = int(m.group(1)) * UNITS[m.group(2).upper()]
        elif a == "-smp":
            kind, o = _opts(val)
            n = o.get("cpus", kind)
            pv.vcpus = int(n) if n and n.isdigit() else pv.vcpus
        elif a == "-name":
            pv.name = _opts(val)[0] or None
        elif a == "-netdev":
            kind, o = _opts(val)
            o["_kind"] = kind
            netdevs[o.get("id", "")] = o
        elif a == "-device":
            kind, o = _opts(val)
            driver = o.get("driver", kind)
            pv.devices.append(driver)
            if "netdev" in o:
                o["_driver"] = driver
                nic_devices.append(o)
        elif a in ("-qmp", "-monitor", "-mon"):
            pv.monitors.append(val)
        else:
            continue
        next(it, None)
    for dev in nic_devices:
        nd = netdevs.get(dev["netdev"], {})
        fds = tuple(int(x) for x in re.split(r"[:,]", nd.get("fds", nd.get("fd", "")))
                    if x.isdigit())
        queues = nd.get("queues")
        pv.nics.append(VmmNic(
            netdev=dev["netdev"], mac=dev.get("mac", "").lower() or None, model=dev["_driver"],
            tap=nd.get("ifname"), vhost=nd.get("vhost") == "on" if "vhost" in nd else None,
            queues=int(queues) if queues and queues.isdigit() else (len(fds) or None), fds=fds))
    return pv


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


def vcpu_threads(pid: int, proc_root: str = "/proc") -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"{proc_root}/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{proc_root}/{pid}/task/{tid}/comm") as fh:
                if VCPU_THREAD_RE.match(fh.read()):
                    out.append(int(tid))
        except OSError:
            continue
    return sorted(out)


def inspect(pid: int, argv: tuple[str, ...]) -> ProcVmm:
    pv = parse_qemu_cmdline(argv)
    pv.taps_held, pv.vhost_net_fds = read_fd_facts(pid)
    pv.vcpu_threads = vcpu_threads(pid)
    # Taps passed as fds carry no name on the command line: name them from fdinfo.
    if len(pv.nics) == 1 and pv.nics[0].tap is None and pv.taps_held:
        n = pv.nics[0]
        pv.nics[0] = VmmNic(netdev=n.netdev, mac=n.mac, model=n.model, tap=pv.taps_held[0],
                            vhost=n.vhost, queues=n.queues, fds=n.fds)
    return pv
