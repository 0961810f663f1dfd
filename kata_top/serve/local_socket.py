"""The serve's answers for local clients, on a root-only unix socket per run root.

`kata-top snapshot`, `check` and `events --since` on the node ask here first (kata_top/warm.py
is the client and holds the wire format): the answer is the encoded bytes of the hub's last
collection, the same bytes an HTTP client of the same collection gets (hub.encoded), so a
one-shot command costs a connect and a copy instead of a cold collection. The socket is 0600
in a 0700 directory that only root can enter; nothing here changes anything, and a client that
stalls holds only its own thread, for at most CLIENT_TIMEOUT_S.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import stat
import threading
import time
from typing import Any

from kata_top.model import Snapshot
from kata_top.serve.hub import SnapshotHub, Unavailable
from kata_top.warm import WANTS, read_line, run_root_key, socket_dir, socket_path

log = logging.getLogger(__name__)

MAX_CLIENTS = 8
CLIENT_TIMEOUT_S = 5.0
MAX_WAIT_S = 1.0


class LocalSocketServer:
    def __init__(self, hub: SnapshotHub, run_roots: list[str], journal: str | None,
                 refresh_s: float) -> None:
        self.hub = hub
        self.run_roots = list(dict.fromkeys(run_root_key(r) for r in run_roots))
        self.journal = os.path.realpath(journal) if journal else None
        self.refresh_s = refresh_s
        self.paths: list[str] = []
        self._listeners: list[tuple[socket.socket, str, int]] = []
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stopping = False

    # -- the socket files --------------------------------------------------------------

    def start(self) -> list[str]:
        """Listen on the socket of each run root; returns the paths, logs why not."""
        for root in self.run_roots:
            path = socket_path(root)
            try:
                sock = self._bind(path)
            except OSError as exc:
                log.warning("no local socket at %s: %s", path, exc.strerror or exc)
                continue
            self._listeners.append((sock, path, os.lstat(path).st_ino))
            self.paths.append(path)
            threading.Thread(target=self._accept, args=(sock, root), daemon=True,
                             name="kata-top-local").start()
        return self.paths

    def _bind(self, path: str) -> socket.socket:
        directory = os.path.dirname(path)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        st = os.lstat(directory)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise OSError(errno.EPERM, f"{directory} is not a directory of this user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(directory, 0o700)  # kubelet's DirectoryOrCreate makes it 0755
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, "something that is not a socket is there; "
                                            "left alone")
            if self._alive(path):
                raise OSError(errno.EADDRINUSE, "another serve of this run root answers there")
            os.unlink(path)  # the socket of a serve that is gone
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600 from the moment it exists
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(16)
        return sock

    @staticmethod
    def _alive(path: str) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(0.5)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def stop(self) -> None:
        self._stopping = True
        for sock, path, ino in self._listeners:
            try:
                if os.lstat(path).st_ino == ino:  # still ours: not a newer serve's
                    os.unlink(path)
            except OSError:
                pass
            sock.close()
        self._listeners = []

    # -- clients -----------------------------------------------------------------------

    def _accept(self, sock: socket.socket, root: str) -> None:
        while not self._stopping:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed by stop()
            if not self._slots.acquire(blocking=False):
                conn.close()  # the client collects itself
                continue
            try:
                threading.Thread(target=self._serve_one, args=(conn, root), daemon=True,
                                 name="kata-top-local-client").start()
            except RuntimeError:  # no thread to be had: this client reads cold
                conn.close()
                self._slots.release()

    def _serve_one(self, conn: socket.socket, root: str) -> None:
        try:
            conn.settimeout(CLIENT_TIMEOUT_S)
            header, body = self.answer(self._request(conn), root)
            conn.sendall(json.dumps(header).encode() + b"\n")
            conn.sendall(body)  # the cached bytes themselves, not a copy joined to the header
        except (OSError, ValueError) as exc:  # gone, stalled or nonsense: its own business
            log.debug("local client: %s", exc)
        except Exception:  # never a traceback on the serve's stderr; the client reads cold
            log.exception("answering a local client failed")
        finally:
            conn.close()
            self._slots.release()

    @staticmethod
    def _request(conn: socket.socket) -> dict[str, Any]:
        line, _ = read_line(conn, time.monotonic() + CLIENT_TIMEOUT_S, ValueError)
        req = json.loads(line)
        if not isinstance(req, dict):
            raise ValueError("request is not an object")
        return req

    def answer(self, req: dict[str, Any], root: str) -> tuple[dict[str, Any], bytes]:
        """(header, body) for one request: untrusted input, every field checked."""
        base: dict[str, Any] = {"v": 1, "run_root": root, "refresh_s": self.refresh_s}
        want, sandbox = req.get("want"), req.get("sandbox")
        max_age, since = req.get("max_age"), req.get("since")
        wait: Any = req.get("wait")
        if req.get("v") != 1 or want not in WANTS or not _valid(sandbox, since, max_age, wait):
            return {**base, "ok": False, "why": "bad request"}, b""
        if req.get("run_root") != root:
            return {**base, "ok": False, "why": f"this serve reads {root}"}, b""
        limit = float(max_age) if max_age is not None else self.refresh_s
        snap, age = self.hub.latest()
        if want == "events":  # what the serve saw, whatever the age of its last snapshot
            covers = self._covers_from()
            if since is None or since < covers:
                return {**base, "ok": False, "why": "the journal reaches further back"}, b""
            body = self._events(since, sandbox)
            return {**base, "ok": True, "journal": self.journal, "covers_from": covers,
                    "taken_at": snap.taken_at if snap else None,
                    "age_s": age if snap else 0.0, "length": len(body)}, body
        if age > limit and wait > 0:
            # collect once, as a scrape would (never more often than --min-interval)
            with contextlib.suppress(Unavailable):
                self.hub.get(min(float(wait), MAX_WAIT_S), paced=False)
            snap, age = self.hub.latest()
        if snap is None:
            return {**base, "ok": False, "why": "no collection yet"}, b""
        if age > limit:
            return {**base, "ok": False, "age_s": age,
                    "why": f"stale: collected {age:.2f} s ago, more than {limit:g} s"}, b""
        if want == "check" and self.hub.stats().collections < 2 and wait > 0:
            self.hub.again(min(float(wait), MAX_WAIT_S))
            snap, age = self.hub.latest()
        if snap is None:
            return {**base, "ok": False, "why": "no collection"}, b""
        if want == "check" and self.hub.stats().collections < 2:
            return {**base, "ok": False, "why": "no rates yet (one collection)"}, b""
        from kata_top.select import SelectError

        try:
            body = self._body(snap, want, sandbox)
        except SelectError as exc:
            return {**base, "ok": False, "why": str(exc)}, b""
        return {**base, "ok": True, "taken_at": snap.taken_at, "age_s": age,
                "length": len(body)}, body

    def _covers_from(self) -> float:
        history = getattr(self.hub.source, "history", None)
        start = self.hub.started_at
        if history is not None and history.maxlen and len(history) >= history.maxlen:
            start = max(start, float(history[0].at))  # older ones fell out of memory
        return start

    def _body(self, snap: Snapshot, want: str, sandbox: str | None) -> bytes:
        if sandbox is None:  # the HTTP route's bytes when they are the same document
            if want == "json":
                return self.hub.encoded.get(snap, ("json", "snapshot", False),
                                            lambda: encode_whole(snap, "snapshot", False))
            return self.hub.encoded.get(snap, ("local", want), lambda: _encode(snap, want))
        from kata_top.cli.common import narrow

        return _encode(narrow(snap, sandbox), want)

    def _events(self, since: float | None, sandbox: str | None) -> bytes:
        from kata_top.events.journal import event_line
        from kata_top.events.query import event_matches

        lines = []
        for e in list(getattr(self.hub.source, "history", ())):
            line = event_line(e)
            if event_matches(json.loads(line), since, sandbox):
                lines.append(line + "\n")
        return "".join(lines).encode()


def _number(x: Any) -> bool:
    """A finite JSON number (a bool is not one, nor NaN or infinity)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _valid(sandbox: Any, since: Any, max_age: Any, wait: Any) -> bool:
    return (sandbox is None or (isinstance(sandbox, str) and 0 < len(sandbox) < 300)) and \
        (since is None or _number(since)) and \
        (max_age is None or (_number(max_age) and max_age >= 0)) and \
        _number(wait)


