"""Finish or roll back a change the audit log holds as unfinished (an intent, no outcome).

Finishing plans the recorded request again from fresh state (the planners are idempotent:
what is already there is not redone). Rolling back plans the request that puts back what the
intent recorded as `before`, for the directions the change touched. Either is applied like
any change (locked, audited) and its outcome names the intent it resolves; when nothing is
left to do, an outcome line alone closes the intent.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from kata_top.actions.audit import AuditLog, unfinished
from kata_top.actions.model import ActionError, Plan
from kata_top.actions.plan import find_sandbox, plan_ratelimit, plan_redirect
from kata_top.model import Direction

How = Literal["finish", "rollback"]


def find_intent(audit_path: str | None, id_prefix: str) -> dict[str, Any]:
    left = unfinished(audit_path)
    hits = [e for e in left if str(e.get("id", "")).startswith(id_prefix)] if id_prefix else []
    if len(hits) != 1:
        known = ", ".join(str(e.get("id", ""))[:12] for e in left) or "none"
        raise ActionError(f"{'no' if not hits else 'more than one'} unfinished change "
                          f"matches {id_prefix!r} (unfinished: {known})")
    return hits[0]


def _directions(request: dict[str, Any]) -> list[Direction]:
    if request.get("kind") == "ratelimit":
        rates = request.get("rates")
        return [d for d in ("in", "out") if isinstance(rates, dict) and d in rates]
    return [d for d in ("in", "out") if request.get("direction") in ("both", d)]


def plan_resume(run_root: str, intent: dict[str, Any], how: How) -> Plan:
    plan = _replay(run_root, intent, how)
    plan.run_root = run_root  # its audit lines name the root, as the change's own did
    return plan


def _replay(run_root: str, intent: dict[str, Any], how: How) -> Plan:
    request = intent.get("request")
    if not isinstance(request, dict) or request.get("kind") not in ("redirect", "ratelimit"):
        raise ActionError("this intent records no request kata-top can replay; compare its "
                          "plan with the node by hand")
    sb = find_sandbox(run_root, str(intent.get("sandbox") or ""))
    raw_before = intent.get("before")
    before: dict[str, Any] = raw_before if isinstance(raw_before, dict) else {}
    dirs = _directions(request)
    if request["kind"] == "redirect":
        op = str(request.get("op"))
        if how == "rollback":
            was = before.get("redirects") or {}
            # put back what was there: the directions whose state the change would flip
            dirs = [d for d in dirs if bool((was.get(d) or {}).get("present")) != (op == "add")]
            op = "remove" if op == "add" else "add"
        direction = "both" if len(dirs) == 2 else (dirs[0] if dirs else "both")
        if not dirs:
            plan = plan_redirect(sb, op, "both")
            plan.steps.clear()
            plan.noop = "nothing to roll back: the change touched nothing"
            return plan
        return plan_redirect(sb, op, direction)
    rates_doc = request.get("rates") or {}
    rates: dict[Direction, int | None] = {}
    for d in dirs:
        if how == "finish":
            raw = rates_doc.get(d)
        else:
            raw = ((before.get("rate_limits") or {}).get(d) or {}).get("rate_bps")
        rates[d] = int(raw) if isinstance(raw, int) and raw > 0 else None
    return plan_ratelimit(sb, rates)


def close_noop(audit_path: str | None, intent: dict[str, Any], how: How, why: str) -> None:
    """An outcome line for an intent that needs no change to be resolved."""
    book = AuditLog(audit_path)
    try:
        book.append({"phase": "outcome", "id": intent.get("id"),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "sandbox": intent.get("sandbox"), "pod": intent.get("pod"),
                     "operation": intent.get("operation"), "ok": True, "changed": False,
                     "result": f"resolved by `kata-top actions {how}`: {why}"})
    except OSError as exc:
        raise ActionError(f"the audit log {book.path} cannot be written "
                          f"({exc.strerror or exc})") from exc
    finally:
        book.close()
