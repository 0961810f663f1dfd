"""Events: what changed on the node, one snapshot to the next.

`diff.py` finds them (the pipeline's last stage) with `drops.py`'s hysteresis and the audit
log's new lines (`audit_tail.py`); `journal.py` keeps them on disk; `query.py` selects what a
reader asked for (--since, a sandbox).
"""
