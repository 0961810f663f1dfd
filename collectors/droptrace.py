"""The drop tracer: `bpftrace` on the kernel's `skb:kfree_skb` tracepoint, as a child process.

Each drop is counted in the kernel (a bpftrace map keyed by network namespace inode, drop
reason, kernel function and device), so the cost per dropped packet is one map update and
nothing crosses to user space until the end. The reasons' names come from the tracepoint's own
format file (its print fmt's symbolic table of `enum skb_drop_reason`), never from a table
kept here. The child dies with its caller (PR_SET_PDEATHSIG), when the time is up and on
Ctrl-C; its probes are perf-event file descriptors, so nothing stays attached once it is gone.
A node without tracefs mounted gets it mounted in the child's own mount namespace only.
"""

from __future__ import annotations

import os
import resource
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from kata_top.collectors import netns
from kata_top.drops.model import DropCount, RawTrace
from kata_top.drops.parse import (
    DEV_MAP,
    NODEV_MAP,
    WINDOW_PREFIX,
    format_fields,
    parse_output,
    reason_names,
)

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
FORMAT = "events/skb/kfree_skb/format"
BTF = "/sys/kernel/btf/vmlinux"
DEFAULT_SECONDS = 10
MAX_SECONDS = 300
ATTACH_DEADLINE = 60.0  # bpftrace parses the kernel's BTF before it attaches
EXIT_GRACE = 5.0  # after the time is up: bpftrace prints its maps and exits
PR_SET_PDEATHSIG = 1
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
INSTALL = "apt-get install bpftrace (Debian/Ubuntu; dnf install bpftrace on Fedora/RHEL)"

# progress(seconds_left, seconds_total); called while attached
Progress = Callable[[float, float], None]


class TraceUnavailable(Exception):
    """The node cannot trace drops, in one sentence with what to do."""


class TraceBusy(Exception):
    """Another trace is running."""


def _capable(bit: int) -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def bpftrace_path() -> str:
    """bpftrace, the kernel's BTF and the privilege, or a TraceUnavailable saying which."""
    path = shutil.which("bpftrace")
    if path is None:
        raise TraceUnavailable(f"bpftrace is not installed; {INSTALL}")
    if not os.path.exists(BTF):
        raise TraceUnavailable(f"the kernel has no BTF ({BTF} is missing): tracing drops "
                               "needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    if not (_capable(CAP_SYS_ADMIN) or (_capable(CAP_BPF) and _capable(CAP_PERFMON))):
        raise TraceUnavailable("tracing drops needs root (CAP_BPF and CAP_PERFMON, or "
                               "CAP_SYS_ADMIN): run it with sudo")
    return path


def _mounted_root() -> str | None:
    """tracefs' root when it is mounted here; None: the tracer mounts its own."""
    for root in (TRACEFS, DEBUGFS_TRACING):
        if os.path.exists(os.path.join(root, FORMAT)):
            return root
    return None


def read_reasons(root: str) -> dict[int, str]:
    """The kernel's drop reasons by value, from the tracepoint's format."""
    path = os.path.join(root, FORMAT)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 20)
    except OSError as exc:
        raise TraceUnavailable(f"cannot read the kfree_skb tracepoint's format ({path}): "
                               f"{exc.strerror or exc}") from None
    fields = format_fields(text)
    if "reason" not in fields or "location" not in fields:
        raise TraceUnavailable("this kernel's kfree_skb tracepoint has no drop reason "
                               "(Linux 5.17 or later has it)")
    names = reason_names(text)
    if not names:
        raise TraceUnavailable("this kernel's kfree_skb format names no drop reasons")
    return names


def script(seconds: int) -> str:
    """The bpftrace program: count drops in the kernel, print the maps at the end."""
    return f"""\
BEGIN {{ @t0 = nsecs; }}
tracepoint:skb:kfree_skb
{{
  $dev = ((struct sk_buff *)args->skbaddr)->dev;
  if ($dev != 0) {{
    {DEV_MAP}[$dev->nd_net.net->ns.inum, args->reason, ksym(args->location), $dev->name] =
      count();
  }} else {{
    {NODEV_MAP}[args->reason, ksym(args->location)] = count();
  }}
}}
interval:s:{seconds} {{ exit(); }}
END {{ printf("{WINDOW_PREFIX}%lld\\n", nsecs - @t0); clear(@t0); }}
"""


CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 0x40000


def _child_setup(mount_tracefs: bool) -> Callable[[], None]:
    """In the child, before exec: die with the caller (the kernel sends SIGKILL when the
    thread that started it ends), own process group (a terminal's Ctrl-C is forwarded by the
    caller, which then still reads the maps), room to lock BPF maps, and — when the node has
    no tracefs mounted — tracefs mounted in a mount namespace of the child's own, so the
    node's mounts never change and the mount goes with the child, however it ends.
    The C library is loaded here, in the caller: between fork and exec (serve's worker
    threads may hold the loader's or the import lock) the child only calls into it."""
    libc = netns.load_libc()

    def setup() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.setpgid(0, 0)
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_MEMLOCK,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if mount_tracefs and (libc.unshare(CLONE_NEWNS) != 0 or \
                    libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0 or \
                    libc.mount(b"tracefs", TRACEFS.encode(), b"tracefs", 0, None) != 0):
            raise OSError(f"cannot mount tracefs on {TRACEFS} for the trace")

    return setup


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT (bpftrace prints its maps and detaches), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()
             and "RLIMIT_MEMLOCK" not in ln]
    errors = [ln for ln in lines if ln.startswith("ERROR")] or lines
    return errors[0][:300] if errors else "no message"


