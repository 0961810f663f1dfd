"""`kata-top completion bash|zsh`: the shell's completion script, from argcomplete.

Install: `kata-top completion bash > /etc/bash_completion.d/kata-top` (or `eval "$(kata-top
completion bash)"` in ~/.bashrc); zsh: `kata-top completion zsh > "${fpath[1]}/_kata-top"`.
Completes commands, options and — from the run root — sandbox ids and pod names.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

HELP = "print the bash or zsh completion script"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    p.add_argument("shell", choices=("bash", "zsh"), help="which shell's script to print")


def run(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    print(shellcode(["kata-top"], shell=args.shell), end="")
    return 0


def sandbox_names(prefix: str, parsed_args: argparse.Namespace, **_kw: Any) -> list[str]:
    """Sandbox ids (first 12 characters) and namespace/pod names under the run root named on
    the line so far (or the default). Reads state files the way collection does."""
    from kata_top.collectors import state

    root = getattr(parsed_args, "run_root", None) or os.environ.get("KATA_TOP_RUN_ROOT", "/run")
    found, _errors = state.discover(root)
    cache = state.StateCache()
    out: list[str] = []
    for sid, runtime, path in found:
        out.append(sid[:12])
        rec = cache.read(sid, path, runtime, root=root)
        if rec.pod_name:
            out.append(f"{rec.pod_namespace or '-'}/{rec.pod_name}")
    return [c for c in out if c.startswith(prefix)]
