"""The audit log: one JSON line per applied (or failed) action, with before/after counters."""

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


def write_audit(plan: Plan, outcome: Outcome) -> None:
    after: dict[str, Any] = {}
    try:
        _path, dump = fresh_dump(plan.sandbox)
        after = counters(dump, derive.find_tap(dump.links, plan.sandbox.tap_name), "eth0")
    except ActionError:
        after = {"error": "namespace gone"}
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": os.environ.get("SUDO_USER")
        or getpass.getuser(), "sandbox": plan.sandbox.id, "pod": label(plan.sandbox),
        "operation": plan.operation, "plan": plan.commands(), "ok": outcome.ok,
        "changed": outcome.changed, "result": outcome.message, "before": plan.before,
        "after": after,
    }
    path = audit_log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
    except OSError:
        pass  # the change is done; the caller still reports it


