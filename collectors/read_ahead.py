"""A one-shot collection's namespaces read by forked helpers beside the caller.

Most of a cold read of a namespace is Python decoding its dumps, under one GIL: threads do
not share that work, processes do. `snapshot` once on a large node therefore forks helpers:
each reads a share of the namespaces (its own netlink sockets, its own decode memo) and
sends back the decoded dumps, pickled, while the caller reads the first share and builds the
model. A helper's failure costs nothing but
time: whatever it did not answer within its deadline the caller reads itself.

Only for a process with one thread (fork copies no other thread, and a lock another thread
held would stay held in the child), and by default only while the load average leaves idle
a CPU of those ours (the affinity mask and the cgroup's CPU quota). A helper never writes
anywhere but its pipe, ends with os._exit, and is reaped — killed by its pid first if it
overran; the kernel kills it if its caller dies first (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from kata_top.collectors import netns, safeopen

K = TypeVar("K")
R = TypeVar("R")

# Namespaces per process below which a fork does not pay: a helper costs a fork, pickling
# and unpickling each namespace it reads and the pages it copies, and saves the caller the
# reading of its share (bench/scale.py measures both sides).
MIN_SHARE = 100
MAX_WORKERS = 4
# A helper that has not answered by then is killed and its share read by the caller: a
# generous bound (a namespace reads in about a millisecond; every netlink request has its
# own 2 s timeout already).
DEADLINE_BASE_S = 10.0
DEADLINE_PER_JOB_S = 0.02


def cpu_budget() -> int:
    """The CPUs this process may use: its affinity mask, capped by its cgroup's CPU quota
    (a container limited to 1.5 CPUs gets 1; cgroup v2's cpu.max, else v1's CFS quota)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, math.floor(quota)) if quota is not None else cpus)


def _cgroup_quota() -> float | None:
    try:
        lines = safeopen.read_file("/proc/self/cgroup", 64 * 1024).decode().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        path = path.lstrip("/")
        try:
            if hier == "0" and not controllers:
                raw = safeopen.read_file(os.path.join("/sys/fs/cgroup", path, "cpu.max"), 256)
                quota, _, period = raw.decode().partition(" ")
                if quota != "max":
                    return int(quota) / int(period)
            elif "cpu" in controllers.split(","):
                base = os.path.join("/sys/fs/cgroup", controllers)
                if not os.path.isdir(base):
                    base = "/sys/fs/cgroup/cpu"
                quota_us = int(safeopen.read_file(
                    os.path.join(base, path, "cpu.cfs_quota_us"), 64))
                period_us = int(safeopen.read_file(
                    os.path.join(base, path, "cpu.cfs_period_us"), 64))
                if quota_us > 0:
                    return quota_us / period_us
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return None


def spare_cpus() -> int:
    """CPUs of ours the node left idle over the last minute (the load average beside our
    budget): a helper on a node whose CPUs are all busy would only take from its pods."""
    budget = cpu_budget()
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0
    return max(0, min(budget - 1, math.floor(budget - load)))


