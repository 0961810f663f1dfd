"""The processes beside a sandbox's VMM: the shim's management socket and virtiofsd."""

from __future__ import annotations

import os
import stat
import time
import zlib

from kata_top.collectors import procs, shimsock, state
from kata_top.model import ShimMonitorState, Virtiofsd

SHIM_PROBE_EVERY_S = 30.0  # mean interval between connects to a listening shim socket
# Flags that throttle virtiofsd's I/O. `--rlimit-nofile` is not one: it is the open-files
# limit (Virtiofsd.rlimit_nofile).
VIRTIOFSD_RATE_FLAGS = ("--rate-limit", "--iops", "--bps")


class ShimProbes:
    """What each sandbox's shim socket was found to be, and when to connect to it again."""

    def __init__(self) -> None:
        # per sandbox: (when to connect to its shim's socket again, what was found)
        self._seen: dict[str, tuple[float, ShimMonitorState]] = {}
        self._now: dict[str, tuple[float, ShimMonitorState]] = {}

    def end_cycle(self) -> None:
        """Forget the sandboxes this collection did not ask about."""
        self._seen, self._now = self._now, {}

    def monitor(self, sid: str, rec: state.StateRecord | None) -> ShimMonitorState | None:
        """The shim's management socket beside the sandbox's state file. A listening one is
        connected to again only every ~SHIM_PROBE_EVERY_S (spread over the sandboxes), with a
        look at its file in between: kata-top does not knock on every shim every second."""
        if rec is None or not rec.path:
            return None
        path = os.path.join(os.path.dirname(rec.path), shimsock.SOCKET_NAME)
        now = time.monotonic()
        last = self._seen.get(sid)
        if last is not None and last[1] == "listening" and now < last[0]:
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    self._now[sid] = last
                    return "listening"
            except OSError:
                pass
        found = shimsock.probe(path)
        spread = 0.5 + zlib.crc32(sid.encode(errors="replace")) % 1000 / 1000
        self._now[sid] = (now + SHIM_PROBE_EVERY_S * spread, found)
        return found


def virtiofsd(pcache: procs.ProcCache, sid: str, rec: state.StateRecord | None,
               pidx: procs.ProcessIndex) -> tuple[Virtiofsd, ...]:
    pids = list(pidx.virtiofsd.get(sid, []))
    if rec and rec.virtiofsd_pid and rec.virtiofsd_pid not in pids:
        pids.insert(0, rec.virtiofsd_pid)
    out: list[Virtiofsd] = []
    for pid in pids:
        argv = pidx.cmdlines.get(pid) or procs.read_cmdline(pid)
        info = pcache.info(pid, "virtiofsd") if procs.pid_alive(pid) else None
        if argv and info is not None and pid not in pidx.cmdlines:
            argv = ()  # recorded pid reused by something else
        opts = virtiofsd_opts(argv)
        rd, wr = pcache.io(pid) if info else (None, None)
        out.append(Virtiofsd(
            pid=pid, alive=info is not None, socket=opts.get("socket"),
            shared_dir=opts.get("shared_dir"), cache=opts.get("cache"),
            thread_pool_size=int(opts["threads"]) if opts.get("threads", "").isdigit()
            else None,
            rate_limit_flags=tuple(a for a in argv if a.startswith(VIRTIOFSD_RATE_FLAGS)),
            cpu_percent=info.cpu_percent if info else None,
            rss_bytes=info.rss_bytes if info else None,
            threads=info.threads if info else None, read_bytes=rd, write_bytes=wr,
            rlimit_nofile=int(opts["nofile"]) if opts.get("nofile", "").isdigit() else None))
    # The C virtiofsd forks a sandboxed child with the same command line: show the parent.
    parents = [v for v in out if v.pid == (rec.virtiofsd_pid if rec else None)]
    return tuple(parents or out[:1])


def virtiofsd_opts(argv: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    it = iter(argv[1:])
    for a in it:
        if a == "-o":
            a = "-o" + next(it, "")
        if a.startswith("--socket-path="):
            out["socket"] = a.split("=", 1)[1]
        elif a.startswith("--shared-dir="):
            out["shared_dir"] = a.split("=", 1)[1]
        elif a.startswith("--cache="):
            out["cache"] = a.split("=", 1)[1]
        elif a.startswith("--thread-pool-size="):
            out["threads"] = a.split("=", 1)[1]
        elif a.startswith("--rlimit-nofile="):
            out["nofile"] = a.split("=", 1)[1]
        elif a == "--rlimit-nofile":
            out["nofile"] = next(it, "")
        elif a.startswith("-o"):
            for part in a[2:].split(","):
                k, _, v = part.partition("=")
                if k == "source":
                    out["shared_dir"] = v
                elif k == "cache":
                    out["cache"] = v
                elif k == "rlimit_nofile":
                    out["nofile"] = v
    return out
