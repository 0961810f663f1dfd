"""Who may read the exporter: the exporter-toolkit web config (hypothesis for the parser, an
untrusted file), TLS and basic auth on a real `kata-top serve`, client certificates, and
command lines left out of /api/v1/snapshot."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
from typing import Any

import bcrypt
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kata_top.formats.recording import load_recording
from kata_top.model import ProcInfo, Snapshot, evolve
from kata_top.serve.auth import BasicAuth
from kata_top.serve.hub import SnapshotHub
from kata_top.serve.redact import without_cmdlines
from kata_top.serve.server import ExporterServer, Handler
from kata_top.serve.webconfig import WebConfig, WebConfigError, parse
from kata_top.sources.base import Source
from tests.serve_helpers import ROOT, http_get, make_certs, serving, stop

PASSWORD = "correct horse"
SECRET_ARG = "-object secret,id=sec0,data=hunter2"


def _hash(password: str) -> str:
    # $2y$ as htpasswd -B writes it; cost 4 keeps the test fast (production files use 10+)
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()[4:]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
            .decode()}


# ---- the web config file (untrusted input) -----------------------------------------------
_KEYS = st.sampled_from(["tls_server_config", "basic_auth_users", "http_server_config",
                         "rate_limit", "cert_file", "key_file", "client_auth_type",
                         "client_ca_file", "min_version", "max_version", "headers", "http2",
                         "alice", "X-Frame-Options", "cipher_suites"])
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=70),
                    st.sampled_from(["TLS12", "TLS13", "TLS10", "NoClientCert",
                                     "RequireAndVerifyClientCert", "server.crt", "deny",
                                     _hash("x")]))
_DOCS = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_one_clean_error(raw: bytes) -> None:
    try:
        cfg = parse(raw, "/etc/kata-top")
    except WebConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(cfg, WebConfig)


@given(_DOCS)
def test_any_yaml_shape_parses_or_is_one_clean_error(doc: Any) -> None:
    try:
        cfg = parse(yaml.safe_dump(doc), "/etc/kata-top")
    except WebConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        # whatever was accepted is what the exporter enforces, nothing half-read
        assert cfg.auth_required == (bool(cfg.users) or (
            cfg.tls is not None and cfg.tls.client_auth_type == "RequireAndVerifyClientCert"))
        for h in cfg.users.values():
            assert h.startswith((b"$2a$", b"$2b$", b"$2y$")) and len(h) == 60


def test_web_config_forms() -> None:
    cfg = parse(f"tls_server_config:\n  cert_file: s.crt\n  key_file: /k/s.key\n"
                f"basic_auth_users:\n  alice: '{_hash('pw')}'\n", "/etc/kt")
    assert cfg.tls is not None and cfg.tls.cert_file == "/etc/kt/s.crt"
    assert cfg.tls.key_file == "/k/s.key" and cfg.auth_required
    assert parse("", "/") == WebConfig() and not WebConfig().auth_required
    mtls = parse("tls_server_config: {cert_file: a, key_file: b, client_ca_file: ca}", "/")
    assert mtls.auth_required  # a client CA alone means certificates are required
    for bad, words in (
            ("basic_auth_user:\n  alice: x", "unknown key"),  # a typo never opens the door
            ("basic_auth_users:\n  alice: plaintext", "not a bcrypt hash"),
            ("tls_server_config: {cert_file: a}", "both cert_file and key_file"),
            ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: "
             "RequireAnyClientCert, client_ca_file: c}", "client_auth_type"),
            ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS13, "
             "max_version: TLS12}", "min_version"),
            ("tls_server_config: {cert_file: a, key_file: b, client_allowed_sans: [x]}",
             "not supported"),
            ("rate_limit: {burst: 1}", "not supported"),
            ("[1, 2]", "mapping"), ("a: [", "YAML"), ("x: &a [*a]", "unknown key"),
            ("a: " + "[" * 3000 + "]" * 3000, "YAML|unknown key")):
        with pytest.raises(WebConfigError, match=words):
            parse(bad, "/")


def test_basic_auth_remembers_only_a_password_that_matched() -> None:
    auth = BasicAuth({"alice": _hash(PASSWORD).encode()})
    assert auth.check(_basic("alice", PASSWORD)["Authorization"]) == "alice"
    assert auth.check(_basic("alice", PASSWORD)["Authorization"]) == "alice"  # remembered
    for header in (None, "", "Basic", "Bearer abc", "Basic !!!", _basic("alice", "x")[
            "Authorization"], _basic("mallory", PASSWORD)["Authorization"],
            "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + "A" * 5000):
        assert auth.check(header) is None, header


_AUTH = BasicAuth({"alice": _hash(PASSWORD).encode()})


@given(st.one_of(st.text(max_size=80).map(lambda t: "Basic " + t),
                 st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
                 st.text(max_size=80)))
def test_any_authorization_header_is_a_user_or_none(header: str) -> None:
    """The header is the client's (http.server hands it over as latin-1): whatever it holds,
    an answer, never an exception that leaves the request unanswered."""
    assert _AUTH.check(header) in (None, "alice")


# ---- TLS and basic auth on a real serve ----------------------------------------------------
def _config(tmp_path: Any, **tls: str) -> tuple[str, dict[str, str]]:
    certs = make_certs(str(tmp_path))
    doc = {"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **tls},
           "basic_auth_users": {"prometheus": _hash(PASSWORD)}}
    path = str(tmp_path / "web.yml")
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh)
    return path, certs


def test_tls_and_basic_auth_on_a_real_serve(tmp_path: Any) -> None:
    web, certs = _config(tmp_path)
    run_root = tmp_path / "root"
    (run_root / "vc" / "sbs").mkdir(parents=True)
    ctx = ssl.create_default_context(cafile=certs["ca.crt"])
    with serving(str(run_root), "--web.config.file", web) as (base, _proc):
        assert base.startswith("https://")
        for path in ("/metrics", "/api/v1/snapshot", "/api/v1/check", "/"):
            status, headers, _b = http_get(base + path, context=ctx)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic"), path
            assert http_get(base + path, context=ctx,
                            headers=_basic("prometheus", "wrong"))[0] == 401
            assert http_get(base + path, context=ctx,
                            headers=_basic("prometheus", PASSWORD))[0] == 200, path
        assert http_get(base + "/healthz", context=ctx)[0] == 200  # the kubelet's probe
        with pytest.raises(urllib.error.URLError):  # the server is not who it says
            http_get(base + "/metrics", context=ssl.create_default_context())
        with pytest.raises((ConnectionError, urllib.error.URLError)):  # no plain HTTP
            http_get("http://" + base.split("//", 1)[1] + "/metrics", timeout=5)


def test_client_certificates_when_required(tmp_path: Any) -> None:
    web, certs = _config(tmp_path, client_ca_file="ca.crt",
                         client_auth_type="RequireAndVerifyClientCert")
    run_root = tmp_path / "root"
    (run_root / "vc" / "sbs").mkdir(parents=True)
    anonymous = ssl.create_default_context(cafile=certs["ca.crt"])
    with_cert = ssl.create_default_context(cafile=certs["ca.crt"])
    with_cert.load_cert_chain(certs["client.crt"], certs["client.key"])
    auth = _basic("prometheus", PASSWORD)
    with serving(str(run_root), "--web.config.file", web) as (base, _proc):
        assert http_get(base + "/metrics", context=with_cert, headers=auth)[0] == 200
        with pytest.raises((ConnectionError, urllib.error.URLError, ssl.SSLError)):
            http_get(base + "/metrics", context=anonymous, headers=auth)


def test_a_bad_web_config_is_one_line_and_exit_2(tmp_path: Any) -> None:
    cases = {"typo.yml": "basic_auth_user: {a: b}\n",
             "missing.yml": "tls_server_config: {cert_file: nope.crt, key_file: nope.key}\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    for name in (*cases, "absent.yml"):
        out = subprocess.run([sys.executable, "-m", "kata_top", "serve", "--run-root",
                              str(tmp_path), "--listen", "127.0.0.1:0", "--web.config.file",
                              str(tmp_path / name)], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 2 and "--web.config.file" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) == 1


# ---- command lines -----------------------------------------------------------------------
DEMO, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))


def _with_cmdlines(snap: Snapshot) -> Snapshot:
    proc = ProcInfo(pid=4242, name="qemu-system-x86_64",
                    cmdline=("qemu-system-x86_64", *SECRET_ARG.split()))
    return evolve(snap, sandboxes=tuple(evolve(sb, vmm_proc=proc, shim=proc)
                                        for sb in snap.sandboxes))


class _Fixed(Source):
    kind = "live"

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def next(self) -> Snapshot:
        return self.snap


def test_command_lines_are_left_out_when_asked(tmp_path: Any) -> None:
    snap = _with_cmdlines(DEMO[-1])
    stripped = without_cmdlines(snap)
    assert all(sb.vmm_proc is not None and sb.vmm_proc.cmdline == () and sb.vmm_proc.pid == 4242
               for sb in stripped.sandboxes)
    for redact in (False, True):
        hub = SnapshotHub(lambda: _Fixed(snap), str(tmp_path))
        hub.start()
        server = ExporterServer(("127.0.0.1", 0), hub, 5.0, redact_cmdlines=redact)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            status, _h, body = http_get(base + "/api/v1/snapshot")
            assert status == 200 and ("hunter2" in body.decode()) is not redact
            doc = json.loads(body)
            assert doc["sandboxes"][0]["vmm_proc"]["pid"] == 4242  # the rest is still there
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            hub.stop()


def test_serve_leaves_command_lines_out_by_default_without_auth(tmp_path: Any) -> None:
    web, _certs = _config(tmp_path)
    for argv, left_out in (((), True), (("--include-cmdlines",), False),
                           (("--web.config.file", web), False),
                           (("--web.config.file", web, "--redact-cmdlines"), True)):
        proc = subprocess.Popen([sys.executable, "-m", "kata_top", "serve", "--run-root",
                                 str(tmp_path), "--listen", "127.0.0.1:0", *argv], cwd=ROOT,
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
        finally:
            stop(proc)
            assert proc.stderr is not None
            proc.stderr.close()
        assert "listening on" in line and ("command lines left out" in line) is left_out, line


def test_garbage_state_files_are_the_nodes_truth_not_an_unhealthy_exporter(
        tmp_path: Any) -> None:
    """Every sandbox corrupt because its file is garbage (read, not refused): exported as
    such, and /healthz stays 200, so a probe does not restart what a restart cannot fix."""
    from tests.run_roots import run_root

    root = run_root(tmp_path, {f"{i:064x}": b"\x00not json" for i in range(3)})
    with serving(root, "--min-interval", "0") as (base, _proc):
        body = http_get(base + "/metrics")[2]
        assert body.count(b'state="corrupt"') >= 3
        assert http_get(base + "/healthz")[0] == 200


class _Guarded(Handler):
    """A route closed to anonymous readers, as a write or trace route would be."""

    def do_POST(self) -> None:
        if self.require_authentication():
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self._send(200, b"ran with %d bytes\n" % len(body), "text/plain")


def test_a_guarded_route_needs_authentication_configured_and_given(tmp_path: Any) -> None:
    import http.client

    users = {"ops": _hash(PASSWORD).encode()}
    for web, auth, expected in ((WebConfig(), _basic("ops", PASSWORD), 403),
                                (WebConfig(users=users), {}, 401),
                                (WebConfig(users=users), _basic("ops", "nope"), 401),
                                (WebConfig(users=users), _basic("ops", PASSWORD), 200)):
        hub = SnapshotHub(lambda: _Fixed(DEMO[-1]), str(tmp_path))
        hub.start()
        server = ExporterServer(("127.0.0.1", 0), hub, 5.0, web=web)
        assert server.auth_required is bool(web.users)
        server.handler_class = _Guarded
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
            conn.request("POST", "/api/v1/drops", body=b'{"seconds": 5}', headers=auth)
            resp = conn.getresponse()
            assert resp.status == expected, (web, auth, resp.read())
            if expected == 200:
                assert resp.read() == b"ran with 14 bytes\n"
            conn.close()
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            hub.stop()


def test_a_plain_second_socket_is_no_way_around_required_client_certificates(
        tmp_path: Any) -> None:
    """front_for answers without TLS: on a server that authenticates by client certificate
    only, a request there has proved nothing and must not reach a guarded (or any) route."""
    import socket

    from kata_top.serve.webconfig import TlsConfig

    certs = make_certs(str(tmp_path))
    web = WebConfig(tls=TlsConfig(certs["server.crt"], certs["server.key"], certs["ca.crt"],
                                  "RequireAndVerifyClientCert"))
    hub = SnapshotHub(lambda: _Fixed(DEMO[-1]), str(tmp_path))
    hub.start()
    server = ExporterServer(("127.0.0.1", 0), hub, 5.0, web=web)
    server.handler_class = _Guarded
    assert server.auth_required
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "serve.sock"))
    unix.listen()
    front = server.front_for(unix)
    thread = threading.Thread(target=front.run)
    thread.start()
    try:
        for request in (b"POST /api/v1/drops HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                        b"GET /metrics HTTP/1.1\r\n\r\n"):
            with socket.socket(socket.AF_UNIX) as c:
                c.settimeout(10)
                c.connect(str(tmp_path / "serve.sock"))
                c.sendall(request)
                out = b""
                while chunk := c.recv(4096):
                    out += chunk
            assert out.split(b" ", 2)[1] in (b"401", b"403"), (request, out[:200])
    finally:
        front.shutdown()
        front.close()
        thread.join()
        server.server_close()
        hub.stop()


def test_a_fifo_as_web_config_is_refused_without_blocking(tmp_path: Any) -> None:
    from kata_top.serve.webconfig import WebConfigError, load

    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    with pytest.raises(WebConfigError, match="not a regular file"):
        load(str(fifo))
