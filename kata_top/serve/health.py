"""/healthz's second question: can this process read what it exports?

A collection that succeeds can still have read nothing: an exporter run without root finds
every sandbox's 0600 state file unreadable and exports them all as `corrupt`, and one whose
run root cannot be listed exports no sandbox at all. Either way its /metrics are not the node,
so /healthz says so (503): the DaemonSet's probes take it out of service, and the operator
reads the reason. State files that were read but are all garbage are the node's truth, not the
exporter's fault: exported as `corrupt` (and found by `check`) with /healthz 200, so a probe
does not restart an exporter that a restart cannot help.
"""

from __future__ import annotations

import os

from kata_top.model import Snapshot


def unreadable(snap: Snapshot, run_root: str) -> str | None:
    """Why the exporter cannot read the node, or None when it can."""
    trees = {os.path.normpath(os.path.join(run_root, *p)) for p in (("vc", "sbs"), ("kata",))}
    for err in snap.errors:
        if os.path.normpath(err.where) in trees:
            return f"cannot read the run root: {err.message}"
    if not os.access(run_root, os.R_OK | os.X_OK):
        return f"cannot read the run root {run_root} (permission denied)"
    if snap.sandboxes and all(sb.state == "corrupt" and any(
            "permission denied" in e.message.lower() for e in sb.errors)
            for sb in snap.sandboxes):
        first = next(e.message for e in snap.sandboxes[0].errors
                     if "permission denied" in e.message.lower())
        return (f"none of the {len(snap.sandboxes)} sandboxes' state could be read "
                f"(first: {first}); is the exporter running as root?")
    return None
