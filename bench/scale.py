"""Scale: collection time and memory from 1 to 1,000 sandboxes, and the headless commands.

For each size (`lab up --no-qemu --scenario plain`, idle sandboxes: it waits until a fresh
lab's IPv6 chatter has passed) it reports, side by side in one run:
- collection, measured in a fresh worker process so memory is kata-top's alone: cold (the
  first collect of a new Engine: sockets opened, every namespace dumped) and steady (the
  median of --rounds collections 1 s apart, as the dashboard and serve run), each split per
  part as Collection.timings names them (state files, /proc, namespace lookups, time waiting on
  the kernel's netlink dumps, per-sandbox work in Python), and the worker's peak RSS; then a
  one-shot collection as `snapshot` once reads with a forked helper (two processes,
  collectors/read_ahead.py) and in one process, wall and CPU (the helper's included);
- `kata-top snapshot --json`: wall clock including the interpreter (median of 5; bytecode
  compiled first, as an install has it), and on an empty run root; as installed with
  `--jobs 2` and `--jobs 1`, in turn, and the CPU of one run of each (helper's included);
- `kata-top snapshot --watch 1 --json`: CPU per snapshot in steady state (collection, rates,
  findings, events and encoding), from the CPU of a long and a short run's difference
  (with --baseline: as installed, the median over --turns of each, in turn);
- the baseline: the shell loop an operator would write (per namespace `ip -s -j link`,
  `tc -s -j qdisc`, `tc -s -j filter` on eth0's and the tap's ingress), its median, and the
  ratio to `snapshot --json`;
- with --baseline REV, that commit beside this tree, both as installed: `snapshot --json`
  and `--watch` in turn, and the collection (cold, steady, RSS: medians over --turns workers
  of each, run in turn).

Run as root: python3 bench/scale.py [--sizes 1,50,200,500,1000] [--rounds 10]
[--baseline REV [--turns 3]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "--installed" not in sys.argv:  # an installed worker times the kata_top of its python
    sys.path.insert(0, ROOT)

LAYOUT_ROOT, PREFIX = "/run/ktscale", "ktscale"
PARTS = ("state", "procs", "namespaces", "netlink", "sandboxes")
# Commands run from here, not from the checkout: `python -c` puts its working directory first
# on sys.path, and from the checkout an installed (or baseline) python would import the
# checkout's kata_top instead of its own.
NEUTRAL_CWD = "/"


def collected(engine: Any) -> tuple[Any, dict[str, float]]:
    """One collection's snapshot and timings, from this tree's engine (a Collection) or a
    baseline's (which returned the snapshot and kept its timings as an attribute). Here, not
    in bench/common.py: an installed worker imports only the kata_top of its python."""
    got = engine.collect()
    if hasattr(got, "snapshot"):
        return got.snapshot, dict(got.timings)
    return got, dict(engine.timings)


def worker(run_root: str, rounds: int) -> None:
    """One Engine over run_root: cold, then steady; prints one JSON line."""
    import gc

    from kata_top.cli.main import GC_THRESHOLDS
    from kata_top.engine import Engine, EngineOptions

    gc.set_threshold(*GC_THRESHOLDS)  # as every kata-top command runs
    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False))
    t0 = time.perf_counter()
    snap, cold_parts = collected(engine)
    cold = (time.perf_counter() - t0) * 1000
    steady: list[float] = []
    steady_cpu: list[float] = []  # this process's CPU: what a loaded machine's wall hides
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for _ in range(rounds):
        time.sleep(max(0.0, 1.0 - (steady[-1] / 1000 if steady else 0.0)))
        t0, c0 = time.perf_counter(), time.process_time()
        snap, timings = collected(engine)
        steady.append((time.perf_counter() - t0) * 1000)
        steady_cpu.append((time.process_time() - c0) * 1000)
        for p in PARTS:
            parts[p].append(timings[p])
    engine.close()
    assert not any(sb.errors for sb in snap.sandboxes), "a sandbox failed"
    # `snapshot` once: this tree with a helper (two processes; by default it forks only
    # while the load average leaves a CPU idle) and in one process; a baseline without
    # read_workers as it reads
    try:
        once = {f"once_{k}": v for k, v in _once(run_root, read_workers=2).items()}
        once |= {f"once_alone_{k}": v for k, v in _once(run_root, read_workers=1).items()}
    except TypeError:
        once = {f"once_{k}": v for k, v in _once(run_root).items()}
    print(json.dumps({
        **once,
        "sandboxes": len(snap.sandboxes), "cold_ms": round(cold, 1),
        "cold_parts_ms": cold_parts,
        "steady_median_ms": round(statistics.median(steady), 1) if steady else None,
        "steady_cpu_median_ms": round(statistics.median(steady_cpu), 1) if steady else None,
        "steady_max_ms": round(max(steady), 1) if steady else None,
        "steady_parts_median_ms": {p: round(statistics.median(v), 1) if v else None
                                   for p, v in parts.items()},
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _once(run_root: str, **opts: Any) -> dict[str, float]:
    """A one-shot collection (`snapshot` once): wall and CPU in ms, forked helpers' included
    (collectors/read_ahead.py), and how many processes read."""
    from kata_top.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False, one_shot=True, **opts))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0, t0 = time.process_time(), time.perf_counter()
    snap, _timings = collected(engine)
    wall_ms = (time.perf_counter() - t0) * 1000
    cpu_s = time.process_time() - c0
    engine.close()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    helpers_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert not any(sb.errors for sb in snap.sandboxes), "a sandbox failed"
    return {"ms": round(wall_ms, 1), "cpu_ms": round((cpu_s + helpers_s) * 1000, 1),
            "helpers_cpu_ms": round(helpers_s * 1000, 1)}


def run_worker(python: str, run_root: str, rounds: int, installed: bool = True
               ) -> dict[str, Any]:
    """A worker's JSON line. installed: run by an installed python (this tree's or a
    baseline's) from a neutral directory, timing the kata_top that python has; else by this
    python, timing the checkout's."""
    out = subprocess.run([python, os.path.abspath(__file__), "--worker", run_root, "--rounds",
                          str(rounds), *(["--installed"] if installed else [])],
                         capture_output=True, text=True, check=True,
                         cwd=NEUTRAL_CWD if installed else None)
    row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return row


