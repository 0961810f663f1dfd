"""The snapshot's JSON paths, this tree beside a baseline commit, side by side in one run.

On a lab of N sandboxes (`lab up --no-qemu --scenario plain`, default 200), both trees as
installed (bench/common.py), run in turn so both see the same drift of a busy machine:
1. `kata-top snapshot --json`: wall clock including the interpreter, on the lab and on an
   empty run root (median of --times);
2. `kata-top serve`'s /api/v1/snapshot: wall time per request at the client over loopback,
   the snapshot shared (`--min-interval 3600`: what is timed is the answer, not a collection);
3. `--replay`: opening a recording of --snapshots lines (`open_recording`: lines indexed,
   the first snapshot built, the last checked), and reading every snapshot of it (ms each);
4. the model and its codec on the lab's snapshot and on it with its sandboxes five times over:
   building every object of it again by keyword (the fields gathered beforehand), writing
   its JSON, reading it back.
Prints a JSON document of medians (and minimums: on a shared machine, the work's own cost)
and ratios (baseline / this tree). Run as root:
  nice python3 bench/json_paths.py [--sandboxes 200] [--baseline b6150cc]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import CONSOLE_SCRIPT, checkout, compile_bytecode, installed_python  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbjson", prefix="ktbjson")

# Run by each tree's python: the model and codec figures on one recorded line. Works with
# both the records-based tree (its readers: snapshot_from_dict over json.loads) and msgspec's.
MICRO = r"""
import json, statistics, sys, time
from kata_top.formats import jsonin, jsonout
from kata_top.model import Snapshot
path, times = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as fh:
    raw = fh.read().splitlines()[-1]
read = getattr(jsonin, "decode", None) or (lambda b: jsonin.snapshot_from_dict(json.loads(b)))

def names(cls):
    return getattr(cls, "__struct_fields__", None) or getattr(cls, "__record_fields__", None)

def plan(obj, out):  # every model object under obj, children first: (class, its fields)
    t = type(obj)
    if t is tuple:
        for x in obj:
            plan(x, out)
        return out
    fields = names(t)
    if fields is not None:
        kw = {n: getattr(obj, n) for n in fields}
        for v in kw.values():
            plan(v, out)
        out.append((t, kw))
    return out

def build(calls):
    for t, kw in calls:
        t(**kw)

def median_ms(fn):  # (median, min): on a shared machine the min is the work's own cost
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(out), 2), round(min(out), 2)

snap = read(raw)
def times5(s):
    if hasattr(type(s), "__struct_fields__"):
        from msgspec.structs import replace
    else:
        from dataclasses import replace
    return replace(s, sandboxes=s.sandboxes * 5)
res = {}
for label, s in (("x1", snap), ("x5", times5(snap))):
    text = jsonout.dumps(s)
    data = text.encode()
    calls = plan(s, [])
    res[label] = {"sandboxes": len(s.sandboxes), "json_mb": round(len(data) / 1e6, 2),
                  "objects": len(calls),
                  "build_ms": median_ms(lambda: build(calls)),
                  "encode_ms": median_ms(lambda: jsonout.dumps(s)),
                  "decode_ms": median_ms(lambda: read(data))}
print(json.dumps(res))
"""

REPLAY = r"""
import json, statistics, sys, time
from kata_top.formats.recording import open_recording
path, times = sys.argv[1], int(sys.argv[2])
opens, reads = [], []
for _ in range(times):
    t0 = time.perf_counter()
    rec = open_recording(path)
    opens.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    n = sum(1 for _ in rec)
    reads.append((time.perf_counter() - t0) * 1000 / n)
    rec.close()
print(json.dumps({"open_ms": round(statistics.median(opens), 1),
                  "read_ms_per_snapshot": round(statistics.median(reads), 2)}))
