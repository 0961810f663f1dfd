"""The write path's vocabulary: typed requests (kata_top.requests) in, a Plan of steps, an
Outcome out."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kata_top.model import Sandbox
from kata_top.requests import ActionError, ActionRequest, RateLimitRequest, RedirectRequest

__all__ = ["ActionError", "ActionRequest", "Outcome", "Plan", "RateLimitRequest",
           "RedirectRequest", "Step"]


@dataclass
class Step:
    command: str  # the equivalent tc/ip command (without the netns prefix)
    do: Callable[[Any], None]
    undo: Callable[[Any], None] | None = None


@dataclass
class Plan:
    sandbox: Sandbox
    netns_path: str
    netns_label: str
    operation: str
    title: str
    steps: list[Step] = field(default_factory=list)
    noop: str | None = None
    before: dict[str, Any] = field(default_factory=dict)
    # what was asked: the apply re-plans it under the sandbox's lock, the audit keeps it
    request: ActionRequest | None = None
    # the run root the sandbox was found under: the audit lines name it, so each root's
    # event stream tells only its own actions (one audit log serves the node)
    run_root: str | None = None

    def commands(self) -> list[str]:
        # The label comes from a path or a name the node chose: quoted for copy-paste.
        return [f"ip netns exec {shlex.quote(self.netns_label)} {s.command}"
                for s in self.steps]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    changed: bool
