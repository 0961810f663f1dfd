"""The warm path on the demo lab: what a running `kata-top serve` hands `snapshot`, `check`
and `snapshot --prometheus` says nothing a cold read right after it does not — beyond what
moves between two reads (counters, ages, timing) and what only a serve's stream knows (rates
over its last two collections, its events, the host probe it keeps)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from kata_top import warm
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.helpers import need_root
from tests.serve_helpers import ROOT, serving

MOVING = re.compile(r"(bytes|packets|drops|overlimits|requeues|errors|dropped|_ps|_bps|"
                    r"_pps|_s|_ms|_at|cpu|rss)$")
# only a stream has these: rates need two collections, events a previous one, and the serve
# keeps the host probe (a scratch namespace) for minutes
STREAM_ONLY = ("served", "events", "host_findings", "rates", "cpu_percent", "taken_at",
               "duration_ms")


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kata_top", *argv], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=120, check=False)


def _differences(warm_doc: Any, cold_doc: Any, path: str = "") -> list[str]:
    """Where the warm document says something the cold one (read after it) contradicts."""
    if isinstance(warm_doc, dict) and isinstance(cold_doc, dict):
        out = [f"{path}.{k}: only in one" for k in set(warm_doc) ^ set(cold_doc)
               if k not in STREAM_ONLY]
        for k in set(warm_doc) & set(cold_doc):
            if k not in STREAM_ONLY:
                out += _differences(warm_doc[k], cold_doc[k], f"{path}.{k}")
        return out
    if isinstance(warm_doc, list) and isinstance(cold_doc, list):
        if len(warm_doc) != len(cold_doc):
            return [f"{path}: {len(warm_doc)} vs {len(cold_doc)} items"]
        return [d for i, (a, b) in enumerate(zip(warm_doc, cold_doc, strict=True))
                for d in _differences(a, b, f"{path}[{i}]")]
    if warm_doc == cold_doc:
        return []
    key = path.rsplit(".", 1)[-1]
    numbers = isinstance(warm_doc, (int, float)) and isinstance(cold_doc, (int, float))
    if numbers and MOVING.search(key) and not isinstance(warm_doc, bool):
        return []  # a counter, an age or a time: it moves between two reads
    return [f"{path}: {warm_doc!r} vs {cold_doc!r}"]


def _warm_up(root: str) -> subprocess.CompletedProcess[str]:
    """The first warm answer: a serve's first collection (its engine starting) may outlast
    a client's deadline, which then collects itself; the next finds it done."""
    for _ in range(20):
        got = _cli("snapshot", "--run-root", root, "--json")
        if "served" in json.loads(got.stdout):
            return got
    raise AssertionError(f"no warm answer: {got.stderr}")


def _sandbox_findings(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {sb["id"]: {f["code"] for f in sb["findings"]} for sb in doc["sandboxes"]}


def test_warm_answers_match_a_cold_read(demo_lab: tuple[Layout, Manifest]) -> None:
    need_root()
    layout, _ = demo_lab
    root = layout.run_root
    with serving(root, "--min-interval", "0.2"):
        _warm_up(root)
        # the lab may still be settling (a VM it kills, a tap that goes down): what the warm
        # answer says must be what a cold read just before or just after it says
        before = json.loads(_cli("snapshot", "--run-root", root, "--json", "--fresh").stdout)
        got = _cli("snapshot", "--run-root", root, "--json", "--max-age", "0.5")
        cold = _cli("snapshot", "--run-root", root, "--json", "--fresh")
        warm_doc, cold_doc = json.loads(got.stdout), json.loads(cold.stdout)
        assert warm_doc["served"]["socket"] == warm.socket_path(root), got.stderr
        assert "from kata-top serve" in got.stderr and "served" not in cold_doc
        assert len(warm_doc["sandboxes"]) == 10
        wrong = set(_differences(warm_doc, cold_doc))
        assert not wrong or wrong & set(_differences(warm_doc, before)) == set(), wrong
        # a finding a cold read makes, the warm answer makes too (the warm one may add those
        # that need rates)
        cold_codes, warm_codes = _sandbox_findings(cold_doc), _sandbox_findings(warm_doc)
        assert all(cold_codes[i] <= warm_codes[i] for i in cold_codes), (cold_codes, warm_codes)

        check_w = _cli("check", "--run-root", root, "--json")
        check_c = _cli("check", "--run-root", root, "--json", "--fresh")
        assert check_w.returncode == check_c.returncode == 1  # the demo's faults
        doc_w, doc_c = json.loads(check_w.stdout), json.loads(check_c.stdout)
        assert "served" in doc_w and "served" not in doc_c

        def per_sandbox(doc: dict[str, Any]) -> set[tuple[str, str]]:
            return {(f["code"], f["sandbox"]) for f in doc["findings"] if f["sandbox"]}

        assert per_sandbox(doc_w) == per_sandbox(doc_c)

        prom_w = _cli("snapshot", "--run-root", root, "--prometheus").stdout
        prom_c = _cli("snapshot", "--run-root", root, "--prometheus", "--fresh").stdout
        assert prom_w.startswith("# kata-top: served by kata-top serve")

        def series(text: str) -> set[str]:
            return {ln.rsplit(" ", 1)[0] for ln in text.splitlines()
                    if ln and not ln.startswith(("#", "kata_top_host_findings"))}

        assert series(prom_w) == series(prom_c)

        text_w = _cli("snapshot", "--run-root", root, "--sandbox", "web-0")
        assert "from kata-top serve" in text_w.stderr and "web-0" in text_w.stdout
    # the serve is gone: the same command collects itself, and says nothing about it
    after = _cli("snapshot", "--run-root", root, "--json")
    assert "served" not in json.loads(after.stdout) and "kata-top serve" not in after.stderr


def test_stale_serve_is_read_cold(demo_lab: tuple[Layout, Manifest]) -> None:
    need_root()
    root = demo_lab[0].run_root
    with serving(root, "--min-interval", "60"):
        _warm_up(root)
        # the serve may not collect again for a minute; asked for fresher, the command reads
        stale = _cli("snapshot", "--run-root", root, "--json", "--max-age", "0.01", "--debug")
        assert "served" not in json.loads(stale.stdout)
        assert "stale: collected" in stale.stderr and "more than 0.01 s" in stale.stderr
