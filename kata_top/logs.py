"""Standard-library logging to a file an operator can attach to a bug report.

Default file: `kata-top.log` under `$XDG_STATE_HOME/kata-top` (or /var/log/kata-top as root);
`--log-file` chooses another, `--debug` logs at debug level. Logging never breaks the tool: an
unwritable log file means no log file, and one line on stderr saying so.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 5 * 1024 * 1024


def default_log_path() -> str:
    if os.geteuid() == 0:
        return "/var/log/kata-top/kata-top.log"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "kata-top", "kata-top.log")


DEBUG = 10  # logging.DEBUG, without importing logging

_pending: tuple[str | None, bool] | None = None


def setup_logging(path: str | None = None, debug: bool = False,
                  defer: bool = False) -> str | None:
    """Log to `path` (default: default_log_path()); returns the file used, or None.

    defer: when neither a file nor debug is asked for and nothing has imported `logging`
    yet, set up only when something first logs through `get_logger` (or calls `ensure`):
    importing `logging` and what it imports is a large share of a one-shot command's start,
    and most runs log nothing."""
    global _pending
    if defer and path is None and not debug and "logging" not in sys.modules:
        _pending = (path, debug)
        return default_log_path()
    _pending = None
    return _setup(path, debug)


def ensure() -> None:
    """Carry out a deferred setup_logging now (before a library that logs is used)."""
    global _pending
    if _pending is not None:
        args, _pending = _pending, None
        _setup(*args)


class _LazyLogger:
    """A logger whose `logging` is imported, and a deferred setup carried out, when it is
    first used."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: logging.Logger | None = None

    def __getattr__(self, attr: str) -> Any:
        real = self._real
        if real is None:
            import logging

            ensure()
            real = self._real = logging.getLogger(self._name)
        return getattr(real, attr)


def get_logger(name: str) -> logging.Logger:
    """logging.getLogger(name), imported and set up when first used."""
    return cast("logging.Logger", _LazyLogger(name))


def _setup(path: str | None, debug: bool) -> str | None:
    import logging

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    target = path or default_log_path()
    if path or debug:
        # asked for explicitly: open it now, so a file that cannot be written is said at once
        handler = _open(target, say=bool(path))
        if handler is None:
            return None
    else:
        # the default log: opened by the first record (most commands log nothing)
        handler = _open(target, say=False, delay=True)
        if handler is None:
            return None
    root.handlers[:] = [handler]
    # Third-party chatter (qemu.qmp logs every failed connect) only at debug.
    for name in ("qemu", "asyncio", "pyroute2"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    return target


def _open(target: str, say: bool, delay: bool = False) -> logging.Handler | None:
    """The rotating log file; with `delay`, opened by the first record (most commands log
    nothing), and a file that cannot be opened then means no log file, silently (nobody
    asked for it)."""
    import logging
    import logging.handlers

    class _Quiet(logging.handlers.RotatingFileHandler):
        broken = False

        def emit(self, record: logging.LogRecord) -> None:
            if not self.broken:
                super().emit(record)

        def handleError(self, record: logging.LogRecord) -> None:
            # logging never breaks the tool: a log file that cannot be written is dropped
            self.broken = True
            self.close()

    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), mode=0o700, exist_ok=True)
        handler = _Quiet(target, maxBytes=MAX_BYTES, backupCount=2, encoding="utf-8",
                         errors="replace", delay=delay)
    except OSError as exc:
        if say:
            print(f"kata-top: not logging to {target}: {exc.strerror or exc}", file=sys.stderr)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler
