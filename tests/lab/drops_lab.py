"""What the drop tests share: a lab whose sandboxes each lose packets one way, tap holders
standing in for VMMs, a flood from the node, and a look at the kernel for leftovers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from kata_top.collectors import netns
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": ROOT}
SO_SNDBUFFORCE = 32


@contextlib.contextmanager
def tap_holder(layout: Layout, man: Manifest, index: int, mode: str) -> Iterator[int]:
    """A stand-in VMM on sandbox `index`'s tap (kata_top/lab/tap_holder.py), ended by pid."""
    spec = man.sandboxes[index].spec
    proc = subprocess.Popen([sys.executable, "-m", "kata_top.lab.tap_holder",
                             layout.netns_path(spec), "tap0_kata", mode, "1514"],
                            stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def flood(node_ns: str, ips: list[str], seconds: float, pps: int = 2000) -> None:
    """UDP to each ip from the node at `pps`, one socket each (a stalled sandbox must not
    hold another's packets), with a send buffer larger than any queue on the way."""

    def one(ip: str) -> None:
        s = netns.run_in(f"/run/netns/{node_ns}",
                         lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        with s:
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 32 << 20)
            s.setblocking(False)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(pps // 100):
                    with contextlib.suppress(OSError):
                        s.sendto(bytes(1400), (ip, 9))
                time.sleep(0.01)

    threads = [threading.Thread(target=one, args=(ip,)) for ip in ips]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bpftrace_pids() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "bpftrace":
                    out.add(int(pid))
    return out


def tracefs_mounts() -> int:
    with open("/proc/self/mountinfo") as fh:
        return sum(1 for line in fh if " tracefs " in line)


_BPF, _PROG_GET_NEXT_ID, _PROG_GET_FD_BY_ID, _OBJ_GET_INFO_BY_FD = 321, 11, 13, 15


def bpf_prog_names() -> list[str]:
    """The names of every BPF program loaded in the kernel (bpf(2), as bpftool lists them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    names, next_id = [], 0
    while True:
        attr = ctypes.create_string_buffer(struct.pack("II", next_id, 0), 128)
        if libc.syscall(_BPF, _PROG_GET_NEXT_ID, attr, 128) != 0:
            return names
        next_id = struct.unpack_from("II", attr.raw)[1]
        attr = ctypes.create_string_buffer(struct.pack("I", next_id), 128)
        fd = libc.syscall(_BPF, _PROG_GET_FD_BY_ID, attr, 128)
        if fd < 0:
            continue
        try:
            info = ctypes.create_string_buffer(256)
            attr = ctypes.create_string_buffer(struct.pack("IIQ", fd, 256, ctypes.addressof(info)),
                                               128)
            if libc.syscall(_BPF, _OBJ_GET_INFO_BY_FD, attr, 128) == 0:
                names.append(info.raw[64:80].split(b"\0")[0].decode(errors="replace"))
        finally:
            os.close(fd)


def kfree_skb_programs() -> list[str]:
    return [n for n in bpf_prog_names() if "kfree_skb" in n or n.startswith("tracepoint_skb")]
