"""`--web.config.file`: TLS and basic auth in the Prometheus exporter-toolkit format.

The same file node_exporter and every exporter built on prometheus/exporter-toolkit read, so
a Prometheus that already scrapes those with `scheme: https`, `tls_config` and `basic_auth`
needs nothing new. The file is untrusted text (it may be a typo or a hostile mount): every
key is checked, an unknown or unsupported one is an error (a misspelt `basic_auth_users` must
not silently serve without authentication), and every failure is one `WebConfigError` line.
Relative paths are relative to the file's directory, as in exporter-toolkit.

Supported: `tls_server_config` (`cert_file`, `key_file`, `client_ca_file`,
`client_auth_type` NoClientCert / VerifyClientCertIfGiven / RequireAndVerifyClientCert,
`min_version`, `max_version`, `prefer_server_cipher_suites`), `http_server_config` (`http2`,
which HTTP/1.1 ignores, and `headers`), `basic_auth_users` (bcrypt hashes).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any

MAX_FILE_BYTES = 1 << 20
MAX_USERS = 1000
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's tls.ClientAuthType names. RequestClientCert and RequireAnyClientCert accept a
# certificate without verifying it: Python's ssl cannot, and exporter-toolkit itself calls
# them insecure.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
           "X-XSS-Protection", "Strict-Transport-Security")
_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version",
             "max_version", "prefer_server_cipher_suites"}
_UNSUPPORTED_TLS = {"cert", "key", "client_ca", "cipher_suites", "curve_preferences",
                    "client_allowed_sans"}


class WebConfigError(ValueError):
    """The web config file cannot be used; the message says where and why."""


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """What the exporter enforces. `auth_required` is the one predicate a route that must
    not be open to anyone (a write, a kernel trace) checks: true when every request proves
    who it is, by a basic-auth password or a verified client certificate."""

    tls: TlsConfig | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user → bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def auth_required(self) -> bool:
        return bool(self.users) or (
            self.tls is not None and self.tls.client_auth_type == "RequireAndVerifyClientCert")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context (files read now; WebConfigError if they do not load)."""
        if self.tls is None:
            return None
        t = self.tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[t.min_version]
        ctx.maximum_version = TLS_VERSIONS[t.max_version]
        try:
            ctx.load_cert_chain(t.cert_file, t.key_file)
            if t.client_ca_file:
                ctx.load_verify_locations(cafile=t.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config: cannot load the certificate, key or "
                                 f"client CA: {exc}") from None
        ctx.verify_mode = CLIENT_AUTH[t.client_auth_type]
        return ctx


def load(path: str) -> WebConfig:
    """Read and check `path`; WebConfigError (one line) for anything wrong."""
    import stat

    try:
        # O_NONBLOCK: a FIFO at the path must not hold serve's start; only a file is read
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WebConfigError(f"{path} is not a regular file")
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise WebConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise WebConfigError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return parse(raw, os.path.dirname(os.path.abspath(path)))


def parse(raw: bytes | str, base_dir: str) -> WebConfig:
    import yaml

    try:
        doc = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise WebConfigError(f"not valid YAML: {_one_line(exc)}") from None
    if doc is None:
        return WebConfig()  # an empty file: exporter-toolkit serves plain HTTP too
    top = _mapping(doc, "the web config")
    _only(top, {"tls_server_config", "http_server_config", "basic_auth_users"}, "",
          {"rate_limit": "rate_limit is not supported by kata-top (its server bounds "
                         "connections and shares one collection between scrapes)"})
    tls = _tls(top.get("tls_server_config"), base_dir)
    users = _users(top.get("basic_auth_users"))
    headers = _http(top.get("http_server_config"))
    return WebConfig(tls=tls, users=users, headers=headers)


