"""Room for one open netlink socket per sandbox namespace.

The engine keeps a socket per namespace between cycles (collectors/netcollect.py), so a node
with 1,000 sandboxes needs over 1,000 descriptors — beyond the soft limit of 1,024 that a
login shell or a systemd unit starts with on most distributions, while the hard limit is far
higher. Raising our own soft limit up to the hard one changes nothing outside this process
(Go's runtime does the same at start); without it, the sandboxes past the limit would each
show "Too many open files".
"""

from __future__ import annotations

# descriptors beyond the namespaces: the candidates' fds, state files, /proc reads, QMP,
# the terminal, an HTTP server's connections
MARGIN = 256


def ensure_room(sockets: int) -> tuple[int, int]:
    """Raise the soft limit on open files to fit `sockets` more than MARGIN, up to the hard
    limit; (soft limit now, descriptors wanted). The caller warns when soft < wanted."""
    import resource  # only on the first large node: one-shot reads of small ones never pay it

    wanted = sockets + MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # twice what is needed now: a node that grows does not ask again at every pod
        new = 2 * wanted if hard == resource.RLIM_INFINITY else min(hard, 2 * wanted)
        if new > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    return soft, wanted
