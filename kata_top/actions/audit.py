"""The audit log: JSON lines, two per change — its intent, written and synced before the first
step, and its outcome (with before/after counters) once the node is as it will stay.

The log is opened *before* anything changes (O_APPEND, O_NOFOLLOW, mode 0600, created in a
0700 directory) and the intent must reach the disk: when it cannot be opened or written (a
full or read-only filesystem), nothing is changed, so no change goes unaudited. A symlink in
place of the log is refused, never followed. An intent without an outcome is a change that
was killed mid-way (or whose outcome could not be written): `unfinished` finds them.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import time
import uuid
from typing import Any

from kata_top import derive
from kata_top.actions.model import ActionError, Outcome, Plan
from kata_top.actions.plan import counters, fresh_dump
from kata_top.requests import ActionRequest, RateLimitRequest
from kata_top.select import label
from kata_top.settings import audit_log_path

READ_BACK_BYTES = 8 << 20  # the newest part of the log is searched for unfinished changes


class AuditLog:
    """An open audit log; `append` writes one entry and syncs it (OSError when it cannot)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or audit_log_path()
        self._fd = -1
        try:
            folder = os.path.dirname(self.path) or "."
            os.makedirs(folder, mode=0o700, exist_ok=True)
            new = not os.path.lexists(self.path)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT |
                               os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            if new:  # the new log's name is on disk too, not only its lines
                dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            self.close()
            raise ActionError(f"refusing to change anything: the audit log {self.path} cannot "
                              f"be opened ({exc.strerror or exc})") from exc

    def append(self, entry: dict[str, Any]) -> None:
        import json

        data = (json.dumps(entry) + "\n").encode("utf-8", errors="replace")
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # a line cut short by an earlier failure stays its own line
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):  # leave no half entry (a full disk truncates)
                os.ftruncate(self._fd, size)
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _who() -> str:
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return str(os.geteuid())


def request_doc(request: ActionRequest | None) -> dict[str, Any] | None:
    if request is None:
        return None
    if isinstance(request, RateLimitRequest):
        return {"kind": "ratelimit", "rates": dict(request.rates)}
    return {"kind": "redirect", "op": request.op, "direction": request.direction}


def intent_for(plan: Plan, resolves: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "phase": "intent", "id": uuid.uuid4().hex, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "user": _who(), "pid": os.getpid(), "sandbox": plan.sandbox.id,
        "pod": label(plan.sandbox), "netns": plan.netns_path, "operation": plan.operation,
        "plan": plan.commands(), "request": request_doc(plan.request), "before": plan.before,
    }
    if resolves:
        entry["resolves"] = resolves
    return _with_root(entry, plan)


def _with_root(entry: dict[str, Any], plan: Plan) -> dict[str, Any]:
    # events of one run root tell only its actions (kata_top/events/audit_tail.py)
    if plan.run_root:
        entry["run_root"] = os.path.normpath(plan.run_root)
    return entry


def after_counters(plan: Plan) -> dict[str, Any]:
    try:
        _path, dump = fresh_dump(plan.sandbox)
        return counters(dump, derive.find_tap(dump.links, plan.sandbox.tap_name), "eth0")
    except ActionError:
        return {"error": "namespace gone"}


def entry_for(plan: Plan, outcome: Outcome, intent: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """The outcome line (of `intent`, when there was one)."""
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": _who(),
        "sandbox": plan.sandbox.id, "pod": label(plan.sandbox), "operation": plan.operation,
        "plan": plan.commands(), "ok": outcome.ok, "changed": outcome.changed,
        "result": outcome.message, "before": plan.before, "after": after_counters(plan),
    }
    if intent is not None:
        entry = {"phase": "outcome", "id": intent["id"], **entry}
        if "resolves" in intent:
            entry["resolves"] = intent["resolves"]
    return _with_root(entry, plan)


def read_entries(path: str | None = None) -> list[dict[str, Any]]:
    """The newest READ_BACK_BYTES of the log, as entries (damaged lines skipped); [] when
    there is no log. Not following a link, not blocking on a FIFO."""
    import stat

    from kata_top.boundedjson import loads

    path = path or audit_log_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        start = max(0, st.st_size - READ_BACK_BYTES)
        data = os.pread(fd, st.st_size - start, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    out = []
    for line in data.split(b"\n"):
        try:
            entry = loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def unfinished(path: str | None = None) -> list[dict[str, Any]]:
    """Intents without an outcome whose sandbox no process is changing right now: changes a
    kill (or a full disk) interrupted. Oldest first."""
    from kata_top.actions.lock import is_held

    path = path or audit_log_path()
    entries = read_entries(path)
    closed = {str(e.get("id")) for e in entries if e.get("phase") == "outcome"}
    closed |= {str(e.get("resolves")) for e in entries
               if e.get("phase") == "outcome" and e.get("ok") and e.get("resolves")}
    return [e for e in entries if e.get("phase") == "intent" and str(e.get("id")) not in closed
            and not is_held(path, str(e.get("sandbox") or ""))]


def unfinished_warning(path: str | None = None) -> str | None:
    """One line for an operator when the log holds unfinished changes, else None."""
    left = unfinished(path)
    if not left:
        return None
    last = left[-1]
    what = f"{last.get('operation')} on {last.get('pod') or last.get('sandbox')} " \
        f"({last.get('time')})"
    more = f" and {len(left) - 1} more" if len(left) > 1 else ""
    return (f"unfinished change in the audit log: {what}{more} was started and never "
            "finished (killed?); see `kata-top actions`, then `kata-top actions rollback ID` "
            "or `kata-top actions finish ID`")
