"""Resolve what an operator typed (id, unique id prefix, or namespace/pod) to one sandbox."""

from __future__ import annotations

from collections.abc import Sequence

from kata_top.model import Sandbox


class SelectError(ValueError):
    pass


def label(sb: Sandbox) -> str:
    if sb.pod.name:
        return f"{sb.pod.namespace or '-'}/{sb.pod.name}"
    return sb.id[:12]


def resolve(sandboxes: Sequence[Sandbox], query: str) -> Sandbox:
    q = query.strip()
    if not q:
        raise SelectError("empty sandbox name")
    if "/" in q:
        ns, _, name = q.partition("/")
        hits = [sb for sb in sandboxes if sb.pod.name == name and (sb.pod.namespace or "") == ns]
    else:
        hits = [sb for sb in sandboxes if sb.id == q]
        if not hits:
            hits = [sb for sb in sandboxes if sb.id.startswith(q.lower())]
        if not hits:
            hits = [sb for sb in sandboxes if sb.pod.name == q]
    if not hits:
        raise SelectError(f"no sandbox matches {q!r} (give an id, a unique id prefix, or "
                          "namespace/pod)")
    if len(hits) > 1:
        names = ", ".join(f"{label(sb)} ({sb.id[:12]})" for sb in hits[:5])
        raise SelectError(f"{q!r} is ambiguous: it matches {len(hits)} sandboxes: {names}")
    return hits[0]
