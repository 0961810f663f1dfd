"""Floors: the parts of a measure that no change to kata-top's Python can take away.

Where a scale target stays out of reach (bench/scale.py, bench/ui.py), this measures, on the
same lab in one run, what the target's time cannot go below on this machine:
- interpreter: `python -c pass` with the Python that runs kata-top (median of 7);
- startup: `kata-top snapshot --json` on an empty run root, as installed (median of 7);
- requests: the netlink requests a one-shot collection sends, recorded from one and sent
  again raw (a socket per namespace opened as the collector opens it, each request sent and
  its replies read, nothing decoded), in one process and split over two forked ones as
  `snapshot` reads (median of 3);
- state files: the one-shot collection's own `state` part (discovery and reading);
- beside them, what kata-top takes: the one-shot collection in one and two processes and
  `kata-top snapshot --json` as installed (median of 3 / 5);
- with --ui (add --traffic: every sandbox carries traffic): the dashboard on a pty fed by a
  recording of the same lab (`--replay`: no collection at all) beside the live one, as
  bench/ui.py runs it (no key presses): the UI's own share of a core (its main thread and
  Textual's threads; the worker that reads each recorded step left out); and the requests the
  live dashboard's collection sends per second (its engine in this process, with the
  dashboard's options and the rows a 48-line terminal shows watched).

Floors: a one-shot collection cannot take less than the requests in two processes and half
the state files (as if they too split perfectly), `snapshot --json` not less than that and the
interpreter; the dashboard not less than its collection's requests and what its UI alone
costs today (replayed: Textual's and the widgets' share, not a floor of Python). Beside
each target (in TARGETS) the output says what the floor leaves for everything
kata-top's Python does (imports, decoding, the model, encoding), and what that work costs
today in CPU (`snapshot --json --jobs 1`, less the interpreter, the requests and the state
files).
Run as root: python3 bench/floor.py [--sandboxes 1000] [--ui [--traffic] [--seconds 40]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import CONSOLE_SCRIPT, installed_python
from kata_top.lab import build
from kata_top.lab.layout import Layout

LAYOUT = Layout(run_root="/run/ktfloor", prefix="ktfloor")
WATCHED_ROWS = 40  # the sandbox rows a 160x48 terminal shows (bench/ui.py's)
Request = tuple[int, bytes, int]  # message type, payload, flags
# the targets (ms): a one-shot collection, and `snapshot --json` wall
TARGETS = {1000: {"collection": 400.0, "snapshot_json": 600.0},
           200: {"snapshot_json": 150.0}}


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def _run(argv: list[str]) -> None:
    subprocess.run(argv, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)


def _cpu_ms(argv: list[str], runs: int = 3) -> float:
    """User and system CPU of a run of argv, its forked helpers included (median)."""
    cpu = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _run(argv)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return round(statistics.median(cpu) * 1000, 1)


def record_requests(run_root: str) -> list[tuple[str | None, bool, bool, list[Request]]]:
    """The sockets a one-shot collection opens (namespace path, tc and link events) and the
    requests it sends on each, in order, from one collection in this process."""
    from kata_top.collectors.rtnetlink.netlink import RtnlSocket
    from kata_top.engine import Engine, EngineOptions

    log: list[tuple[str | None, bool, bool, list[Request]]] = []
    by_sock: dict[int, list[Request]] = {}
    real_open, real_request = RtnlSocket.open.__func__, RtnlSocket.request  # type: ignore[attr-defined]

    def open_(cls: type[RtnlSocket], netns_path: str | None = None, tc_events: bool = False,
              link_events: bool = False) -> RtnlSocket:
        sock: RtnlSocket = real_open(cls, netns_path, tc_events, link_events)
        reqs: list[Request] = []
        log.append((netns_path, tc_events, link_events, reqs))
        by_sock[id(sock)] = reqs
        return sock

    def request(self: RtnlSocket, msg_type: int, payload: bytes,
                flags: int = 0x300) -> list[bytes]:
        by_sock[id(self)].append((msg_type, payload, flags))
        out: list[bytes] = real_request(self, msg_type, payload, flags)
        return out

    RtnlSocket.open = classmethod(open_)  # type: ignore[method-assign,assignment]
    RtnlSocket.request = request  # type: ignore[method-assign]
    try:
        engine = Engine(EngineOptions(run_root=run_root, with_vmm=False, one_shot=True,
                                      read_workers=1))
        engine.collect()
        engine.close()
    finally:
        RtnlSocket.open = classmethod(real_open)  # type: ignore[method-assign,assignment]
        RtnlSocket.request = real_request  # type: ignore[method-assign]
    return log


def send_requests(recorded: list[tuple[str | None, bool, bool, list[Request]]]) -> None:
    """The recorded requests again: a socket each, replies read whole, nothing decoded. A
    namespace-id lookup names a file descriptor: this process's own namespace's, as the
    collector's names the node's."""
    from kata_top.collectors.rtnetlink.netlink import RTM_GETNSID, RtnlSocket

    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for path, tc_events, link_events, reqs in recorded:
            sock = RtnlSocket.open(path, tc_events=tc_events, link_events=link_events)
            try:
                for msg_type, payload, flags in reqs:
                    if msg_type == RTM_GETNSID:
                        sock.peer_nsid(home)
                    else:
                        sock.request(msg_type, payload, flags)
            finally:
                sock.close()
    finally:
        os.close(home)


def send_split(recorded: list[tuple[str | None, bool, bool, list[Request]]], procs: int
               ) -> None:
    """send_requests over `procs` processes: the later shares in forked children."""
    share = -(-len(recorded) // procs)
    kids = []
    for i in range(1, procs):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                send_requests(recorded[i * share:(i + 1) * share])
            finally:
                os._exit(0)
        kids.append(pid)
    send_requests(recorded[:share])
    for pid in kids:
        os.waitpid(pid, 0)  # our own children, by pid


def one_shot(run_root: str, workers: int) -> tuple[float, dict[str, float]]:
    from kata_top.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False, one_shot=True,
                                  read_workers=workers))
    t0 = time.perf_counter()
    got = engine.collect()
    ms = (time.perf_counter() - t0) * 1000
    engine.close()
    assert not any(sb.errors for sb in got.snapshot.sandboxes), "a sandbox failed"
    return ms, dict(got.timings)


def dashboard_requests(run_root: str, seconds: float) -> dict[str, float]:
    """The live dashboard's collection, in this process (its engine, with the dashboard's
    options and watched rows): ms per 1 s refresh spent on requests (the engine's `netlink`
    part) and the engine's CPU in all, medians over `seconds`."""
    from kata_top.engine import TC_BUSY_REFRESH_S, UNWATCHED_REFRESH_S, Engine, EngineOptions

    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False,
                                  tc_busy_refresh_s=TC_BUSY_REFRESH_S,
                                  unwatched_refresh_s=UNWATCHED_REFRESH_S))
    try:
        snap = engine.collect().snapshot
        engine.watched = frozenset(sorted(sb.id for sb in snap.sandboxes)[:WATCHED_ROWS])
        netlink: list[float] = []
        cpu: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(1.0)
            c0 = time.thread_time()
            got = engine.collect()
            cpu.append((time.thread_time() - c0) * 1000)
            netlink.append(got.timings["netlink"])
    finally:
        engine.close()
    return {"requests_ms_per_s": round(statistics.median(netlink), 1),
            "engine_cpu_ms_per_s": round(statistics.median(cpu), 1)}


