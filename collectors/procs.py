"""Find the processes of Kata sandboxes: VMMs, shims and virtiofsd, by sandbox id.

`/proc/PID/comm` is a cheap pre-filter (it is cut to 15 characters, so the decision is made
on the command line). psutil.Process objects are kept across cycles so cpu_percent() has a
baseline, and are dropped when their pid goes away or is reused.
"""

from __future__ import annotations

import functools
import os
import re
from typing import TYPE_CHECKING

from msgspec import Struct, field

from kata_top.model import ProcInfo

if TYPE_CHECKING:
    import psutil

COMM_PREFIXES = ("qemu", "cloud-hyperviso", "firecracker", "containerd-shim", "virtiofsd",
                 "python", "openvmm")
VMM_NAMES = ("qemu-system", "qemu-kvm", "cloud-hypervisor", "firecracker", "openvmm")
# The Go runtime names a jailed Firecracker by the first 32 characters of the sandbox id
# (virtcontainers/fc.go truncateID): `firecracker --id <id[:32]>`, under
# /run/vc/firecracker/<id[:32]>/root.
FC_ID_LEN = 32
SHIM_NAME = "containerd-shim-kata-v2"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """A VMM's `-name sandbox-<id>`, an id as a path component, the run root before
    vc/vm|vc/sbs|kata/<id>/: compiled the first time a Kata process is seen (a one-shot
    command on a node without one never needs them)."""
    return (re.compile(r"sandbox-([0-9a-f]{64})"), re.compile(r"/([0-9a-f]{64})(?:/|$)"),
            re.compile(r"(/[^\s,=]*?)/(?:vc/vm|vc/sbs|kata)/[0-9a-f]{64}/"))


class ProcessIndex(Struct):
    vmm: dict[str, int] = field(default_factory=dict)  # sandbox id -> pid
    vmm_kind: dict[str, str] = field(default_factory=dict)
    vmm_root: dict[str, str] = field(default_factory=dict)  # run root named on its cmdline
    shim: dict[str, int] = field(default_factory=dict)
    virtiofsd: dict[str, list[int]] = field(default_factory=dict)
    virtiofsd_root: dict[str, str] = field(default_factory=dict)  # run root its socket names
    cmdlines: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # VMMs named only by a truncated id (Firecracker's --id <id[:32]>): id prefix -> pid
    vmm_short: dict[str, int] = field(default_factory=dict)
    # VMM processes whose command line names no sandbox id: pid -> kind (matched by netns)
    unnamed: dict[int, str] = field(default_factory=dict)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def read_cmdline(pid: int) -> tuple[str, ...]:
    return tuple(a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline").split(b"\0")
                 if a)


def _vmm_kind(argv0: str) -> str | None:
    base = os.path.basename(argv0)
    if base.startswith(("qemu-system", "qemu-kvm")):
        return "qemu"
    if base == "cloud-hypervisor":
        return "clh"
    if base == "firecracker":
        return "firecracker"
    if base == "openvmm":
        return "openvmm"
    return None


def _short_id(argv: tuple[str, ...]) -> str | None:
    """Firecracker's truncated sandbox id: `--id <id[:32]>` (jailed) or the jailer root in
    its --api-sock path (not jailed)."""
    sid = arg_value(argv, "--id")
    if sid and len(sid) == FC_ID_LEN and all(c in "0123456789abcdef" for c in sid):
        return sid
    sock = arg_value(argv, "--api-sock") or ""
    parts = sock.split("/")
    if "firecracker" in parts:
        cand = parts[parts.index("firecracker") + 1] if parts[-1] else ""
        if len(cand) == FC_ID_LEN and all(c in "0123456789abcdef" for c in cand):
            return cand
    return None


def arg_value(argv: tuple[str, ...], flag: str) -> str | None:
    """The value of `flag` on a command line, given as `flag VALUE` or `flag=VALUE`."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def scan(proc_root: str = "/proc") -> ProcessIndex:
    idx = ProcessIndex()
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return idx
    for entry in entries:
        if not entry.isdigit():
            continue
        comm = _read(f"{proc_root}/{entry}/comm").decode(errors="replace").strip()
        if not comm.startswith(COMM_PREFIXES):
            continue
        pid = int(entry)
        argv = read_cmdline(pid)
        if not argv:
            continue
        kind = _vmm_kind(argv[0])
        if kind is not None:
            joined = " ".join(argv)
            named, id_in_path, run_root = _patterns()
            m = named.search(joined) or id_in_path.search(joined)
            if m:
                idx.vmm[m.group(1)] = pid
                idx.vmm_kind[m.group(1)] = kind
                idx.cmdlines[pid] = argv
                root = run_root.search(joined)
                if root:
                    idx.vmm_root[m.group(1)] = root.group(1)
            elif (short := _short_id(argv)) is not None:
                idx.vmm_short[short] = pid
                idx.vmm_kind[short] = kind
                idx.cmdlines[pid] = argv
            else:
                idx.unnamed[pid] = kind
                idx.cmdlines[pid] = argv
            continue
        # The real shim is argv[0]; the lab's stand-in runs as `python3 <path>/<shim name>`.
        if any(os.path.basename(a) == SHIM_NAME for a in argv[:2]):
            sid = arg_value(argv, "-id")
            if sid:
                idx.shim[sid] = pid
                idx.cmdlines[pid] = argv
            continue
        if "virtiofsd" in os.path.basename(argv[0]):
            joined = " ".join(argv)
            _named, id_in_path, run_root = _patterns()
            m = id_in_path.search(joined)
            if m:
                idx.virtiofsd.setdefault(m.group(1), []).append(pid)
                idx.cmdlines[pid] = argv
                root = run_root.search(joined)
                if root:
                    idx.virtiofsd_root[m.group(1)] = root.group(1)
    return idx


class ProcCache:
    """psutil.Process objects that live across cycles, for CPU% baselines."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def info(self, pid: int, name: str) -> ProcInfo | None:
        import psutil  # here: a node (or a lab) without VMMs never pays its import

        p = self._procs.get(pid)
        try:
            if p is None or not p.is_running():
                p = psutil.Process(pid)
                p.cpu_percent(None)  # first call only sets the baseline
                self._procs[pid] = p
                cpu = None
            else:
                cpu = p.cpu_percent(None)
            with p.oneshot():
                return ProcInfo(pid=pid, name=name, cpu_percent=cpu,
                                rss_bytes=p.memory_info().rss, threads=p.num_threads(),
                                cmdline=tuple(p.cmdline()))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            self._procs.pop(pid, None)
            return None
        except psutil.AccessDenied:
            return ProcInfo(pid=pid, name=name)

    def io(self, pid: int) -> tuple[int | None, int | None]:
        p = self._procs.get(pid)
        if p is None:
            return None, None
        import psutil  # loaded already: p is one of its objects

        try:
            c = p.io_counters()
            return c.read_bytes, c.write_bytes
        except (psutil.Error, AttributeError):
            return None, None

    def prune(self, live: set[int]) -> None:
        for pid in list(self._procs):
            if pid not in live:
                del self._procs[pid]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    stat = _read(f"/proc/{pid}/stat")
    try:
        return stat.rsplit(b") ", 1)[1][:1] not in (b"Z", b"X")
    except IndexError:
        return False
