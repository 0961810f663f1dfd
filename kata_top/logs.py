"""Standard-library logging to a file an operator can attach to a bug report.

Default file: `kata-top.log` under `$XDG_STATE_HOME/kata-top` (or /var/log/kata-top as root);
`--log-file` chooses another, `--debug` logs at debug level. Logging never breaks the tool: an
unwritable log file means no log file, and one line on stderr saying so.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_BYTES = 5 * 1024 * 1024


def default_log_path() -> str:
    if os.geteuid() == 0:
        return "/var/log/kata-top/kata-top.log"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "kata-top", "kata-top.log")


def setup_logging(path: str | None = None, debug: bool = False) -> str | None:
    """Log to `path` (default: default_log_path()); returns the file used, or None."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    target = path or default_log_path()
    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), mode=0o700, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            target, maxBytes=MAX_BYTES, backupCount=2, encoding="utf-8", errors="replace")
    except OSError as exc:
        if path:  # asked for explicitly: say why there is none
            print(f"kata-top: not logging to {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root.handlers[:] = [handler]
    # Third-party chatter (qemu.qmp logs every failed connect) only at debug.
    for name in ("qemu", "asyncio", "pyroute2"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    return target
