"""Writing files so that readers never see half of one."""

from __future__ import annotations

import contextlib
import os


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename.

    A reader (a scraper, a textfile collector, a second kata-top) sees the old file or the
    new one, never half; the temporary file is removed on any failure, Ctrl-C included."""
    import tempfile  # here: a one-shot command that writes nothing does not pay its import

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".kata-top-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
