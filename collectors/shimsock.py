"""The shim's management socket (`shim-monitor.sock`): there, and accepting a connection?

Kata's shim serves `kata-runtime exec`, `kata-runtime metrics`/kata-monitor and `kata-runtime
iptables` on `<sandbox state dir>/shim-monitor.sock` (/run/vc/sbs/<id>/ for the Go runtime,
/run/kata/<id>/ for runtime-rs). When the socket is missing, or a stale socket file from an
earlier shim of the same id is left with nothing listening (the new shim then fails with
`bind: address already in use`, kata-containers#6427), all of those break for the pod.

This module only connects and closes: it never speaks the shim's protocol, never follows a
symlink at the socket's name, and never waits (a non-blocking connect to a unix socket is
answered at once: accepted, refused, or a full backlog).
"""

from __future__ import annotations

import errno
import os
import stat

from kata_top.model import ShimMonitorState

SOCKET_NAME = "shim-monitor.sock"


def probe(path: str) -> ShimMonitorState:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if not stat.S_ISSOCK(st.st_mode):
        return "not-a-socket"  # a symlink included: never followed
    import socket  # here: findings import this module for SOCKET_NAME alone

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.setblocking(False)
        s.connect(path)
        return "listening"
    except (BlockingIOError, InterruptedError):
        return "busy"  # the listener's backlog is full: it is there, not keeping up
    except ConnectionRefusedError:
        return "refused"
    except FileNotFoundError:
        return "missing"  # gone between the look and the connect
    except PermissionError:
        return "unreadable"
    except OSError as exc:
        return "refused" if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET) \
            else "unreadable"
    finally:
        s.close()
