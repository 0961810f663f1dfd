"""Who may read the exporter, and whether it can read the node: a real Prometheus scraping a
`kata-top serve` through TLS and basic auth (and refused without them), and /healthz of a
serve that runs without the privileges to read Kata's state."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import bcrypt
import pytest
import yaml

from kata_top.lab import build
from tests.helpers import TEST_PREFIX, need_root, require
from tests.run_roots import persist, run_root
from tests.serve_helpers import (
    http_get,
    make_certs,
    prometheus,
    prometheus_binary,
    promql,
    serving,
    wait_for,
)

PASSWORD = "scrape-me"


def test_prometheus_scrapes_through_tls_and_basic_auth_and_is_refused_without(
        tmp_path: Any) -> None:
    require(prometheus_binary() is not None, "needs Debian's prometheus package")
    certs = make_certs(str(tmp_path))
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        "basic_auth_users": {"prometheus": bcrypt.hashpw(PASSWORD.encode(),
                                                         bcrypt.gensalt(10)).decode()}}))
    root = run_root(tmp_path / "root", {f"{i:064x}": persist(name=f"web-{i}") for i in range(3)})
    with serving(root, "--web.config.file", str(web)) as (base, _proc):
        addr = base.split("//", 1)[1]
        tls = {"ca_file": certs["ca.crt"]}

        def job(name: str, **extra: Any) -> dict[str, Any]:
            return {"job_name": name, "static_configs": [{"targets": [addr]}], **extra}

        jobs = [job("tls-and-auth", scheme="https", tls_config=tls,
                    basic_auth={"username": "prometheus", "password": PASSWORD}),
                job("tls-no-auth", scheme="https", tls_config=tls),
                job("tls-wrong-password", scheme="https", tls_config=tls,
                    basic_auth={"username": "prometheus", "password": "guess"}),
                job("plain-http", basic_auth={"username": "prometheus", "password": PASSWORD})]
        prom_dir = tmp_path / "prom"
        prom_dir.mkdir()
        with prometheus(str(prom_dir), {}, scrape_configs=jobs) as prom:
            up = wait_for(lambda: (lambda r: r if len(r) == 4 else None)(promql(prom, "up")),
                          90, "Prometheus to scrape all four jobs")
            assert {m["metric"]["job"]: m["value"][1] for m in up} == {
                "tls-and-auth": "1", "tls-no-auth": "0", "tls-wrong-password": "0",
                "plain-http": "0"}
            sandboxes = promql(prom, "kata_top_sandboxes")
            assert {m["metric"]["job"] for m in sandboxes} == {"tls-and-auth"}
            assert sum(float(m["value"][1]) for m in sandboxes) == 3.0
            # and the exporter's own answer to the scraper without a password
            ctx = ssl.create_default_context(cafile=certs["ca.crt"])
            assert http_get(base + "/metrics", context=ctx)[0] == 401
            auth = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
            assert http_get(base + "/metrics", context=ctx,
                            headers={"Authorization": f"Basic {auth}"})[0] == 200


@pytest.fixture
def unprivileged(tmp_path: Any) -> Iterator[tuple[str, ...]]:
    """A wrapper running a command as nobody, with no capabilities, in a mount namespace of
    its own where the interpreter under /root (0700) is reachable; nothing outlives it."""
    need_root()
    require(shutil.which("setpriv") is not None and shutil.which("unshare") is not None,
            "needs util-linux's setpriv and unshare")
    import sys

    real = os.path.realpath(sys.executable)
    home = "/root/"
    hidden = real.startswith(home)
    top = home + real[len(home):].split("/", 1)[0] if hidden else ""
    side = tmp_path / "interp"
    side.mkdir()
    steps = (f"mount --bind {top} {side} && mount -t tmpfs -o mode=0755 tmpfs {home} && "
             f"mkdir {top} && mount --bind {side} {top} && ") if hidden else ""
    yield ("unshare", "-m", "--propagation", "private", "sh", "-c",
           steps + 'exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all '
                   '--bounding-set=-all "$@"', "unprivileged")


def test_healthz_fails_when_serve_cannot_read_the_node(unprivileged: tuple[str, ...]) -> None:
    d = tempfile.mkdtemp(prefix=TEST_PREFIX + "hz")
    try:
        os.chmod(d, 0o755)
        root = run_root(d, {f"{i:064x}": persist(name=f"web-{i}") for i in range(8)})
        sbs = os.path.join(root, "vc", "sbs")
        for sid in os.listdir(sbs):  # as Kata writes them: root's alone
            os.chmod(os.path.join(sbs, sid, "persist.json"), 0o600)
        for parent in (os.path.join(root, "vc"), sbs):
            os.chmod(parent, 0o755)
        with serving(root, "--min-interval", "0") as (base, _p):
            assert http_get(base + "/healthz")[0] == 200  # root reads them all
        with serving(root, "--min-interval", "0", wrapper=unprivileged) as (base, _p):
            status, _h, body = http_get(base + "/healthz")
            assert status == 503 and b"none of the 8 sandboxes" in body, body
            assert http_get(base + "/metrics")[0] == 200  # what it has is still exported
            os.chmod(sbs, 0o700)  # now it cannot even list them
            status, _h, body = http_get(base + "/healthz")
            assert status == 503 and b"cannot read the run root" in body, body
    finally:
        shutil.rmtree(d)


def test_two_hundred_scrapes_at_once_of_two_hundred_lab_sandboxes(scratch_lab: Any) -> None:
    """A Prometheus fleet's worth of scrapers on the same tick, on a node of 200 sandboxes
    (real namespaces, veths, taps, tc): every one answered, in full, within 2 s."""
    build.up(scratch_lab, build.UpOptions(sandboxes=200, qemu=False, scenario="plain"))
    with serving(scratch_lab.run_root, "--min-interval", "5") as (base, _proc):
        status, _h, body = http_get(base + "/metrics", timeout=60)  # the first collection
        assert status == 200 and body.count(b"kata_top_sandbox_info{") == 200
        results: list[tuple[int, float, bytes]] = []
        start = threading.Barrier(201)

        def scrape() -> None:
            start.wait()
            t0 = time.monotonic()
            status, _h, body = http_get(base + "/metrics", timeout=30,
                                        headers={"Accept-Encoding": "gzip"})
            results.append((status, time.monotonic() - t0, body))

        threads = [threading.Thread(target=scrape) for _ in range(200)]
        for t in threads:
            t.start()
        start.wait()
        for t in threads:
            t.join()
        assert [s for s, _t, _b in results] == [200] * 200
        assert all(gzip.decompress(b).count(b"kata_top_sandbox_info{") == 200
                   for _s, _t, b in results)
        times = sorted(t for _s, t, _n in results)
        assert times[-1] < 2.0, f"slowest {times[-1]:.2f} s, median {times[100]:.2f} s"