def encode_whole(snap: Snapshot, route: str, redact: bool) -> bytes:
    """The whole node's /api/v1/snapshot or /check JSON (command lines left out if asked)."""
    if redact:
        from kata_top.serve.redact import without_cmdlines

        snap = without_cmdlines(snap)
    if route == "check":
        from kata_top.cli.check import check_document

        return json.dumps(check_document(snap)).encode()
    from kata_top.formats.jsonout import encode

    return encode(snap)


def _encode(snap: Snapshot, want: str) -> bytes:
    if want == "json":
        return encode_whole(snap, "snapshot", False)
    if want == "prometheus":
        from kata_top.formats import prometheus

        return prometheus.render(snap).encode()
    if want == "text":
        from kata_top.formats import textout

        return textout.render(snap).encode()
    from kata_top.cli.check import check_document
    from kata_top.diagnose import render_findings, worst

    findings = list(snap.host_findings) + [f for sb in snap.sandboxes for f in sb.findings]
    return json.dumps({"doc": check_document(snap), "text": render_findings(snap, findings),
                       "worst": worst(findings)}).encode()


def listen_locally(hub: SnapshotHub, run_roots: list[str], journal: str | None,
                   refresh_s: float) -> LocalSocketServer:
    """Start the local socket(s) of a serve; says on stderr where (or why not)."""
    import sys

    server = LocalSocketServer(hub, run_roots, journal, refresh_s)
    paths = server.start()
    if paths:
        print(f"kata-top serve: local clients ask {', '.join(paths)}", file=sys.stderr,
              flush=True)
    else:
        print(f"kata-top serve: no local socket under {socket_dir()} (see the log); "
              "one-shot commands here collect themselves", file=sys.stderr, flush=True)
    return server