def wait_quiet(paths: list[str], cap_s: float = 120.0) -> float:
    """Seconds until every namespace is idle (its dump reused) in two cycles in a row: a
    fresh lab's links send IPv6 duplicate-address and multicast-listener packets for a
    while, and the benchmark is of idle sandboxes."""
    from kata_top.collectors.netcollect import NetCollector

    nc = NetCollector()
    t0, quiet = time.monotonic(), 0
    try:
        while quiet < 2 and time.monotonic() - t0 < cap_s:
            nc.begin_cycle(set())
            for p in paths:
                nc.collect(p)
            nc.end_cycle()
            quiet = quiet + 1 if nc.tc_reused == len(paths) else 0
            time.sleep(1)
    finally:
        nc.close()
    return round(time.monotonic() - t0, 1)


def kata_top(*args: str, python: str = sys.executable) -> list[str]:
    """The command as the `kata-top` console script runs it, with `python`."""
    from bench.common import CONSOLE_SCRIPT

    return [python, "-c", CONSOLE_SCRIPT, *args]


def wall(cmd: list[str], times: int) -> float:
    return walls(cmd, times=times)[0][0]


def walls(*cmds: list[str], times: int) -> list[tuple[float, float]]:
    """(median, min) wall milliseconds of each command, the commands run in turn `times`
    times (a baseline and this tree side by side see the same drift of a noisy machine)."""
    out: list[list[float]] = [[] for _ in cmds]
    for _ in range(times):
        for i, cmd in enumerate(cmds):
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, cwd=NEUTRAL_CWD)
            out[i].append((time.perf_counter() - t0) * 1000)
    return [(round(statistics.median(w), 1), round(min(w), 1)) for w in out]


