"""The Prometheus text output: well-formed for any label text, right for the demo recording."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from kata_top.formats import prometheus as promout
from kata_top.formats.prom_cache import TextCache
from kata_top.formats.recording import load_recording
from kata_top.formats.terminal import for_terminal
from tests.helpers import ROOT

RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{NAME}={LABEL_VALUE}(?:,{NAME}={LABEL_VALUE})*\}})? "
                    r"(-?[0-9.e+-]+|NaN|[+-]Inf)$")
LABEL = re.compile(rf"({NAME})=({LABEL_VALUE})")


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A strict reader of the text format: every line a comment or a valid sample, each
    family declared (HELP, TYPE) before its samples, no series twice."""
    assert text.endswith("\n")
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    typed: dict[str, str] = {}
    for line in text[:-1].split("\n"):  # the format splits on \n only
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter") and name not in typed
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        labels = tuple((k, _unescape(v[1:-1])) for k, v in LABEL.findall(m.group(2) or ""))
        family = m.group(1)  # text 0.0.4: HELP/TYPE name a counter as its samples, _total too
        assert typed.get(family) in ("gauge", "counter"), f"sample before its TYPE: {line!r}"
        assert (typed[family] == "counter") == m.group(1).endswith("_total"), line
        key = (m.group(1), labels)
        assert key not in series, f"series twice: {key}"
        series[key] = float(m.group(3))
    return series


def _pod(labels: tuple[tuple[str, str], ...]) -> str:
    d = dict(labels)
    return f"{d['cri_namespace']}/{d['cri_name']}"


def test_demo_recording_exposes_what_the_dashboard_shows() -> None:
    snaps, _ = load_recording(RECORDING)
    series = parse(promout.render(snaps[-1]))
    by_pod = {_pod(lab): v for (name, lab), v in series.items()
              if name == "kata_top_sandbox_info"}
    assert len(by_pod) == len(snaps[-1].sandboxes)
    present = {(_pod(lab), dict(lab)["direction"]): v for (name, lab), v in series.items()
               if name == "kata_top_redirect_present"}
    assert present[("monitoring/no-out-redirect-3", "out")] == 0
    assert present[("monitoring/no-out-redirect-3", "in")] == 1
    assert present[("default/web-0", "out")] == 1
    limits = {dict(lab)["direction"]: v for (name, lab), v in series.items()
              if name == "kata_top_rate_limit_bytes_per_second"
              and _pod(lab) == "batch/throttled-2"}
    assert limits == {"in": 20e6 / 8, "out": 10e6 / 8}
    # kata-monitor's label set, exactly, on every per-sandbox series
    for _name, lab in series:
        if any(k == "sandbox_id" for k, _ in lab):
            assert {"sandbox_id", "cri_uid", "cri_name", "cri_namespace"} <= dict(lab).keys()
    assert any(name == "kata_top_findings" and _pod(lab) == "default/mtu-mismatch-4"
               for name, lab in series)


DEMO, _ = load_recording(RECORDING)


@given(st.text(min_size=0, max_size=40))
def test_any_pod_name_stays_one_well_formed_label(name: str) -> None:
    sb = DEMO[0].sandboxes[0]
    snap = replace(DEMO[0], sandboxes=(replace(sb, pod=replace(sb.pod, name=name)),))
    series = parse(promout.render(snap))
    pods = {dict(lab)["cri_name"] for (n, lab) in series if n == "kata_top_sandbox_info"}
    # escaped on the way out, intact on the way in; control characters shown as \xNN
    assert pods == {for_terminal(name).encode("utf-8", "replace").decode()}


def test_cli_writes_the_file_atomically_and_refuses_watch(tmp_path: Any) -> None:
    out = tmp_path / "kata.prom"
    run = subprocess.run([sys.executable, "-m", "kata_top", "--run-root", str(tmp_path),
                          "snapshot", "--prometheus", "--output", str(out)],
                         capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)
    assert run.stdout == "" and "Traceback" not in run.stderr
    series = parse(out.read_text())
    assert series[("kata_top_sandboxes", ())] == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kata-top-")] == []
    bad = subprocess.run([sys.executable, "-m", "kata_top", "--run-root", str(tmp_path),
                          "snapshot", "--prometheus", "--watch", "1"],
                         capture_output=True, text=True, cwd=ROOT, check=False, timeout=60)
    assert bad.returncode == 2 and "--prometheus" in bad.stderr


def _samples(text: str, openmetrics: bool = False) -> set[tuple[str, tuple[tuple[str, str], ...],
                                                                float]]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    from prometheus_client.parser import text_string_to_metric_families as txt

    parse_fn = om if openmetrics else txt
    return {(s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in parse_fn(text) for s in fam.samples}


def test_kata_tops_encoder_agrees_with_prometheus_client_in_both_formats() -> None:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.exposition import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as om_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    class Oracle(Collector):
        """The same series through prometheus_client's own families and encoders."""

        def collect(self) -> list[Metric]:
            out: list[Metric] = []
            for name, kind, doc, labels, samples in promout.exposition(snap).families():
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                metric = cls(name, doc, labels=labels)
                for values, value in samples:
                    metric.add_metric(values, value)
                out.append(metric)
            return out

    snap = DEMO[-1]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Oracle())
    ours = _samples(promout.render(snap))
    assert ours == _samples(generate_latest(registry).decode())
    assert len(ours) > 500
    assert _samples(promout.render(snap, openmetrics=True), True) == \
        _samples(om_latest(registry).decode(), True)


