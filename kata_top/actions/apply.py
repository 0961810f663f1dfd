"""Apply a Plan all-or-nothing in the sandbox's namespace, then audit it."""

from __future__ import annotations

from typing import Any

from collectors import netns
from kata_top.actions.audit import write_audit
from kata_top.actions.model import ActionError, Outcome, Plan, Step
from kata_top.select import label


def _kernel_words(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} (errno {args[0]})"
    return str(exc) or type(exc).__name__


def execute(plan: Plan, fail_at: int | None = None, audit: bool = True) -> Outcome:
    """Apply every step or none. fail_at injects a failure before that step (tests)."""
    if plan.noop:
        return Outcome(True, plan.noop, False)
    from pyroute2 import IPRoute

    try:
        with netns.entered(plan.netns_path):
            ipr = IPRoute(ext_ack=True)  # its socket belongs to the sandbox's namespace
    except FileNotFoundError:
        return _finish(plan, Outcome(False, f"{label(plan.sandbox)}: its namespace vanished "
                                            "before the change; nothing was done", False),
                       audit)
    done: list[Step] = []
    try:
        for i, step in enumerate(plan.steps):
            if fail_at is not None and i == fail_at:
                raise ActionError("injected failure")
            step.do(ipr)
            done.append(step)
    except Exception as exc:  # every failure is rolled back and reported
        undo_errors = []
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                step.undo(ipr)
            except Exception as uexc:
                undo_errors.append(f"{step.command}: {_kernel_words(uexc)}")
        ipr.close()
        failed = plan.steps[len(done)].command if len(done) < len(plan.steps) else "?"
        msg = (f"{plan.title} failed at `{failed}`: {_kernel_words(exc)}; "
               + ("the earlier steps were undone" if not undo_errors else
                  f"undo failed too: {'; '.join(undo_errors)}"))
        return _finish(plan, Outcome(False, msg, False), audit)
    ipr.close()
    return _finish(plan, Outcome(True, f"done: {plan.title} ({len(plan.steps)} steps)", True),
                   audit)


def _finish(plan: Plan, outcome: Outcome, audit: bool) -> Outcome:
    if audit:
        write_audit(plan, outcome)
    return outcome

