"""The architecture as tests: who may import whom (ARCHITECTURE.md draws the same arrows).

Static rules read every module's imports (outside `if TYPE_CHECKING:` blocks, which never
run); runtime rules run the headless commands in a fresh interpreter and list what got loaded.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import ROOT


def _modules(package: str) -> Iterator[str]:
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def _runtime_imports(path: str) -> set[str]:
    """Every module an `import` in this file names, except under `if TYPE_CHECKING:`."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _violations(package: str, forbidden: tuple[str, ...],
                exempt: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path in _modules(package):
        rel = os.path.relpath(path, ROOT)
        if rel.startswith(exempt):
            continue
        for mod in sorted(_runtime_imports(path)):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                bad.append(f"{rel} imports {mod}")
    return bad


def test_collectors_never_import_the_ui() -> None:
    assert _violations("collectors", ("textual", "rich", "kata_top.widgets", "kata_top.themes",
                                      "kata_top.cli", "kata_top.sources")) == []


def test_widgets_never_reach_the_kernel_qemu_or_the_write_path() -> None:
    """Widgets see Snapshots, typed requests and a Source; nothing that collects or writes."""
    assert _violations("widgets", ("kata_top.collectors", "kata_top.actions", "kata_top.engine",
                                   "kata_top.lab", "pyroute2", "qemu", "pyinotify")) == []


def test_core_never_imports_the_ui() -> None:
    assert _violations("kata_top", ("textual", "rich", "kata_top.widgets"),
                       exempt=(os.path.join("kata_top", "cli", "dashboard.py"),
                               os.path.join("kata_top", "cli", "fleet_console.py"),
                               os.path.join("kata_top", "lab", "screenshots.py"))) == []


def test_only_the_write_path_imports_pyroute2() -> None:
    offenders = [v for v in _violations("kata_top", ("pyroute2",))
                 if not v.startswith(os.path.join("kata_top", "actions"))]
    assert offenders == []


HEADLESS_FORBIDDEN = ("textual", "rich", "pyroute2", "kata_top.widgets", "kata_top.themes",
                      "kata_top.lab",
                      "kata_top.actions", "qemu", "pyinotify")


def _loaded_by(argv: list[str]) -> tuple[int, set[str], str]:
    code = ("import json, sys\nfrom kata_top.cli.main import main\n"
            f"rc = main({argv!r})\n"
            "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=False, timeout=120)
    loaded = set(json.loads(out.stderr.strip().splitlines()[-1]))
    return out.returncode, loaded, out.stdout


@pytest.mark.parametrize("argv", [["snapshot", "--json"], ["snapshot", "--prometheus"],
                                  ["snapshot"]])
def test_snapshot_loads_nothing_it_does_not_use(tmp_path: object, argv: list[str]) -> None:
    rc, loaded, stdout = _loaded_by([*argv, "--run-root", str(tmp_path)])
    assert rc in (0, 3), stdout
    assert stdout
    bad = sorted(m for m in loaded if m.split(".")[0] in HEADLESS_FORBIDDEN
                 or any(m == f or m.startswith(f + ".") for f in HEADLESS_FORBIDDEN))
    assert bad == []


# What a one-shot snapshot of a node without sandboxes does not use: the monitor clients,
# the process library, the log file's handler (nothing is logged), libc's setns (no namespace
# entered), the other output formats and the dashboard's sources.
EMPTY_NODE_UNUSED = ("asyncio", "kata_top.collectors.vmm", "kata_top.collectors.qmp", "psutil",
                     "logging.handlers", "ctypes", "kata_top.sources",
                     "kata_top.formats.prometheus", "kata_top.formats.textout", "kata_top.events",
                     "kata_top.history")


def test_snapshot_of_an_empty_node_loads_only_what_it_uses(tmp_path: object) -> None:
    rc, loaded, stdout = _loaded_by(["snapshot", "--json", "--run-root", str(tmp_path)])
    assert rc in (0, 3), stdout
    assert sorted(m for m in loaded if any(m == f or m.startswith(f + ".")
                                           for f in EMPTY_NODE_UNUSED)) == []


def test_help_builds_without_loading_any_command(tmp_path: object) -> None:
    """`kata-top --help` lists every command but imports none of their modules."""
    code = ("import sys\nfrom kata_top.cli.main import build_parser\n"
            "text = build_parser(['--help']).format_help()\n"
            "assert all(c in text for c in ('snapshot', 'check', 'serve', 'lab'))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('kata_top.lab', "
            "'kata_top.cli.snapshot', 'kata_top.cli.check', 'kata_top.actions'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_nothing_imports_a_bare_top_level_folder() -> None:
    """collectors, widgets and themes install under kata_top only (one installed package)."""
    bad = [v for pkg in ("kata_top", "collectors", "widgets", "themes", "tests", "bench")
           for v in _violations(pkg, ("collectors", "widgets", "themes"))]
    assert bad == []


# The pipeline's direction: collectors → engine → pipeline (rates, findings, host findings,
# events) → outputs. Nothing flows back.
PIPELINE_AND_OUTPUTS = ("kata_top.engine", "kata_top.pipeline", "kata_top.stream",
                        "kata_top.rates", "kata_top.diagnose", "kata_top.events",
                        "kata_top.formats", "kata_top.serve", "kata_top.sources",
                        "kata_top.fleet", "kata_top.cli", "kata_top.actions",
                        "kata_top.widgets")
# A safe open (no symlink followed, never blocking on a FIFO) is what every reader of a
# file on the node needs, not a collection: outputs may use it.
SHARED_COLLECTOR_PARTS = ("kata_top.collectors.safeopen",)


def test_collectors_never_import_the_pipeline_or_an_output() -> None:
    assert _violations("collectors", PIPELINE_AND_OUTPUTS) == []


@pytest.mark.parametrize("package", [os.path.join("kata_top", "formats"),
                                     os.path.join("kata_top", "serve"), "widgets"])
def test_outputs_never_import_collectors_or_the_engine(package: str) -> None:
    """Outputs get Snapshots from the pipeline (a Source); they never collect."""
    bad = [v for v in _violations(package, ("kata_top.collectors", "kata_top.engine"))
           if not v.split(" imports ")[1].startswith(SHARED_COLLECTOR_PARTS)]
    assert bad == []


def test_rtnetlink_is_used_through_its_package_only() -> None:
    """collectors/rtnetlink's one public entry is the package: its modules (decoders, socket
    framing, memo) are its own business (tests of the decoders may reach them)."""
    inner = tuple(f"kata_top.collectors.rtnetlink.{m[:-3]}"
                  for m in os.listdir(os.path.join(ROOT, "collectors", "rtnetlink"))
                  if m.endswith(".py") and m != "__init__.py")
    assert len(inner) >= 3
    bad = [v for pkg in ("kata_top", "collectors", "widgets")
           for v in _violations(pkg, inner, exempt=(os.path.join("collectors", "rtnetlink"),))]
    assert bad == []
