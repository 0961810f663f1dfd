"""Basic auth against the web config's bcrypt hashes, as exporter-toolkit checks it.

bcrypt at cost 10 is ~50–100 ms of CPU on purpose, and Prometheus sends the same password on
every scrape: a password that matched is remembered (by a salted SHA-256 of user and
password, never the password itself), so only a new or wrong password costs a bcrypt. An
unknown user costs one too (against a fixed hash), so the time does not say which users
exist. At most two checks run at once: a flood of wrong passwords takes two cores' worth of
workers, not all of them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading

# Any valid hash: checked for unknown users so they cost what a known one does.
_DUMMY = b"$2b$10$" + b"." * 53
MAX_REMEMBERED = 256


class BasicAuth:
    def __init__(self, users: dict[str, bytes]) -> None:
        self.users = users
        self._salt = os.urandom(16)
        self._ok: dict[bytes, None] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(2)

    def check(self, authorization: str | None) -> str | None:
        """The user an `Authorization: Basic …` header proves, or None."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or len(token) > 1024:
            return None
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True) \
                .decode("utf-8").partition(":")
        except ValueError:  # binascii.Error, UnicodeDecodeError, a token that is not ASCII
            return None
        if not sep:
            return None
        key = hashlib.sha256(self._salt + user.encode() + b"\0" + password.encode()).digest()
        with self._lock:
            if key in self._ok:
                return user
        hashed = self.users.get(user)
        import bcrypt

        with self._checks:
            try:
                ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY)
            except ValueError:
                ok = False
        if not ok or hashed is None:
            return None
        with self._lock:
            if len(self._ok) >= MAX_REMEMBERED:
                self._ok.pop(next(iter(self._ok)))
            self._ok[key] = None
        return user
