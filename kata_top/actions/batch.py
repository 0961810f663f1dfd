"""One netlink batch: every step's request in a single sendmsg, the kernel's acks read back.

rtnetlink handles the messages of one sendmsg one after the other inside that system call,
under the rtnl lock: a SIGKILL arrives either before the call (nothing changed) or after it
(every message handled). So a change sent as one batch is never left half done by a killed
kata-top. The kernel does not stop at a failed message: each one is acked on its own, and
the caller undoes the ones that succeeded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Sequence
from typing import Any

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
NLMSGERR_ATTR_MSG = 1
_HDR = struct.Struct("=IHHII")
_ERR = struct.Struct("=i")


class BatchError(OSError):
    """A message of the batch was refused: errno, the kernel's words (extended ack)."""


def compile_requests(calls: Sequence[Any]) -> list[bytes]:
    """Each call (a function of a pyroute2 handle) compiled into its netlink message(s)."""
    from pyroute2 import IPBatch

    ipb = IPBatch()
    out: list[bytes] = []
    try:
        for call in calls:
            ipb.reset()
            call(ipb)
            out.append(bytes(ipb.batch))
    finally:
        ipb.close()
    return out


def _renumber(messages: Sequence[bytes], first_seq: int) -> tuple[bytes, list[int]]:
    """One buffer of every message, with our own sequence numbers; the seq of each request's
    last message (its ack says whether the request, all of its messages, was handled)."""
    buf = bytearray()
    last: list[int] = []
    seq = first_seq
    for request in messages:
        off = 0
        while off < len(request):
            length = _HDR.unpack_from(request, off)[0]
            if length < _HDR.size:
                raise ValueError("a malformed netlink message")
            msg = bytearray(request[off:off + length])
            ln, typ, flags, _seq, _pid = _HDR.unpack_from(msg, 0)
            _HDR.pack_into(msg, 0, ln, typ, flags | 0x4, seq, 0)  # NLM_F_ACK on each
            buf += msg + b"\0" * (-len(msg) % 4)
            off += (length + 3) & ~3
            seq += 1
        last.append(seq - 1)
    return bytes(buf), last


def _ext_message(data: bytes, off: int, end: int) -> str:
    """The NLMSGERR_ATTR_MSG attribute after an nlmsgerr (NETLINK_CAP_ACK: no echo)."""
    off += _ERR.size + _HDR.size
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        if atype & 0x3FFF == NLMSGERR_ATTR_MSG:
            return data[off + 4:off + alen].split(b"\0", 1)[0].decode("utf-8", "replace")
        off += (alen + 3) & ~3
    return ""


def send(messages: Sequence[bytes], timeout: float = 10.0) -> list[BatchError | None]:
    """Send the requests in one sendmsg on a new rtnetlink socket of the *current* namespace;
    per request, None when the kernel did it, or the error it gave."""
    if not messages:
        return []
    first = int.from_bytes(os.urandom(3), "little") + 1
    data, last = _renumber(messages, first)
    results: dict[int, BatchError | None] = {}
    errors: dict[int, BatchError] = {}
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            with contextlib.suppress(OSError):  # older kernels: errno words only
                sock.setsockopt(270, opt, 1)  # SOL_NETLINK
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.sendto(data, (0, 0))
        wanted = set(range(first, last[-1] + 1))
        while wanted:
            chunk = sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(chunk):
                ln, typ, _flags, seq, _pid = _HDR.unpack_from(chunk, off)
                if ln < _HDR.size:
                    break
                if typ == NLMSG_ERROR and seq in wanted:
                    wanted.discard(seq)
                    code = -_ERR.unpack_from(chunk, off + _HDR.size)[0]
                    if code:
                        words = _ext_message(chunk, off + _HDR.size, off + ln)
                        errors[seq] = BatchError(code, words or os.strerror(code))
                off += (ln + 3) & ~3
    except TimeoutError as exc:
        raise BatchError(errno.ETIMEDOUT, "the kernel did not acknowledge the change") from exc
    finally:
        sock.close()
    start = first
    for i, end in enumerate(last):
        bad = [errors[s] for s in range(start, end + 1) if s in errors]
        results[i] = bad[0] if bad else None
        start = end + 1
    return [results[i] for i in range(len(messages))]
