"""The lines a newcomer meets first: each says what is wrong and what to run next."""

from __future__ import annotations

import os

LAB_ROOT = "/run/kata-top-lab"


def missing_run_root(run_root: str) -> str:
    if os.path.normpath(run_root) == LAB_ROOT:
        return f"run root {run_root} does not exist: the lab is not up (sudo kata-top lab up)"
    return (f"run root {run_root} does not exist (Kata's is /run; the lab's is {LAB_ROOT}: "
            "sudo kata-top lab up)")


def not_kata_root(run_root: str) -> str | None:
    """A line when run_root holds neither of Kata's state trees, else None."""
    if os.path.isdir(os.path.join(run_root, "vc", "sbs")) or \
            os.path.isdir(os.path.join(run_root, "kata")):
        return None
    return (f"{run_root} holds neither vc/sbs nor kata: no Kata sandboxes here (Kata's run "
            f"root is /run, the lab's {LAB_ROOT}; give it with --run-root)")


def not_root(command: str) -> str | None:
    if os.geteuid() == 0:
        return None
    return (f"not running as root: Kata's state files (0600) and the sandboxes' namespaces "
            f"are unreadable; run: sudo kata-top {command}".rstrip())
