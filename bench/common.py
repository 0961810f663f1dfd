"""What more than one benchmark needs: the shell-loop baseline and bytecode as installed."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The serves a benchmark starts (and the clients it times, which inherit the environment) use a
# socket directory of the benchmark's own, not the node's /run/kata-top; removed at exit.
if "KATA_TOP_SERVE_DIR" not in os.environ:
    os.environ["KATA_TOP_SERVE_DIR"] = tempfile.mkdtemp(prefix="ktbench-serve-")
    atexit.register(shutil.rmtree, os.environ["KATA_TOP_SERVE_DIR"], True)


def shell_loop(namespaces: list[str]) -> None:
    """The loop an operator would write: per namespace `ip -s -j link`, `tc -s -j qdisc`
    and `tc -s -j filter` on eth0's and the tap's ingress, four iproute2 processes."""
    for ns in namespaces:
        for cmd in (["ip", "-s", "-j", "link", "show"], ["tc", "-s", "-j", "qdisc", "show"],
                    ["tc", "-s", "-j", "filter", "show", "dev", "eth0", "ingress"],
                    ["tc", "-s", "-j", "filter", "show", "dev", "tap0_kata", "ingress"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, check=True)


def compile_bytecode() -> None:
    """Bytecode as an install has it (pip compiles at install time). This tree may run with
    PYTHONDONTWRITEBYTECODE, and every `python -m kata_top` would then time the compiler."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "kata_top", "collectors"],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


@contextmanager
def checkout(rev: str) -> Iterator[str]:
    """The packages of commit `rev` (kata_top, collectors, widgets, themes) in a scratch
    directory, for a baseline measured side by side with this tree."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kt-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", rev, "kata_top", "collectors", "widgets",
                                  "themes"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield tmp


# What the `kata-top` console script runs (`python -m` would add runpy's imports).
CONSOLE_SCRIPT = "import sys; from kata_top.cli.main import main; sys.exit(main())"


@contextmanager
def installed_python(source: str = ROOT) -> Iterator[str]:
    """A Python that runs kata-top as `pip install .` leaves it, not as this checkout's
    editable install does: the editable install's import hook is loaded at every start
    (importlib machinery and pathlib, ~20 ms on this machine) and no user has it. A scratch
    virtualenv gets copies of the packages, compiled, and a .pth naming the checkout venv's
    site-packages for the dependencies (a directory named by a .pth has its own .pth files
    left unread, so the editable hook stays out). `source`: the tree whose packages are
    installed (this checkout's, or a baseline's from `checkout`). Yields its python."""
    import sysconfig
    import tempfile
    import venv

    with tempfile.TemporaryDirectory(prefix="kt-installed-") as tmp:
        venv.EnvBuilder(with_pip=False, symlinks=True).create(tmp)
        python = os.path.join(tmp, "bin", "python")
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
        for pkg in ("kata_top", "collectors", "widgets", "themes"):
            shutil.copytree(os.path.join(source, pkg), os.path.join(site, pkg),
                            ignore=shutil.ignore_patterns("__pycache__"))
        with open(os.path.join(site, "kata-top-deps.pth"), "w") as fh:
            fh.write(sysconfig.get_paths()["purelib"] + "\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([python, "-m", "compileall", "-q", site], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        yield python