def cpu_of(cmd: list[str]) -> float:
    """CPU seconds (user + system) of one run of cmd, children included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   cwd=NEUTRAL_CWD)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,50,200,500,1000")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--baseline", metavar="REV",
                    help="also time a commit's `snapshot --json` and `--watch` (as installed), "
                         "side by side with this tree's")
    ap.add_argument("--turns", type=int, default=3,
                    help="with --baseline: collection workers of each, in turn (medians)")
    ap.add_argument("--prefix", default=PREFIX,
                    help="the lab's name prefix (its namespaces, links and processes)")
    ap.add_argument("--run-root", default=LAYOUT_ROOT, help="the lab's run root")
    ap.add_argument("--worker", metavar="RUN_ROOT", help=argparse.SUPPRESS)
    ap.add_argument("--installed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.rounds)
        return 0
    from bench.common import checkout, compile_bytecode, installed_python
    from kata_top.lab.layout import Layout

    layout = Layout(run_root=args.run_root, prefix=args.prefix)
    compile_bytecode()
    with contextlib.ExitStack() as stack:
        installed = stack.enter_context(installed_python())
        baseline = None
        if args.baseline:
            baseline = stack.enter_context(installed_python(
                stack.enter_context(checkout(args.baseline))))
        return run(args, layout, installed, baseline)


def run(args: argparse.Namespace, layout: Any, installed: str, baseline: str | None) -> int:
    """The sizes, one lab each; `installed`: a python with kata-top as pip installs it,
    `baseline`: the same with --baseline's commit."""
    from bench.common import shell_loop
    from kata_top.lab import build

    with tempfile.TemporaryDirectory(prefix="ktscale-empty-") as empty:
        empty_wall = wall(kata_top("snapshot", "--json", "--run-root", empty), 7)
        cmd = ("snapshot", "--json", "--run-root", empty)
        (inst_med, inst_min), *empty_base = walls(
            kata_top(*cmd, python=installed),
            *([kata_top(*cmd, python=baseline)] if baseline else []), times=31)
    head = {"snapshot_json_empty_run_root_wall_ms": round(empty_wall, 1),
            "as_installed_median_ms": inst_med, "as_installed_min_ms": inst_min,
            "interpreter_alone_median_ms": walls([installed, "-c", "pass"], times=31)[0][0]}
    if empty_base:
        head |= {"baseline": args.baseline, "baseline_median_ms": empty_base[0][0],
                 "baseline_min_ms": empty_base[0][1]}
    print(json.dumps(head), flush=True)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        build.down(layout)
        t0 = time.perf_counter()
        man = build.up(layout, build.UpOptions(sandboxes=n, qemu=False, scenario="plain"))
        up_s = time.perf_counter() - t0
        try:
            row_quiet = wait_quiet([f"/run/netns/{sb.netns}" for sb in man.sandboxes
                                    if sb.netns])
            row = run_worker(sys.executable, layout.run_root, args.rounds, installed=False)
            row["lab_up_s"] = round(up_s, 1)
            row["quiet_after_s"] = row_quiet
            row["snapshot_json_wall_ms"] = round(
                wall(kata_top("snapshot", "--json", "--run-root", layout.run_root), 5), 1)
            cmd = ("snapshot", "--json", "--run-root", layout.run_root)
            (inst, _), (alone, _), *base = walls(
                kata_top(*cmd, "--jobs", "2", python=installed),
                kata_top(*cmd, "--jobs", "1", python=installed),
                *([kata_top(*cmd, python=baseline)] if baseline else []), times=5)
            row["snapshot_json_installed_wall_ms"] = inst
            row["snapshot_json_jobs_1_installed_wall_ms"] = alone
            row["snapshot_json_installed_cpu_ms"] = round(
                cpu_of(kata_top(*cmd, "--jobs", "2", python=installed)) * 1000, 1)
            row["snapshot_json_jobs_1_installed_cpu_ms"] = round(
                cpu_of(kata_top(*cmd, "--jobs", "1", python=installed)) * 1000, 1)
            if base:
                row["baseline_snapshot_json_installed_wall_ms"] = base[0][0]
            if baseline:
                # the collection itself beside the baseline's: workers of each in turn (a
                # noisy machine drifts by a third within minutes), medians over them
                runs: dict[str, list[dict[str, Any]]] = {"this": [], "baseline": []}
                for _ in range(args.turns):
                    for key, python in (("this", installed), ("baseline", baseline)):
                        runs[key].append(run_worker(python, layout.run_root, args.rounds))
                for key, prefix in (("this", ""), ("baseline", "baseline_")):
                    for what, field in (("cold", "cold_ms"), ("steady", "steady_median_ms"),
                                        ("steady_cpu", "steady_cpu_median_ms"),
                                        ("rss", "rss_mb"), ("once", "once_ms"),
                                        ("once_cpu", "once_cpu_ms"),
                                        ("once_alone", "once_alone_ms"),
                                        ("once_alone_cpu", "once_alone_cpu_ms")):
                        if field in runs[key][0]:
                            row[f"{prefix}installed_{what}_median"] = round(
                                statistics.median(r[field] for r in runs[key]), 1)
            # CPU per snapshot: a long and a short run's difference, so the start and the
            # cold first snapshot cancel out; beside a baseline both as installed, in turn,
            # the median over --turns (one difference swings by tens of ms at 1,000)
            short, long_ = 3, 3 + args.rounds
            pythons = [("watch_cpu_ms_per_snapshot", installed if baseline else sys.executable)]
            if baseline:
                pythons.append(("baseline_watch_cpu_ms_per_snapshot", baseline))
            per: dict[str, list[float]] = {key: [] for key, _ in pythons}
            for _ in range(args.turns if baseline else 1):
                for key, python in pythons:
                    watch = kata_top("snapshot", "--watch", "1", "--json", "--run-root",
                                     layout.run_root, "--count", python=python)
                    per[key].append((cpu_of([*watch, str(long_)]) - cpu_of([*watch, str(short)]))
                                    / (long_ - short) * 1000)
            for key, values in per.items():
                row[key] = round(statistics.median(values), 1)
            namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
            reps = 3 if n <= 200 else 1
            t0 = time.perf_counter()
            for _ in range(reps):
                shell_loop(namespaces)
            row["shell_loop_ms"] = round((time.perf_counter() - t0) / reps * 1000, 1)
            row["ratio_shell_to_snapshot_json"] = round(
                row["shell_loop_ms"] / row["snapshot_json_wall_ms"], 1)
        finally:
            build.down(layout)
        rows.append(row)
        print(json.dumps(row), flush=True)

    print("\n| sandboxes | `snapshot` once: collection in two processes / in one "
          "(wall; CPU, the helper's included) | `snapshot --json --jobs 2` / `--jobs 1` as "
          "installed (wall; CPU of one run) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['sandboxes']} | {r['once_ms']} / {r['once_alone_ms']} ms; "
              f"{r['once_cpu_ms']} / {r['once_alone_cpu_ms']} ms | "
              f"{r['snapshot_json_installed_wall_ms']} / "
              f"{r['snapshot_json_jobs_1_installed_wall_ms']} ms; "
              f"{r['snapshot_json_installed_cpu_ms']} / "
              f"{r['snapshot_json_jobs_1_installed_cpu_ms']} ms |")
    print("\n| sandboxes | cold | steady (median / max) | steady parts: state · procs · "
          "netns · kernel · python | RSS | `snapshot --json` | shell loop | ratio |"
          " `--watch 1` CPU/snapshot |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["steady_parts_median_ms"]
        print(f"| {r['sandboxes']} | {r['cold_ms']} ms | {r['steady_median_ms']} / "
              f"{r['steady_max_ms']} ms | {' · '.join(str(p[k]) for k in PARTS)} ms | "
              f"{r['rss_mb']} MB | {r['snapshot_json_wall_ms']} ms | {r['shell_loop_ms']} ms |"
              f" {r['ratio_shell_to_snapshot_json']}× | {r['watch_cpu_ms_per_snapshot']} ms |")
    print(f"\n`snapshot --json` on an empty run root, as installed: median {inst_med} ms, "
          f"min {inst_min} ms (the interpreter alone: {head['interpreter_alone_median_ms']} ms)"
          + (f"; {args.baseline}: median {empty_base[0][0]} ms, min {empty_base[0][1]} ms"
             if empty_base else ""))
    if baseline:
        print(f"\n| sandboxes | cold collection: this tree / {args.baseline} | `snapshot` "
              f"once: collection, this tree in two processes / {args.baseline} (CPU, the "
              f"helper's included) | steady: this tree / {args.baseline} | RSS | `snapshot "
              f"--json` as installed (this tree with --jobs 2) | `--watch 1` CPU/snapshot |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['sandboxes']} | {r['installed_cold_median']} / "
                  f"{r['baseline_installed_cold_median']} ms | "
                  f"{r['installed_once_median']} / {r['baseline_installed_once_median']} ms "
                  f"(CPU {r['installed_once_cpu_median']} / "
                  f"{r['baseline_installed_once_cpu_median']} ms; this tree in one process "
                  f"{r['installed_once_alone_median']} ms, CPU "
                  f"{r['installed_once_alone_cpu_median']} ms) | "
                  f"{r['installed_steady_median']} / "
                  f"{r['baseline_installed_steady_median']} ms | {r['installed_rss_median']} / "
                  f"{r['baseline_installed_rss_median']} MB | "
                  f"{r['snapshot_json_installed_wall_ms']} / "
                  f"{r['baseline_snapshot_json_installed_wall_ms']} ms | "
                  f"{r['watch_cpu_ms_per_snapshot']} / "
                  f"{r['baseline_watch_cpu_ms_per_snapshot']} ms |")
        print(f"(collection: medians over {args.turns} workers of each, run in turn, each a "
              f"cold collection and {args.rounds} steady ones 1 s apart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