"""


def kata_top(python: str, *args: str) -> list[str]:
    return [python, "-c", CONSOLE_SCRIPT, *args]


def in_turn(cmds: dict[str, list[str]], times: int) -> dict[str, float]:
    """Median (and min) wall ms of each command, run in turn."""
    out: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(times):
        for k, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, cwd="/")
            out[k].append((time.perf_counter() - t0) * 1000)
    return {**{k: round(statistics.median(v), 1) for k, v in out.items()},
            **{f"{k}_min": round(min(v), 1) for k, v in out.items()}}


def json_of(cmd: list[str]) -> Any:
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True,
                                     cwd="/").stdout)


def start_serve(python: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(kata_top(python, "serve", "--run-root", LAYOUT.run_root,
                                     "--listen", "127.0.0.1:0", "--min-interval", "3600",
                                     "--log-file", os.devnull),
                            cwd="/", stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    metrics = line.split("listening on ", 1)[1].split(" ", 1)[0]
    return proc, metrics.rsplit("/metrics", 1)[0]


def get_ms(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
    return (time.perf_counter() - t0) * 1000


def ratios(d: dict[str, float]) -> float:
    base, this = d["baseline"], d["this_tree"]
    return round(base / this, 2) if this else float("nan")


def run(args: argparse.Namespace, pythons: dict[str, str], tmp: str) -> dict[str, Any]:
    out: dict[str, Any] = {"sandboxes": args.sandboxes, "baseline": args.baseline}
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    for label, root in (("snapshot_json_ms", LAYOUT.run_root), ("snapshot_json_empty_ms",
                                                                empty)):
        out[label] = in_turn({k: kata_top(py, "snapshot", "--json", "--run-root", root,
                                          "--log-file", os.devnull)
                              for k, py in pythons.items()}, args.times)
        out[label]["ratio"] = ratios(out[label])
    # serve: both up, each asked in turn
    servers = {k: start_serve(py) for k, py in pythons.items()}
    try:
        urls = {k: url + "/api/v1/snapshot" for k, (_p, url) in servers.items()}
        for url in urls.values():
            get_ms(url)  # the first answer waits for the collection
        per: dict[str, list[float]] = {k: [] for k in urls}
        for _ in range(args.requests):
            for k, url in urls.items():
                per[k].append(get_ms(url))
        out["serve_api_snapshot_ms"] = {k: round(statistics.median(v), 1)
                                        for k, v in per.items()}
        out["serve_api_snapshot_ms"]["ratio"] = ratios(out["serve_api_snapshot_ms"])
    finally:
        for proc, _url in servers.values():
            proc.terminate()
            proc.wait(10)
    # a recording, written by the baseline (both trees read it: escaped non-ASCII is JSON)
    rec = os.path.join(tmp, "rec.ndjson")
    with open(rec, "w") as fh:
        subprocess.run(kata_top(pythons["baseline"], "snapshot", "--watch", "1", "--count",
                                str(args.snapshots), "--run-root", LAYOUT.run_root,
                                "--log-file", os.devnull), stdout=fh, check=True, cwd="/")
    out["recording_mb"] = round(os.path.getsize(rec) / 1e6, 1)
    replay: dict[str, dict[str, float]] = {}
    micro: dict[str, Any] = {}
    for _ in range(2):  # in turn, twice; the second kept (caches warm for both)
        for k, py in pythons.items():
            replay[k] = json_of([py, "-c", REPLAY, rec, "9"])
            micro[k] = json_of([py, "-c", MICRO, rec, str(args.micro_times)])
    out["replay"] = {m: {**{k: replay[k][m] for k in pythons},
                         "ratio": ratios({k: replay[k][m] for k in pythons})}
                     for m in ("open_ms", "read_ms_per_snapshot")}
    out["model"] = {}
    for size in ("x1", "x5"):
        entry: dict[str, Any] = {"sandboxes": micro["this_tree"][size]["sandboxes"],
                                 "json_mb": micro["this_tree"][size]["json_mb"]}
        for m in ("build_ms", "encode_ms", "decode_ms"):
            for i, how in enumerate(("median", "min")):
                figures = {k: micro[k][size][m][i] for k in pythons}
                entry[f"{m}_{how}"] = {**figures, "ratio": ratios(figures)}
        out["model"][size] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--baseline", default="b6150cc")
    ap.add_argument("--times", type=int, default=5)
    ap.add_argument("--requests", type=int, default=15)
    ap.add_argument("--snapshots", type=int, default=10)
    ap.add_argument("--micro-times", type=int, default=15)
    ap.add_argument("--settle", type=float, default=30.0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # each tree's python imports its own packages: a PYTHONPATH (a checkout's) would win
    os.environ.pop("PYTHONPATH", None)
    compile_bytecode()
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain"))
    try:
        time.sleep(args.settle)  # past a fresh lab's IPv6 chatter
        with checkout(args.baseline) as old, installed_python(old) as old_py, \
                installed_python(ROOT) as new_py, tempfile.TemporaryDirectory() as tmp:
            result = run(args, {"this_tree": new_py, "baseline": old_py}, tmp)
    finally:
        build.down(LAYOUT)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
