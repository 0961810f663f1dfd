"""Opening what the node hands us without side effects: no symlink followed, nothing that
blocks, nothing of the wrong type, nothing unbounded.

A run root, a state file, a namespace path or a config file can be anything on a sick or
hostile node: a FIFO (opening it blocks forever), a symlink out of the run root, a device, a
100 GB file. Every read goes through here and fails with an OSError that says which of these
it met, so the caller turns it into that one sandbox's error.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

# O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer; for a regular
# file it changes nothing. O_NOCTTY: a tty never becomes our controlling terminal.
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafeFile(OSError):
    """The path is there but is not something kata-top will read (type, size, symlink)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _read_fd(fd: int, what: str, max_bytes: int) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(errno.EINVAL, f"{what} is {_kind(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise UnsafeFile(errno.EFBIG, f"{what} is {st.st_size} bytes (over {max_bytes})")
    chunks: list[bytes] = []
    size = 0
    while True:  # st_size can lie (a file being rewritten): bound the read itself
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise UnsafeFile(errno.EFBIG, f"{what} grew over {max_bytes} bytes while read")
    return b"".join(chunks)


def _loop_error(exc: OSError, what: str) -> OSError:
    if exc.errno == errno.ELOOP:
        return UnsafeFile(errno.ELOOP, f"{what} is a symlink; kata-top does not follow links")
    return exc


def read_under(root: str, relpath: str, max_bytes: int) -> bytes:
    """Read root/relpath without following any symlink below root, without blocking, as a
    regular file of at most max_bytes. The root itself may be a link (/var/run → /run): the
    operator named it."""
    parts = [p for p in relpath.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise UnsafeFile(errno.EINVAL, f"{relpath!r} is not a plain path below {root}")
    what = os.path.join(root, relpath)
    fd = os.open(root, _DIR)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except NotADirectoryError as exc:  # O_DIRECTORY|O_NOFOLLOW on a link: ENOTDIR
                if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise UnsafeFile(errno.ELOOP, f"{os.path.join(root, part)} is a symlink; "
                                     "kata-top does not follow links") from exc
                raise
            except OSError as exc:
                raise _loop_error(exc, os.path.join(root, part)) from exc
            os.close(fd)
            fd = nxt
        try:
            leaf = os.open(parts[-1], _READ | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as exc:
            raise _loop_error(exc, what) from exc
    finally:
        os.close(fd)
    try:
        return _read_fd(leaf, what, max_bytes)
    finally:
        os.close(leaf)


def read_file(path: str, max_bytes: int) -> bytes:
    """Read one file the operator named (a config file, a recording): the last component is
    not followed if it is a symlink; no blocking; a regular file of at most max_bytes."""
    try:
        fd = os.open(path, _READ | os.O_NOFOLLOW)
    except OSError as exc:
        raise _loop_error(exc, path) from exc
    try:
        return _read_fd(fd, path, max_bytes)
    finally:
        os.close(fd)


def open_regular(path: str) -> BinaryIO:
    """A regular file opened for reading as a stream (a recording can be large): refused
    without blocking when it is a FIFO, a device or a directory."""
    fd = os.open(path, _READ)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFile(errno.EINVAL, f"{path} is {_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_netns(path: str) -> int:
    """An fd of a network namespace file, checked to be one (nsfs), opened without blocking.

    /proc/PID/ns/net is a magic link and must be followed; any other path (a /run/netns bind
    mount) must not be a symlink. A FIFO, a regular file or a device at the path is refused
    instead of opened for setns()."""
    flags = _READ if path.startswith("/proc/") else _READ | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _loop_error(exc, path) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_dev != _nsfs_dev():
            kind = "a plain file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
            raise UnsafeFile(errno.EINVAL, f"{path} is {kind}, not a network namespace")
    except BaseException:
        os.close(fd)
        raise
    return fd


_NSFS_DEV: int | None = None


def _nsfs_dev() -> int:
    """The device number of nsfs (every namespace file shares it)."""
    global _NSFS_DEV
    if _NSFS_DEV is None:
        _NSFS_DEV = os.stat("/proc/self/ns/net").st_dev
    return _NSFS_DEV