def _tls(value: Any, base_dir: str) -> TlsConfig | None:
    if value is None:
        return None
    m = _mapping(value, "tls_server_config")
    _only(m, _TLS_KEYS, "tls_server_config.",
          {k: f"tls_server_config.{k} is not supported by kata-top" for k in _UNSUPPORTED_TLS})
    cert, key = _string(m, "cert_file"), _string(m, "key_file")
    if not cert or not key:
        raise WebConfigError("tls_server_config needs both cert_file and key_file")
    ca = _string(m, "client_ca_file")
    auth = _string(m, "client_auth_type") or ("RequireAndVerifyClientCert" if ca
                                               else "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(f"tls_server_config.client_auth_type {auth!r}: kata-top takes "
                             f"{', '.join(CLIENT_AUTH)}")
    if auth != "NoClientCert" and not ca:
        raise WebConfigError(f"tls_server_config.client_auth_type {auth} needs client_ca_file")
    versions = []
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        v = _string(m, name) or default
        if v not in TLS_VERSIONS:
            raise WebConfigError(f"tls_server_config.{name} {v!r}: one of "
                                 f"{', '.join(TLS_VERSIONS)}")
        versions.append(v)
    if TLS_VERSIONS[versions[0]] > TLS_VERSIONS[versions[1]]:
        raise WebConfigError("tls_server_config: min_version is above max_version")
    if not isinstance(m.get("prefer_server_cipher_suites", True), bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites: true or false")

    def path(p: str) -> str:
        return os.path.normpath(os.path.join(base_dir, p))

    return TlsConfig(cert_file=path(cert), key_file=path(key),
                     client_ca_file=path(ca) if ca else None, client_auth_type=auth,
                     min_version=versions[0], max_version=versions[1])


def _users(value: Any) -> dict[str, bytes]:
    if value is None:
        return {}
    m = _mapping(value, "basic_auth_users")
    if len(m) > MAX_USERS:
        raise WebConfigError(f"basic_auth_users: more than {MAX_USERS} users")
    users: dict[str, bytes] = {}
    for user, hashed in m.items():
        if not isinstance(user, str) or not user or ":" in user or not user.isprintable():
            raise WebConfigError(f"basic_auth_users: {_show(user)} is not a user name "
                                 "(printable, no colon)")
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise WebConfigError(f"basic_auth_users.{user}: not a bcrypt hash ($2y$10$…; "
                                 "htpasswd -nBC 10 \"\" | tr -d ':\\n' makes one)")
        users[user] = hashed.encode("ascii")
    return users


def _is_bcrypt(text: str) -> bool:
    """`$2a$`, `$2b$` or `$2y$`, a two-digit cost 04–31, then 53 characters of bcrypt's
    base64 (22 of salt, 31 of hash)."""
    alphabet = set("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    return (len(text) == 60 and text[0] == "$" and text[1:3] in ("2a", "2b", "2y")
            and text[3] == "$" and text[4:6].isdigit() and text[4:6].isascii()
            and 4 <= int(text[4:6]) <= 31 and text[6] == "$" and set(text[7:]) <= alphabet)


def _http(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    m = _mapping(value, "http_server_config")
    _only(m, {"http2", "headers"}, "http_server_config.", {})
    if not isinstance(m.get("http2", True), bool):
        raise WebConfigError("http_server_config.http2: true or false")
    headers = _mapping(m.get("headers") or {}, "http_server_config.headers")
    _only(headers, set(HEADERS), "http_server_config.headers.", {})
    out: dict[str, str] = {}
    for name, v in headers.items():
        if not isinstance(v, str) or not v.isprintable() or not v.isascii():
            raise WebConfigError(f"http_server_config.headers.{name}: a printable ASCII string")
        if v:
            out[name] = v
    return out


def _mapping(value: Any, where: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _only(m: dict[Any, Any], known: set[str], prefix: str, unsupported: dict[str, str]) -> None:
    for key in m:
        if key in unsupported:
            raise WebConfigError(unsupported[key])
        if key not in known:
            raise WebConfigError(f"unknown key {prefix}{_show(key)}")


def _string(m: dict[Any, Any], key: str) -> str | None:
    v = m.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or "\0" in v:
        raise WebConfigError(f"{key} must be a string")
    return v


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
