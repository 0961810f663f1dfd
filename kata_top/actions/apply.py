"""Apply a Plan all-or-nothing in the sandbox's namespace, and audit it.

Order: refuse in a read-only deployment; open the audit log (refuse if it cannot be opened);
apply the steps; on *any* interruption — a kernel error, Ctrl-C, SystemExit — undo the
finished steps in reverse; then append the outcome to the log, also after an interruption,
and re-raise the interruption once the node is back as it was.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kata_top.actions.audit import AuditLog, entry_for
from kata_top.actions.model import ActionError, Outcome, Plan, Step
from kata_top.collectors import netns
from kata_top.select import label

READ_ONLY_ENV = "KATA_TOP_READ_ONLY"
log = logging.getLogger(__name__)


def _kernel_words(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} (errno {args[0]})"
    return str(exc) or type(exc).__name__


def refuse_if_read_only() -> None:
    """A deployment (the DaemonSet's image) can forbid writes whatever the command says."""
    if os.environ.get(READ_ONLY_ENV, "") not in ("", "0"):
        raise ActionError(f"this kata-top is read-only ({READ_ONLY_ENV} is set, as in the "
                          "exporter image); run the write command from a node shell instead")


def execute(plan: Plan, fail_at: int | None = None, audit: bool = True,
            audit_path: str | None = None,
            fail_with: type[BaseException] = ActionError) -> Outcome:
    """Apply every step or none. fail_at injects `fail_with` before that step (tests)."""
    if plan.noop:
        return Outcome(True, plan.noop, False)
    refuse_if_read_only()
    book = AuditLog(audit_path) if audit else None
    try:
        outcome, interrupted = _apply(plan, fail_at, fail_with)
        if book is not None:
            try:
                book.append(entry_for(plan, outcome))
            except OSError as exc:  # the change stands; say that it went unaudited
                log.error("audit write failed: %s", exc)
                outcome = Outcome(outcome.ok, f"{outcome.message} (NOT AUDITED: writing "
                                  f"{book.path} failed: {exc.strerror or exc})", outcome.changed)
    finally:
        if book is not None:
            book.close()
    if interrupted is not None:
        raise interrupted
    return outcome


def _apply(plan: Plan, fail_at: int | None,
           fail_with: type[BaseException]) -> tuple[Outcome, BaseException | None]:
    from pyroute2 import IPRoute

    try:
        with netns.entered(plan.netns_path):
            ipr = IPRoute(ext_ack=True)  # its socket belongs to the sandbox's namespace
    except FileNotFoundError:
        return Outcome(False, f"{label(plan.sandbox)}: its namespace vanished before the "
                              "change; nothing was done", False), None
    done: list[Step] = []
    try:
        for i, step in enumerate(plan.steps):
            if fail_at is not None and i == fail_at:
                raise fail_with("injected failure")
            step.do(ipr)
            done.append(step)
    except BaseException as exc:  # errors *and* Ctrl-C/SystemExit: never leave half a change
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
        why = "interrupted" if not isinstance(exc, Exception) else _kernel_words(exc)
        msg = (f"{plan.title} failed at `{failed}`: {why}; "
               + ("the earlier steps were undone" if not undo_errors else
                  f"undo failed too: {'; '.join(undo_errors)}"))
        return Outcome(False, msg, False), None if isinstance(exc, Exception) else exc
    ipr.close()
    return Outcome(True, f"done: {plan.title} ({len(plan.steps)} steps)", True), None