def ui_shares(python: str, n: int, seconds: float) -> dict[str, Any]:
    """The dashboard on a pty, replaying a recording of the lab, then live."""
    from bench.ui import Terminal

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kt-floor-") as tmp:
        rec = os.path.join(tmp, "recording.ndjson")
        count = int(seconds) + 15  # the replay must not run out inside the window
        with open(rec, "wb") as fh:
            subprocess.run([python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root,
                            "snapshot", "--watch", "1", "--count", str(count)],
                           stdout=fh, cwd="/", check=True)
        for label, args in (("replay", ["--replay", rec]),
                            ("live", ["--run-root", LAYOUT.run_root])):
            term = Terminal([python, "-c", CONSOLE_SCRIPT, *args, "--refresh", "1",
                             "--theme", "dark"], cwd="/")
            try:
                if not term.wait_for(f"{n} sandboxes".encode(), 120):
                    raise SystemExit(f"{label}: the dashboard never showed {n} sandboxes")
                time.sleep(2.0)
                cpu0, t0, threads0 = term.cpu_seconds(), time.monotonic(), term.thread_cpu()
                time.sleep(seconds)
                wall = time.monotonic() - t0
                threads = {tid: v - threads0.get(tid, 0.0)
                           for tid, v in term.thread_cpu().items()}
                ui = threads.pop(term.proc.pid, 0.0)
                # the busiest other thread: the collector (live) or the worker that reads
                # and builds each recorded step (replay); the rest is Textual's own
                worker = max(threads.values(), default=0.0)
                out[label] = {
                    "cpu_percent_of_one_core": round(100 * (term.cpu_seconds() - cpu0) / wall, 1),
                    "ui_thread_percent": round(100 * ui / wall, 1),
                    "worker_thread_percent": round(100 * worker / wall, 1),
                    "textual_threads_percent": round(
                        100 * (sum(threads.values()) - worker) / wall, 1)}
            finally:
                term.quit()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sandboxes", type=int, default=1000)
    ap.add_argument("--ui", action="store_true", help="also the dashboard's floor")
    ap.add_argument("--traffic", action="store_true",
                    help="every sandbox carries traffic (the lab's generator, 20 pps each)")
    ap.add_argument("--seconds", type=float, default=40.0,
                    help="the dashboard's measured window, replayed and live (--ui)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/floor.py builds a lab: run it as root", file=sys.stderr)
        return 2
    n = args.sandboxes
    build.down(LAYOUT)
    print(f"building a lab of {n} sandboxes under {LAYOUT.run_root} …", file=sys.stderr)
    build.up(LAYOUT, build.UpOptions(sandboxes=n, qemu=False, scenario="plain",
                                     traffic=args.traffic))
    res: dict[str, Any] = {"sandboxes": n, "traffic": args.traffic,
                           "cpus": len(os.sched_getaffinity(0))}
    try:
        with installed_python() as python, tempfile.TemporaryDirectory() as empty:
            res["interpreter_ms"] = _median_ms(lambda: _run([python, "-c", "pass"]), 7)
            res["startup_empty_root_ms"] = _median_ms(lambda: _run(
                [python, "-c", CONSOLE_SCRIPT, "--run-root", empty, "snapshot", "--json"]), 7)
            recorded = record_requests(LAYOUT.run_root)
            res["requests"] = sum(len(r) for *_x, r in recorded)
            res["sockets"] = len(recorded)
            res["requests_one_process_ms"] = _median_ms(lambda: send_split(recorded, 1), 3)
            res["requests_two_processes_ms"] = _median_ms(lambda: send_split(recorded, 2), 3)
            runs = [one_shot(LAYOUT.run_root, 1) for _ in range(3)]
            res["state_files_ms"] = round(statistics.median(t["state"] for _ms, t in runs), 1)
            res["collection_one_process_ms"] = round(statistics.median(ms for ms, _t in runs), 1)
            res["collection_two_processes_ms"] = round(statistics.median(
                one_shot(LAYOUT.run_root, 2)[0] for _ in range(3)), 1)
            res["snapshot_json_ms"] = _median_ms(lambda: _run(
                [python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root, "snapshot",
                 "--json"]), 5)
            res["snapshot_json_cpu_ms"] = _cpu_ms(
                [python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root, "snapshot",
                 "--json"])
            # What no Python change removes (the kernel's answers, reading the state files,
            # starting the interpreter), split as well as two processes could split it; and
            # what a target leaves for all the rest: imports, decoding, the model, encoding.
            res["floor_collection_ms"] = round(res["requests_two_processes_ms"]
                                               + res["state_files_ms"] / 2, 1)
            res["floor_snapshot_json_ms"] = round(res["interpreter_ms"]
                                                  + res["floor_collection_ms"], 1)
            # ... which today costs this much CPU (one process: `--jobs 1`)
            res["python_work_cpu_ms"] = round(
                _cpu_ms([python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root,
                         "snapshot", "--json", "--jobs", "1"])
                - res["interpreter_ms"] - res["requests_one_process_ms"]
                - res["state_files_ms"], 1)
            target = TARGETS.get(n)
            if target:
                res["targets_ms"] = target
                floors = {"collection": res["floor_collection_ms"],
                          "snapshot_json": res["floor_snapshot_json_ms"]}
                res["left_for_python_ms"] = {k: round(v - floors[k], 1)
                                             for k, v in target.items()}
            if args.ui:
                res["dashboard"] = ui_shares(python, n, args.seconds)
                res["dashboard"]["collection"] = dashboard_requests(LAYOUT.run_root,
                                                                    args.seconds / 2)
                replay = res["dashboard"]["replay"]
                ui = replay["ui_thread_percent"] + replay["textual_threads_percent"]
                req = res["dashboard"]["collection"]["requests_ms_per_s"] / 10  # ms/s → %
                res["floor_dashboard_percent"] = round(ui + req, 1)
    finally:
        build.down(LAYOUT)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
