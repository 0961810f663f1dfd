"""Apply a Plan all-or-nothing in the sandbox's namespace, and audit it.

Order: refuse in a read-only deployment; open the audit log (refuse if it cannot be opened);
take the sandbox's lock and plan again from fresh state (a change made meanwhile, by another
kata-top, is seen: nothing twice); write and sync the intent (refuse if it cannot be
written); send every step as one netlink batch (kata_top.actions.batch: a SIGKILL leaves the
change whole or not begun); on a refused step or any interruption — Ctrl-C, SystemExit —
undo the steps that were done, as one batch; then append the outcome, also after an
interruption, and re-raise the interruption once the node is back as it was.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kata_top.actions import batch
from kata_top.actions.audit import AuditLog, entry_for, intent_for
from kata_top.actions.lock import sandbox_lock
from kata_top.actions.model import ActionError, Outcome, Plan, Step
from kata_top.actions.plan import replan
from kata_top.collectors import netns
from kata_top.select import label

READ_ONLY_ENV = "KATA_TOP_READ_ONLY"
log = logging.getLogger(__name__)
_HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


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
            fail_with: type[BaseException] = ActionError, resolves: str | None = None) -> Outcome:
    """Apply every step or none. fail_at injects `fail_with` after the first fail_at steps
    were applied (tests). `resolves`: the id of an unfinished change this one finishes or
    rolls back (`kata-top actions`)."""
    if plan.noop:
        return Outcome(True, plan.noop, False)
    refuse_if_read_only()
    book = AuditLog(audit_path) if audit else None
    try:
        if book is None:
            with _signals_held():
                outcome, interrupted = _apply(plan, fail_at, fail_with)
        else:
            with sandbox_lock(book.path, plan.sandbox.id):
                outcome, interrupted = _locked(book, plan, fail_at, fail_with, resolves)
    finally:
        if book is not None:
            book.close()
    if interrupted is not None:
        raise interrupted
    return outcome


def _locked(book: AuditLog, shown: Plan, fail_at: int | None, fail_with: type[BaseException],
            resolves: str | None) -> tuple[Outcome, BaseException | None]:
    plan = replan(shown)
    if plan.noop:  # another change got there first: nothing to do, nothing to audit
        return Outcome(True, f"{plan.noop} (already so: changed since the plan was shown)",
                       False), None
    if plan.commands() != shown.commands():
        raise ActionError(f"{label(plan.sandbox)} changed since the plan was shown; nothing "
                          "was done: run the command again to see the new plan")
    intent = intent_for(plan, resolves)
    with _signals_held():  # from the intent to the outcome: Ctrl-C leaves no intent alone
        try:
            book.append(intent)
        except OSError as exc:
            raise ActionError(f"refusing to change anything: the audit log {book.path} cannot "
                              f"be written ({exc.strerror or exc})") from exc
        outcome, interrupted = _apply(plan, fail_at, fail_with)
        try:
            book.append(entry_for(plan, outcome, intent))
        except OSError as exc:  # the intent is on disk: the next run reports it unfinished
            log.error("audit write failed: %s", exc)
            outcome = Outcome(False, f"{outcome.message}; but its outcome could not be "
                              f"written to {book.path} ({exc.strerror or exc}): `kata-top "
                              "actions` will show it as unfinished", outcome.changed)
    return outcome, interrupted


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C/SIGTERM wait from the intent's line to the outcome's: a change of one batch
    takes milliseconds, and an interruption in the middle would leave what the kernel did
    unknown and unaudited. It is raised once the outcome is on disk."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _send(path: str, steps: list[Step], undo: bool = False) -> list[batch.BatchError | None]:
    calls = [s.undo if undo else s.do for s in steps]
    messages = batch.compile_requests(calls)
    with netns.entered(path):
        return batch.send(messages)


def _apply(plan: Plan, fail_at: int | None,
           fail_with: type[BaseException]) -> tuple[Outcome, BaseException | None]:
    steps = plan.steps if fail_at is None else plan.steps[:fail_at]
    done: list[Step] = []
    try:
        try:
            results = _send(plan.netns_path, steps)
        except OSError as exc:  # before anything was sent: the namespace is gone
            if isinstance(exc, batch.BatchError):
                raise
            return Outcome(False, f"{label(plan.sandbox)}: its namespace vanished before the "
                                  f"change ({exc.strerror or exc}); nothing was done",
                           False), None
        done = [s for s, err in zip(steps, results, strict=True) if err is None]
        failed = next(((s, err) for s, err in zip(steps, results, strict=True)
                       if err is not None), None)
        if failed is not None:
            raise _StepFailed(failed[0], failed[1])
        if fail_at is not None:
            raise fail_with("injected failure")
    except BaseException as exc:  # errors *and* Ctrl-C/SystemExit: never leave half a change
        return _undo(plan, done, exc)
    return Outcome(True, f"done: {plan.title} ({len(plan.steps)} steps, one netlink batch)",
                   True), None


class _StepFailed(Exception):
    def __init__(self, step: Step, error: BaseException | None) -> None:
        super().__init__(_kernel_words(error) if error else "failed")
        self.step = step


def _undo(plan: Plan, done: list[Step],
          exc: BaseException) -> tuple[Outcome, BaseException | None]:
    undoable = [s for s in reversed(done) if s.undo is not None]
    undo_errors = []
    if undoable:
        try:
            for step, err in zip(undoable, _send(plan.netns_path, undoable, undo=True),
                                 strict=True):
                if err is not None:
                    undo_errors.append(f"{step.command}: {_kernel_words(err)}")
        except OSError as uexc:
            undo_errors.append(f"undo: {_kernel_words(uexc)}")
    if isinstance(exc, _StepFailed):
        failed = exc.step.command
    else:
        failed = plan.steps[len(done)].command if len(done) < len(plan.steps) else "?"
    why = "interrupted" if not isinstance(exc, Exception) else _kernel_words(exc)
    msg = (f"{plan.title} failed at `{failed}`: {why}; "
           + ("the earlier steps were undone" if not undo_errors else
              f"undo failed too: {'; '.join(undo_errors)}"))
    return Outcome(False, msg, False), None if isinstance(exc, Exception) else exc