def workers_for(jobs: int, wanted: int = 0) -> int:
    """How many processes read `jobs` namespaces: `wanted` if given (1: this one only), else
    one per MIN_SHARE namespaces, up to MAX_WORKERS and one more than the CPUs of ours that
    are idle; 1 while any other thread runs in this process."""
    if threading.active_count() > 1:
        return 1
    if wanted:
        return max(1, min(wanted, jobs))
    if jobs < 2 * MIN_SHARE:
        return 1
    return max(1, min(MAX_WORKERS, jobs // MIN_SHARE, 1 + spare_cpus()))


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc() -> Any:
    try:
        return netns.load_libc()
    except OSError:
        return None  # no prctl then: a helper left alone still ends on the closed pipe


def _die_with(parent: int, libc: Any) -> None:
    """In a helper: the kernel kills it when its caller dies. A SIGTERM to the caller alone
    otherwise left it reading its share to the end (its helper gone 1.2 s later on a
    400-sandbox lab, by hand)."""
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the caller died before the request took hold
        os._exit(1)


class _Helper:
    def __init__(self, pid: int, fd: int, jobs: int) -> None:
        self.pid = pid
        self.fd = fd
        self.deadline = time.monotonic() + DEADLINE_BASE_S + DEADLINE_PER_JOB_S * jobs
        self.results: dict[Any, tuple[bool, Any]] | None = None  # None: not read yet


class ReadAhead(Generic[K, R]):
    """Forks a helper per later share of `jobs` ((path, key) pairs, in the order the caller
    will ask for them) that calls `read(path, key)` for each; `take(key)` hands out a
    helper's result (raising its exception) or None when the caller must read it."""

    @property
    def helper_pids(self) -> list[int]:
        """The helpers' process ids (while they run)."""
        return [h.pid for h in self._helpers]

    def __init__(self, jobs: Sequence[tuple[str, K]], workers: int,
                 read: Callable[[str, K], R], in_child: Callable[[], None]) -> None:
        self._owner: dict[K, _Helper] = {}
        self._helpers: list[_Helper] = []
        if workers < 2 or len(jobs) < 2:
            return
        # equal shares, the caller's rounded up: it also builds the model, the helpers pickle
        first = -(-len(jobs) // workers)
        rest = jobs[first:]
        size = max(1, math.ceil(len(rest) / (workers - 1)))
        libc = _libc()  # loaded here (usually already, for setns): a helper imports nothing
        for start in range(0, len(rest), size):
            share = rest[start:start + size]
            helper = self._fork(share, read, in_child, libc)
            if helper is None:
                break  # the caller reads what no helper took
            self._helpers.append(helper)
            for _path, key in share:
                self._owner[key] = helper

    @staticmethod
    def _fork(share: Sequence[tuple[str, K]], read: Callable[[str, K], R],
              in_child: Callable[[], None], libc: Any = None) -> _Helper | None:
        try:
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
        except OSError:
            return None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            return None
        if pid == 0:  # the helper: never returns
            code = 1
            try:
                os.close(rfd)
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it, quietly
                _die_with(parent, libc)
                in_child()
                out: list[tuple[K, bool, Any]] = []
                for path, key in share:
                    try:
                        out.append((key, True, read(path, key)))
                    except Exception as exc:  # the caller's to report, as if it read it
                        out.append((key, False, _portable(exc)))
                data = memoryview(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
                while data:
                    data = data[os.write(wfd, data):]
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        return _Helper(pid, rfd, len(share))

    def take(self, key: K) -> R | None:
        """What the helper that read `key` got (its exception raised here, as if read here);
        None when no helper did, or it failed: the caller reads it."""
        helper = self._owner.get(key)
        if helper is None:
            return None
        if helper.results is None:
            helper.results = self._gather(helper)
        got = helper.results.get(key)
        if got is None:
            return None
        done, value = got
        if not done:
            raise value
        return value  # type: ignore[no-any-return]

    def _gather(self, helper: _Helper) -> dict[Any, tuple[bool, Any]]:
        chunks: list[bytes] = []
        ok = False
        try:
            poller = select.poll()
            poller.register(helper.fd, select.POLLIN)
            while True:
                # past the deadline what is already written is still read (the caller may
                # have taken longer over its own share than the helper over its)
                left = max(0.0, helper.deadline - time.monotonic())
                if not poller.poll(left * 1000):
                    break
                chunk = os.read(helper.fd, 1 << 20)
                if not chunk:
                    ok = True
                    break
                chunks.append(chunk)
        finally:
            self._end(helper, kill=not ok)
        if not ok:
            return {}
        try:
            out = pickle.loads(b"".join(chunks))
        except Exception:  # a helper that died mid-write: its share is read again
            return {}
        return {key: (done, value) for key, done, value in out}

    @staticmethod
    def _end(helper: _Helper, kill: bool) -> None:
        if helper.fd >= 0:
            os.close(helper.fd)
            helper.fd = -1
        if helper.pid:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(helper.pid, signal.SIGKILL)  # ours: started by _fork
            with contextlib.suppress(ChildProcessError):
                os.waitpid(helper.pid, 0)
            helper.pid = 0

    def close(self) -> None:
        """End every helper not gathered yet (the collection stopped early)."""
        for helper in self._helpers:
            self._end(helper, kill=True)
        self._helpers = []
        self._owner = {}


def _portable(exc: Exception) -> Exception:
    """The exception as the caller can unpickle it."""
    try:
        back = pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return back if isinstance(back, Exception) else RuntimeError(str(exc))
