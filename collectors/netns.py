"""Network namespace handles that never create anything.

Opening a namespace file read-only is the only way in: a mistyped or vanished path raises
`FileNotFoundError` instead of silently creating a namespace (pyroute2's default).
`setns` only moves the calling thread, and every caller returns to its own namespace at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from collectors.safeopen import open_netns

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

T = TypeVar("T")


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@dataclass(frozen=True)
class NetnsId:
    """A namespace's identity: the nsfs inode, as `ip netns identify` compares them."""

    dev: int
    inode: int


def netns_id(path: str) -> NetnsId:
    st = os.stat(path)
    return NetnsId(st.st_dev, st.st_ino)


def own_netns_id() -> NetnsId:
    return netns_id("/proc/thread-self/ns/net")


def named_netns() -> dict[NetnsId, str]:
    """Map of namespaces mounted under /run/netns to their names (only real nsfs mounts)."""
    out: dict[NetnsId, str] = {}
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except OSError:
        return out
    try:
        nsfs_dev = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return out
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_RUN_DIR, name))
        except OSError:
            continue
        if st.st_dev == nsfs_dev:  # not the empty file `ip netns add` makes first
            out[NetnsId(st.st_dev, st.st_ino)] = name
    return out


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the body with this thread inside the namespace at `path`, then return.

    Raises FileNotFoundError when the namespace is gone, UnsafeFile when the path is not a
    namespace (a FIFO, a placeholder file); never creates one and never blocks.
    """
    target = open_netns(path)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(target)
        os.close(home)


def run_in(path: str, fn: Callable[[], T]) -> T:
    with entered(path):
        return fn()
