"""The audit log: one JSON line per applied (or failed) action, with before/after counters.

The log is opened *before* anything changes (O_APPEND, O_NOFOLLOW, mode 0600, created in a
0700 directory): when it cannot be opened, the action is refused, so no change goes unaudited.
A symlink in place of the log is refused, never followed.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from typing import Any

from kata_top import derive
from kata_top.actions.model import ActionError, Outcome, Plan
from kata_top.actions.plan import counters, fresh_dump
from kata_top.select import label
from kata_top.settings import audit_log_path


class AuditLog:
    """An open audit log; `append` writes one entry and syncs it."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or audit_log_path()
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT |
                               os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ActionError(f"refusing to change anything: the audit log {self.path} cannot "
                              f"be opened ({exc.strerror or exc})") from exc

    def append(self, entry: dict[str, Any]) -> None:
        data = (json.dumps(entry) + "\n").encode("utf-8", errors="replace")
        os.write(self._fd, data)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def entry_for(plan: Plan, outcome: Outcome) -> dict[str, Any]:
    after: dict[str, Any]
    try:
        _path, dump = fresh_dump(plan.sandbox)
        after = counters(dump, derive.find_tap(dump.links, plan.sandbox.tap_name), "eth0")
    except ActionError:
        after = {"error": "namespace gone"}
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": os.environ.get("SUDO_USER")
        or getpass.getuser(), "sandbox": plan.sandbox.id, "pod": label(plan.sandbox),
        "operation": plan.operation, "plan": plan.commands(), "ok": outcome.ok,
        "changed": outcome.changed, "result": outcome.message, "before": plan.before,
        "after": after,
    }
