"""What a hostile node or server costs a one-shot command or a client, this tree against a
baseline commit (`--baseline REV`), side by side:

- `snapshot --json` over a run root of N corrupt state files nobody is rewriting (wall time,
  median of --rounds);
- `--remote`'s client against a server sending 200 MB of valid JSON (peak RSS, wall time);
- the fleet client against a Prometheus that trickles a byte every 2 s, `--timeout 5`
  (wall time; cut at --patience seconds).

Servers run on loopback in this process; the clients in their own processes. No root needed.
Run: python3 bench/hostile.py --baseline b6150cc [--files 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import checkout  # noqa: E402

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def serving(handle: Handler) -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            with suppress(BrokenPipeError, ConnectionResetError):
                handle(self)

        do_POST = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def huge(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    h.wfile.write(b'{"schema":"kata-top/snapshot/1","taken_at":1,"sandboxes":[],"pad":[')
    block = b"{},[0],[1]," * 6000
    for _ in range((200 << 20) // len(block)):
        h.wfile.write(block)
    h.wfile.write(b"0]}")


def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    for _ in range(600):
        h.wfile.write(b" ")
        h.wfile.flush()
        time.sleep(2)


def corrupt_tree(root: str, n: int) -> None:
    for i in range(n):
        d = os.path.join(root, "vc", "sbs", f"{i:064x}")
        os.makedirs(d)
        p = os.path.join(d, "persist.json")
        with open(p, "w") as fh:
            fh.write('{"state": {"state": "running"' if i % 2 else "")
        os.utime(p, (time.time() - 60, time.time() - 60))


REMOTE = textwrap.dedent("""
    import resource, sys, time
    from kata_top.sources.remote import RemoteSource
    t = time.monotonic()
    try:
        RemoteSource(sys.argv[1], timeout=120).next()
    except Exception as exc:
        pass
    print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
""")


def run(tree: str, args: list[str], patience: float) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": tree}
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              cwd=tree, env=env, timeout=patience, check=False)
    except subprocess.TimeoutExpired:
        return patience, ""
    return time.monotonic() - started, proc.stdout


def measure(tree: str, files: int, rounds: int, patience: float) -> dict[str, str]:
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kt-hostile-") as root:
        corrupt_tree(root, files)
        times = [run(tree, ["-m", "kata_top", "snapshot", "--json", "--run-root", root],
                     patience)[0] for _ in range(rounds)]
        out["snapshot"] = f"{statistics.median(times):.2f} s"
    with serving(huge) as url:
        wall, text = run(tree, ["-c", REMOTE, url], patience)
        fields = text.split()
        out["remote"] = (f"{int(fields[1])} MB peak RSS, {float(fields[0]):.2f} s"
                         if len(fields) == 2 else f"no answer within {patience:g} s")
    with serving(trickle) as url:
        wall, _ = run(tree, ["-m", "kata_top", "fleet", "--prometheus", url, "--timeout", "5",
                             "--json"], patience)
        out["trickle"] = f"{wall:.2f} s" if wall < patience else f"still running at {wall:g} s"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="REV", help="a commit to measure side by side")
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--patience", type=float, default=75.0)
    args = ap.parse_args()
    results = {"this tree": measure(ROOT, args.files, args.rounds, args.patience)}
    if args.baseline:
        with checkout(args.baseline) as tree:
            results[args.baseline] = measure(tree, args.files, args.rounds, args.patience)
    labels = {"snapshot": f"snapshot, {args.files} corrupt state files",
              "remote": "--remote, 200 MB of valid JSON",
              "trickle": "fleet --timeout 5, a byte every 2 s"}
    print(f"hostile bench: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    for key, label in labels.items():
        row = "   ".join(f"{name}: {res[key]}" for name, res in results.items())
        print(f"  {label:<40} {row}")


if __name__ == "__main__":
    main()