def test_text_cache_reuses_unchanged_sandboxes_and_renders_changes() -> None:
    from kata_top.model import LinkStats

    first, second = DEMO[-2], DEMO[-1]
    cache = TextCache()
    assert cache.render(first) == promout.exposition(first).text()
    assert cache.hits == 0
    assert cache.render(first) == promout.exposition(first).text()
    assert cache.hits == len(first.sandboxes)
    # one sandbox's counters move: only it is rendered again, and the output says so
    sb = next(s for s in second.sandboxes if any(lk.name == "eth0" for lk in s.links))
    links = tuple(replace(lk, stats=LinkStats(rx_bytes=123456789)) if lk.name == "eth0" else lk
                  for lk in sb.links)
    moved = replace(second, sandboxes=tuple(replace(s, links=links) if s is sb else s
                                            for s in second.sandboxes))
    cache.render(second)
    cache.hits = 0
    text = cache.render(moved).decode()
    assert text == promout.exposition(moved).text().decode()
    assert "123456789" in text
    assert cache.hits == len(moved.sandboxes) - 1
    # family blocks: unchanged ones are the very same objects (what the exporter's gzip
    # reuses); the moved counter's families are new; OpenMetrics ends with # EOF
    before = cache.parts(moved)
    again = cache.parts(moved)
    node_wide = (b"kata_top_snapshot_timestamp_seconds", b"kata_top_collection_duration_sec",
                 b"kata_top_sandboxes ", b"kata_top_collection_errors", b"kata_top_host_")
    renewed = [a for a, b in zip(before, again, strict=True) if a is not b]
    assert all(a.split(b"\n", 1)[0][7:].startswith(node_wide) for a in renewed), renewed
    assert len(renewed) < len(before) // 4
    moved2 = replace(moved, sandboxes=tuple(
        replace(s, links=tuple(replace(lk, stats=LinkStats(rx_bytes=7)) for lk in s.links))
        if s.id == sb.id else s for s in moved.sandboxes))
    after = cache.parts(moved2)
    changed = {a.split(b"\n", 1)[0] for a, b in zip(again, after, strict=True) if a is not b}
    assert b"# HELP kata_top_link_receive_bytes_total Link receive bytes (kernel counter)." \
        in changed and b"".join(after) == promout.exposition(moved2).text()
    assert b"".join(cache.parts(moved2, openmetrics=True)) == \
        promout.exposition(moved2).text(openmetrics=True)


@given(st.text(max_size=20), st.text(max_size=20))
def test_any_label_text_survives_both_encoders(name: str, namespace: str) -> None:
    sb = DEMO[0].sandboxes[0]
    snap = replace(DEMO[0], sandboxes=(replace(sb, pod=replace(sb.pod, name=name,
                                                               namespace=namespace)),))
    text = promout.render(snap)
    want_name = for_terminal(name).encode("utf-8", "replace").decode("utf-8")
    got = {dict(lab).get("cri_name") for (n, lab) in parse(text)
           if n == "kata_top_sandbox_info"}
    assert got == {want_name}


def test_promtool_lints_both_encoders_clean() -> None:
    import shutil

    from tests.helpers import require

    promtool = shutil.which("promtool")
    require(promtool is not None, "needs promtool (Debian's prometheus package)")
    assert promtool is not None
    cache = TextCache()
    for text in (promout.render(DEMO[-1]), cache.render(DEMO[-1]).decode()):
        out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             text=True, check=False, timeout=60)
        assert out.returncode == 0 and out.stdout + out.stderr == "", out.stderr


_STEP = st.tuples(st.lists(st.integers(0, 30), max_size=12),  # which sandboxes, in which order
                  st.integers(0, 2**40),  # a counter value for a sandbox's links
                  st.booleans())  # OpenMetrics?


@given(st.lists(_STEP, min_size=1, max_size=6))
def test_text_cache_equals_the_plain_encoder_over_any_sequence(steps: list[Any]) -> None:
    """Sandboxes come, go, move and change counters between scrapes, scrapers ask for either
    format: every answer is byte for byte what the plain encoder writes."""
    from kata_top.model import LinkStats

    pool = [sb for snap in DEMO[-2:] for sb in snap.sandboxes]
    cache = TextCache()
    for picks, counter, om in steps:
        chosen = []
        for i in picks:
            sb = pool[i % len(pool)]
            if sb.id in {c.id for c in chosen}:
                continue
            if i % 3 == 0:  # this one's counters moved
                sb = replace(sb, links=tuple(replace(lk, stats=LinkStats(rx_bytes=counter))
                                             for lk in sb.links))
            chosen.append(sb)
        snap = replace(DEMO[-1], sandboxes=tuple(chosen))
        assert cache.render(snap, openmetrics=om) == \
            promout.exposition(snap).text(openmetrics=om)
