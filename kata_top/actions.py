"""Write actions (not built yet)."""

from __future__ import annotations

from typing import Any


class ActionError(Exception):
    pass


def plan_from_ui(source: Any, sandbox_id: str, request: tuple[str, str, str]) -> Any:
    raise ActionError("write actions are not available yet")


def execute(plan: Any) -> Any:
    raise ActionError("write actions are not available yet")
