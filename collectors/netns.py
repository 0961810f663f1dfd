"""Network namespace handles that never create anything.

Opening a namespace file read-only is the only way in: a mistyped or vanished path raises
`FileNotFoundError` instead of silently creating a namespace (pyroute2's default).
`setns` only moves the calling thread, and every caller returns to its own namespace at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from kata_top.collectors.safeopen import open_netns

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

T = TypeVar("T")


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if hasattr(os, "setns"):  # Python 3.12
        os.setns(fd, nstype)
        return
    import ctypes  # Python 3.11: libc's, loaded the first time a namespace is entered

    libc = _libc or load_libc()
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


_libc: Any = None


def load_libc() -> Any:
    """The C library already in this process (no find_library: it runs ldconfig), loaded
    once: setns here before Python 3.12, prctl in collectors/read_ahead.py."""
    global _libc
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


class NetnsId(NamedTuple):
    """A namespace's identity: the nsfs inode, as `ip netns identify` compares them. (A
    tuple: it keys every per-namespace cache, and a tuple's hash is computed in C — a
    dataclass's was a sixth of an idle cycle's dictionary lookups.)"""

    dev: int
    inode: int


def netns_id(path: str) -> NetnsId:
    st = os.stat(path)
    return NetnsId(st.st_dev, st.st_ino)


_var_run_is_run: bool | None = None


def entry_paths(name: str) -> tuple[str, ...]:
    """The paths an entry of /run/netns goes by: /run/netns/<name>, and /var/run/netns/<name>
    (as CNI and Kata write it) on a system whose /var/run is /run."""
    global _var_run_is_run
    if _var_run_is_run is None:
        _var_run_is_run = os.path.realpath("/var/run") == "/run"
    here = os.path.join(NETNS_RUN_DIR, name)
    return (here, os.path.join("/var/run/netns", name)) if _var_run_is_run else (here,)


def own_netns_id() -> NetnsId:
    return netns_id("/proc/thread-self/ns/net")


def named_netns(known: Mapping[str, NetnsId] | None = None) -> dict[NetnsId, str]:
    """Map of namespaces mounted under /run/netns to their names (only real nsfs mounts).

    known: ids of paths already stat'ed (the sandboxes' namespaces, looked up by the path
    their state names this cycle): on a node with 1,000 pods those are most of /run/netns,
    not looked up twice."""
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
        path = os.path.join(NETNS_RUN_DIR, name)
        nsid = next((known[p] for p in entry_paths(name) if p in known), None) \
            if known else None
        if nsid is None:
            try:
                st = os.stat(path)
            except OSError:
                continue
            nsid = NetnsId(st.st_dev, st.st_ino)
        if nsid.dev == nsfs_dev:  # not the empty file `ip netns add` makes first
            out[nsid] = name
    return out


class NamedNetnsCache:
    """named_netns() re-read only when /run/netns changed (`ip netns add` and `delete` both
    change the directory): on a node with 1,000 pods that is 1,000 lookups a cycle saved.
    A name that was not yet a namespace (`ip netns add` makes the file, then mounts on it)
    is looked at again every time."""

    def __init__(self) -> None:
        self._mtime: int | None = None
        self._map: dict[NetnsId, str] = {}
        self._pending: list[str] = []

    def get(self, known: Callable[[], Mapping[str, NetnsId]] | None = None
            ) -> dict[NetnsId, str]:
        """known: what named_netns takes, asked for only when /run/netns is read again."""
        try:
            mtime = os.stat(NETNS_RUN_DIR).st_mtime_ns
        except OSError:
            self._mtime, self._map, self._pending = None, {}, []
            return {}
        if mtime != self._mtime:
            self._mtime, self._map = mtime, named_netns(known() if known else None)
            names = set(self._map.values())
            try:
                self._pending = [n for n in os.listdir(NETNS_RUN_DIR) if n not in names]
            except OSError:
                self._pending = []
        elif self._pending:
            self._map = dict(self._map)
            for name in list(self._pending):
                try:
                    st = os.stat(os.path.join(NETNS_RUN_DIR, name))
                    nsfs = os.stat("/proc/self/ns/net").st_dev
                except OSError:
                    continue
                if st.st_dev == nsfs:
                    self._map[NetnsId(st.st_dev, st.st_ino)] = name
                    self._pending.remove(name)
        return self._map


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
