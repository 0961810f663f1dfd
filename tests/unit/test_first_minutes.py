"""What a newcomer meets first: one line that says what to do next for each usual mistake,
shell completion, and the version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from kata_top.cli.hints import missing_run_root
from tests.helpers import ROOT
from tests.run_roots import persist, run_root


def kata_top(*argv: str, env: dict[str, str] | None = None,
             as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "kata_top", *argv]
    if as_nobody and os.geteuid() == 0:  # drop to an unprivileged user, as a newcomer might be
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "KATA_TOP_CONFIG": os.devnull,
                                            "XDG_STATE_HOME": tempfile.gettempdir(),
                                            **(env or {})})


def one_line(stderr: str, words: str) -> None:
    lines = [line for line in stderr.splitlines() if words in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr


def test_the_lab_is_not_up() -> None:
    assert "sudo kata-top lab up" in missing_run_root("/run/kata-top-lab")
    out = kata_top("snapshot", "--run-root", "/nonexistent/kata-top-lab")
    assert out.returncode == 2
    one_line(out.stderr, "does not exist")
    assert "sudo kata-top lab up" in out.stderr and "Kata's is /run" in out.stderr


def test_a_run_root_that_is_not_katas(tmp_path: Any) -> None:
    for cmd in ("snapshot", "check"):
        out = kata_top(cmd, "--run-root", str(tmp_path))
        one_line(out.stderr, "holds neither vc/sbs nor kata")
        assert "--run-root" in out.stderr


def test_not_root() -> None:
    if shutil.which("setpriv") is None and os.geteuid() == 0:
        raise AssertionError("setpriv (util-linux) is needed to test as an unprivileged user")
    root = tempfile.mkdtemp(prefix="kt-newcomer-")
    try:
        os.chmod(root, 0o755)
        out = kata_top("snapshot", "--run-root", root, "--log-file", os.devnull,
                       as_nobody=True)
        assert out.returncode == 3  # the documented exit: output, but maybe not all of it
        one_line(out.stderr, "not running as root")
        assert "sudo kata-top snapshot" in out.stderr
    finally:
        os.rmdir(root)


def test_a_kata_node_without_an_extra_monitor(tmp_path: Any) -> None:
    conf = tmp_path / "configuration.toml"
    conf.write_text("[hypervisor.qemu]\npath = \"/usr/bin/qemu-system-x86_64\"\n")
    root = run_root(tmp_path / "root", {})
    out = kata_top("check", "--json", "--run-root", root, env={"KATA_CONF_FILE": str(conf)})
    found = {f["code"]: f for f in json.loads(out.stdout)["findings"]}
    assert 'extra_monitor_socket = "qmp"' in found["KT-H022"]["fix"]
    assert found["KT-H022"]["evidence"]["config"] == str(conf)


def test_version() -> None:
    from kata_top import __version__

    out = kata_top("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"kata-top {__version__}"


def complete(line: str) -> list[str]:
    """What the shell would offer for `line` (argcomplete's protocol; the answer goes to the
    file zsh's script names, instead of the fd 8 bash's script opens)."""
    with tempfile.NamedTemporaryFile("r") as answer:
        subprocess.run([sys.executable, "-m", "kata_top"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
                       env={**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line,
                            "COMP_POINT": str(len(line)), "_ARGCOMPLETE_IFS": "\n",
                            "_ARGCOMPLETE_STDOUT_FILENAME": answer.name})
        return [w.strip() for w in answer.read().split("\n") if w.strip()]


def test_completion_knows_commands_options_and_sandboxes(tmp_path: Any) -> None:
    root = run_root(tmp_path, {"f00d" + "0" * 60: persist(name="web-7")})
    assert "snapshot" in complete("kata-top sna")
    assert "--json" in complete("kata-top check --js")
    names = complete(f"kata-top check --run-root {root} --sandbox ")
    assert {"f00d00000000", "default/web-7"} <= set(names)
    script = kata_top("completion", "bash")
    assert script.returncode == 0 and "complete" in script.stdout and "kata-top" in script.stdout


def test_jobs_is_for_one_snapshot(tmp_path: Any) -> None:
    """`snapshot --jobs`: a number of processes, for a single snapshot; each mistake is one
    line and exit 2, and `--jobs 1` / `--jobs 2` read the same (empty) node."""
    for argv, words in ((("--jobs", "65"), "--jobs takes 1 to 64"),
                        (("--jobs", "-1"), "--jobs takes 1 to 64"),
                        (("--jobs", "2", "--watch", "1"), "--jobs is for one snapshot")):
        out = kata_top("snapshot", "--run-root", str(tmp_path), *argv)
        assert out.returncode == 2, out.stderr
        one_line(out.stderr, words)
    for jobs in ("1", "2"):
        out = kata_top("snapshot", "--json", "--run-root", str(tmp_path), "--jobs", jobs)
        assert out.returncode == 0 and json.loads(out.stdout)["sandboxes"] == [], out.stderr
