"""The Prometheus text output: well-formed for any label text, right for the demo recording."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kata_top.formats import prometheus as promout
from kata_top.formats.jsonin import load_recording

ROOT = os.path.dirname(os.path.dirname(__file__))
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
    typed: set[str] = set()
    for line in text[:-1].split("\n"):  # the format splits on \n only
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter") and name not in typed
            typed.add(name)
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample: {line!r}"
        labels = tuple((k, _unescape(v[1:-1])) for k, v in LABEL.findall(m.group(2) or ""))
        assert m.group(1) in typed, f"sample before its TYPE: {line!r}"
        key = (m.group(1), labels)
        assert key not in series, f"series twice: {key}"
        series[key] = float(m.group(3))
    return series


def test_demo_recording_exposes_what_the_dashboard_shows() -> None:
    snaps, _ = load_recording(RECORDING)
    series = parse(promout.render(snaps[-1]))
    by_pod = {dict(lab)["pod"]: v for (name, lab), v in series.items()
              if name == "kata_top_sandbox_info"}
    assert len(by_pod) == len(snaps[-1].sandboxes)
    present = {(dict(lab)["pod"], dict(lab)["direction"]): v for (name, lab), v in series.items()
               if name == "kata_top_redirect_present"}
    assert present[("monitoring/no-out-redirect-3", "out")] == 0
    assert present[("monitoring/no-out-redirect-3", "in")] == 1
    assert present[("default/web-0", "out")] == 1
    limits = {dict(lab)["direction"]: v for (name, lab), v in series.items()
              if name == "kata_top_rate_limit_bits_per_second"
              and dict(lab)["pod"] == "batch/throttled-2"}
    assert limits == {"in": 20e6, "out": 10e6}
    assert any(name == "kata_top_findings" and dict(lab)["pod"] == "default/mtu-mismatch-4"
               for name, lab in series)


DEMO, _ = load_recording(RECORDING)


@given(st.text(min_size=0, max_size=40))
def test_any_pod_name_stays_one_well_formed_label(name: str) -> None:
    sb = DEMO[0].sandboxes[0]
    snap = replace(DEMO[0], sandboxes=(replace(sb, pod=replace(sb.pod, name=name)),))
    series = parse(promout.render(snap))
    pods = {dict(lab)["pod"] for (n, lab) in series if n == "kata_top_sandbox_info"}
    assert len(pods) == 1
    if name:
        assert pods.pop().endswith("/" + name)  # escaped on the way out, intact on the way in


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
