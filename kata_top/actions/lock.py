"""One change at a time per sandbox: an flock on a file named for the sandbox, beside the
audit log (locks/ under its directory).

Two kata-tops changing one sandbox at once would both plan from the same state and both
apply (two mirred filters, both audited as a change). Holding the lock, the second re-plans
and sees what the first did. The lock is the kernel's: it goes with the process, also when
that process is killed, so no stale lock file ever blocks a later run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kata_top.actions.model import ActionError

WAIT_S = 30.0
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def lock_path(audit_path: str, sandbox_id: str) -> str:
    """The sandbox's lock file; an id that is not a plain name is hashed (it comes from a
    directory name the node chose)."""
    name = sandbox_id if _SAFE.fullmatch(sandbox_id) else \
        hashlib.sha256(sandbox_id.encode("utf-8", "replace")).hexdigest()[:32]
    return os.path.join(os.path.dirname(audit_path), "locks", name + ".lock")


def _open(path: str) -> int:
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ActionError(f"refusing to change anything: the lock {path} cannot be opened "
                          f"({exc.strerror or exc})") from exc


@contextmanager
def sandbox_lock(audit_path: str, sandbox_id: str, wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the sandbox's lock (ActionError when another change holds it past wait_s)."""
    path = lock_path(audit_path, sandbox_id)
    fd = _open(path)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ActionError(f"another kata-top has been changing this sandbox for "
                                      f"{wait_s:g} s (it holds {path}); nothing was done") \
                        from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_held(audit_path: str, sandbox_id: str) -> bool:
    """Whether a change of this sandbox is under way in some process right now."""
    path = lock_path(audit_path, sandbox_id)
    try:
        # O_NONBLOCK: a FIFO in its place must not hang the reader (notices, snapshot)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
