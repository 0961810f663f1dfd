"""Helpers for tests that run `kata-top serve` and Prometheus as real processes on loopback.

Every process is started by the test, identified by pid, and stopped by pid; data directories
are the test's own temporary ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10.0, headers: dict[str, str] | None = None,
             context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process we started (by its pid), SIGKILL if it does not go."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


@contextmanager
def serving(run_root: str, *extra: str, wrapper: tuple[str, ...] = ()
            ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`kata-top serve` on a free loopback port (started through `wrapper`, e.g. one that
    drops privileges); yields (base URL, process), the URL https:// when it speaks TLS."""
    proc = subprocess.Popen([*wrapper, sys.executable, "-m", "kata_top", "serve", "--run-root",
                             run_root, "--listen", "127.0.0.1:0", "--log-file", os.devnull,
                             *extra],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"(https?://127\.0\.0\.1:\d+)/", line)
        assert m, f"serve did not say where it listens: {line!r}"
        yield m.group(1), proc
    finally:
        stop(proc)
        if proc.stderr is not None:
            proc.stderr.close()


def make_certs(d: str) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made by
    openssl in `d`; name → path (ca, server.crt, server.key, client.crt, client.key)."""
    def ossl(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=kata-top test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN=kata-top test {name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as fh:
            fh.write(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    names = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")
    return {n: os.path.join(d, n) for n in names}


def proc_usage(pid: int) -> dict[str, int]:
    """A process's threads, open file descriptors and RSS (kB), from /proc."""
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                out[key.lower()] = int(value.split()[0])
    return out


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)


@contextmanager
def prometheus(tmp_dir: str, targets: dict[str, str], rule_files: tuple[str, ...] = (),
               scrape_interval: str = "1s", evaluation_interval: str = "1s",
               scrape_configs: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """A real Prometheus on loopback scraping `targets` (node label -> host:port) every
    second, or the jobs of `scrape_configs`, with its own data directory; yields its URL."""
    import yaml

    port = free_port()
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                   "scrape_timeout": "900ms" if scrape_interval == "1s" else "10s"},
        "rule_files": list(rule_files),
        "scrape_configs": scrape_configs or [{
            "job_name": "kata-top",
            "static_configs": [{"targets": [addr], "labels": {"node": node}}
                               for node, addr in targets.items()],
        }],
    }
    cfg = os.path.join(tmp_dir, "prometheus.yml")
    with open(cfg, "w") as fh:
        yaml.safe_dump(config, fh)
    binary = prometheus_binary()
    assert binary, "prometheus is not installed (Debian's `prometheus` package)"
    proc = subprocess.Popen([binary, f"--config.file={cfg}",
                             f"--storage.tsdb.path={os.path.join(tmp_dir, 'data')}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), 60, "Prometheus to be ready")
        yield base
    finally:
        stop(proc)


def _ready(base: str) -> bool:
    try:
        return http_get(base + "/-/ready", timeout=2)[0] == 200
    except OSError:
        return False


def wait_for(cond: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    """Poll `cond()` until it returns something truthy; fail with `what` after `timeout`
    (a bound on a hang, not a performance claim)."""
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def promql(base: str, query: str) -> list[dict[str, Any]]:
    status, _h, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
    assert status == 200, body
    doc = json.loads(body)
    assert doc["status"] == "success", doc
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result
