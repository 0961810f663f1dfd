"""A built wheel installed into an empty virtualenv gives a working kata-top (themes, schema
and every data file inside): what `pip install .`, `pipx install .` and `uv tool install .`
all do. Slow (it installs the dependencies from the registry), so it lives with the lab
tests."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import venv
import zipfile
from typing import Any

from tests.helpers import ROOT


def test_wheel_in_an_empty_virtualenv(tmp_path: Any) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    ROOT], check=True, timeout=600)
    wheels = glob.glob(str(dist / "kata_top-*.whl"))
    assert len(wheels) == 1, wheels
    # One installed package: collectors, widgets and themes live under kata_top, so no generic
    # top-level name can clash with another distribution's in site-packages.
    with zipfile.ZipFile(wheels[0]) as whl:
        top = next(n for n in whl.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert whl.read(top).decode().split() == ["kata_top"]
        names = whl.namelist()
    for sub in ("collectors/state.py", "widgets/app.py", "themes/kata_top.tcss"):
        assert f"kata_top/{sub}" in names
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip, kata_top = env_dir / "bin" / "pip", env_dir / "bin" / "kata-top"
    subprocess.run([str(pip), "install", "-q", wheels[0]], check=True, timeout=900)
    # run outside the checkout, so nothing is imported from the source tree
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(kata_top), *argv], cwd=str(tmp_path), capture_output=True,
                              text=True, timeout=120, check=False,
                              env={**os.environ, "KATA_TOP_CONFIG": os.devnull})

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("kata-top ")
    empty = tmp_path / "root"
    empty.mkdir()
    snap = run("snapshot", "--json", "--run-root", str(empty), "--log-file", os.devnull)
    assert snap.returncode in (0, 3) and json.loads(snap.stdout)["sandboxes"] == []
    check = run("check", "--json", "--run-root", str(empty), "--log-file", os.devnull)
    assert check.returncode in (0, 1) and json.loads(check.stdout)["schema"] == "kata-top/check/1"
    files = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import os, kata_top.themes as themes, kata_top.formats as f\n"
         "import kata_top.formats.schema_gen as g\n"
         "print(os.path.exists(themes.TCSS_PATH), os.path.exists(os.path.join("
         "os.path.dirname(f.__file__), 'schema', 'snapshot-1.json')))"],
        cwd=str(tmp_path), capture_output=True, text=True, check=True, timeout=60)
    assert files.stdout.split() == ["True", "True"]
    assert run("completion", "bash").returncode == 0
