"""A node dashboard fed by a remote `kata-top serve` (its /api/v1/snapshot), read-only."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from kata_top.formats.jsonin import RecordingError, decode
from kata_top.model import Snapshot
from kata_top.sources.base import Source, SourceError

if TYPE_CHECKING:
    from kata_top.drops.model import DropReport

MAX_BYTES = 256 << 20


class RemoteSource(Source):
    kind = "remote"
    read_only = True

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.label = self.url
        self.timeout = timeout

    def next(self) -> Snapshot:
        """The node's current snapshot; SourceError (the last good one stays on screen)."""
        try:
            with urllib.request.urlopen(self.url + "/api/v1/snapshot",
                                        timeout=self.timeout) as resp:
                body = resp.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            reason = exc.read(500).decode("utf-8", "replace").strip()
            raise SourceError(f"{self.url} answered {exc.code}: {reason}") from exc
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.url} unreachable: {getattr(exc, 'reason', exc)}") from exc
        if len(body) > MAX_BYTES:
            raise SourceError(f"{self.url} sent more than {MAX_BYTES >> 20} MiB")
        try:
            return decode(body)
        except RecordingError as exc:
            raise SourceError(f"{self.url} did not send a kata-top snapshot: {exc}") from exc

    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        """Ask the node's serve for one trace (`POST /api/v1/drops`; the node refuses unless
        its exporter has authentication, given here as the URL's user:password)."""
        from kata_top.drops.reader import report_from_dict

        parts = urllib.parse.urlsplit(self.url)
        query = {"seconds": str(seconds), **({"sandbox": sandbox_id} if sandbox_id else {})}
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + \
            (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        req = urllib.request.Request(f"{url}/api/v1/drops?{urllib.parse.urlencode(query)}",
                                     data=b"", method="POST")
        if parts.username is not None:
            cred = f"{urllib.parse.unquote(parts.username)}:" \
                   f"{urllib.parse.unquote(parts.password or '')}"
            req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
        done = threading.Event()
        if progress is not None:  # the node traces: count its seconds down from here
            tick = progress
            start = time.monotonic()

            def countdown() -> None:
                while not done.wait(0.5):
                    tick(max(0.0, seconds - (time.monotonic() - start)), float(seconds))

            threading.Thread(target=countdown, daemon=True).start()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + seconds + 30) as resp:
                body = resp.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            reason = exc.read(500).decode("utf-8", "replace").strip()
            raise SourceError(f"{parts.hostname} answered {exc.code}: {reason}") from exc
        except (OSError, ValueError) as exc:
            raise SourceError(f"{parts.hostname} unreachable: "
                              f"{getattr(exc, 'reason', exc)}") from exc
        finally:
            done.set()
        try:
            return report_from_dict(json.loads(body))
        except (ValueError, RecursionError) as exc:
            raise SourceError(f"{parts.hostname} did not send a drop report: {exc}") from exc