def run(seconds: int, progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_started: Callable[[int], None] | None = None) -> RawTrace:
    """Trace drops for `seconds` (1..MAX_SECONDS). Ctrl-C (KeyboardInterrupt) or
    `should_stop()` ends it early with what was counted so far (`interrupted`)."""
    seconds = max(1, min(MAX_SECONDS, int(seconds)))
    path = bpftrace_path()
    started_at = time.time()
    root = _mounted_root()
    if root is not None:
        names = read_reasons(root)  # before anything attaches: a kernel without reasons
    elif not os.path.isdir(TRACEFS):
        raise TraceUnavailable(f"tracefs is not mounted and has no mount point ({TRACEFS})")
    env = {**os.environ, "BPFTRACE_MAP_KEYS_MAX": "65536"}
    try:
        proc = subprocess.Popen([path, "-f", "json", "-e", script(seconds)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env,
                                preexec_fn=_child_setup(root is None), close_fds=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TraceUnavailable(f"bpftrace could not start: {exc}") from exc
    try:
        if on_started is not None:
            on_started(proc.pid)
        if root is None:  # the child's own tracefs, seen through its root
            names = read_reasons(f"/proc/{proc.pid}/root{TRACEFS}")
        lines, err, attached_at, interrupted = _collect(proc, seconds, progress, should_stop)
    finally:
        _stop(proc)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    parsed = parse_output(lines, names)
    if not parsed.attached:
        raise TraceUnavailable(f"bpftrace could not attach to skb:kfree_skb: "
                               f"{_first_error(err)}")
    # The kernel's own clock from BEGIN to END: what the counts cover, which on a loaded
    # node can be longer than asked (the probes count until bpftrace gets to print them).
    traced = parsed.window_ns / 1e9 if parsed.window_ns else \
        min(float(seconds), (time.monotonic() - attached_at) if attached_at else 0.0)
    counts: tuple[DropCount, ...] = tuple(parsed.counts)
    return RawTrace(counts=counts, seconds=float(seconds),
                    traced_seconds=round(traced, 3),
                    interrupted=interrupted, started_at=started_at)


class _Pump:
    """Reads the child's output until it exits; stops it at the deadline or when asked."""

    def __init__(self, proc: subprocess.Popen[str], seconds: int, progress: Progress | None,
                 should_stop: Callable[[], bool] | None) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.seconds, self.progress = proc, seconds, progress
        self.should_stop = should_stop
        self.out, self.err = proc.stdout, proc.stderr
        self.lines: dict[Any, list[str]] = {self.out: [], self.err: []}
        self.partial: dict[Any, str] = {self.out: "", self.err: ""}
        self.sel = selectors.DefaultSelector()
        for f in self.lines:
            os.set_blocking(f.fileno(), False)
            self.sel.register(f, selectors.EVENT_READ)
        self.start = time.monotonic()
        self.attached_at = 0.0
        self.interrupted = False
        self.give_up_at = 0.0  # set once stopping: the child has EXIT_GRACE*2 to finish

    def stop(self, early: bool) -> None:
        if not self.give_up_at:
            self.interrupted = early
            self.give_up_at = time.monotonic() + 2 * EXIT_GRACE
            self.proc.send_signal(signal.SIGINT)  # bpftrace prints its maps and detaches

    def run(self) -> None:
        while self.sel.get_map():
            now = time.monotonic()
            if self.give_up_at:
                if now > self.give_up_at:
                    return
            elif now > self._deadline():
                self.stop(early=False)
            elif self.should_stop is not None and self.should_stop():
                self.stop(early=True)
            elif self.attached_at and self.progress is not None:
                self.progress(max(0.0, self.seconds - (now - self.attached_at)),
                              float(self.seconds))
            for key, _ in self.sel.select(timeout=0.25):
                self._read(key.fileobj)

    def _deadline(self) -> float:
        """Attached: the asked seconds and a grace to print; not yet: ATTACH_DEADLINE."""
        if self.attached_at:
            return self.attached_at + self.seconds + EXIT_GRACE
        return self.start + ATTACH_DEADLINE

    def _read(self, f: Any) -> None:
        chunk = os.read(f.fileno(), 65536).decode("utf-8", "replace")
        if not chunk:
            self.sel.unregister(f)
            return
        *done, self.partial[f] = (self.partial[f] + chunk).split("\n")
        self.lines[f].extend(done)
        if not self.attached_at and f is self.out and \
                any('"attached_probes"' in ln for ln in done):
            self.attached_at = time.monotonic()

    def close(self) -> None:
        self.sel.close()
        for f, rest in self.partial.items():
            if rest:
                self.lines[f].append(rest)


def _collect(proc: subprocess.Popen[str], seconds: int, progress: Progress | None,
             should_stop: Callable[[], bool] | None) -> tuple[list[str], str, float, bool]:
    """The child's output lines, its stderr, when it attached, and whether it was stopped
    early (Ctrl-C: KeyboardInterrupt here, or `should_stop()`)."""
    pump = _Pump(proc, seconds, progress, should_stop)
    try:
        try:
            pump.run()
        except KeyboardInterrupt:
            pump.stop(early=True)
            pump.run()  # what it prints as it exits (its maps), bounded
    finally:
        pump.close()
    return pump.lines[pump.out], "\n".join(pump.lines[pump.err]), pump.attached_at, \
        pump.interrupted
