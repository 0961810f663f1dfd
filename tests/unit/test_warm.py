"""The warm path without a lab: a serve's local socket (real unix sockets, a real hub fed the
demo recording) answers one-shot clients with the bytes it encoded once, and every way it
cannot is a quick miss that leaves the command to collect itself: no serve, a serve of another
run root, a stale one, a socket that accepts and never answers, a path that is not a socket,
a symlink (never followed), a directory open to others."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kata_top import warm
from kata_top.formats import jsonout
from kata_top.formats.schema_gen import snapshot_schema
from kata_top.serve.encoded import PerCollection
from kata_top.serve.hub import SnapshotHub
from kata_top.serve.local_socket import LocalSocketServer
from tests.serve_helpers import ROOT, http_get, serving
from tests.unit.test_serve import DEMO, CountingSource


@pytest.fixture
def sock_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    d = tmp_path / "kt"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    monkeypatch.setenv("KATA_TOP_SERVE_DIR", str(d))
    return str(d)


@contextmanager
def local_serve(run_root: str, min_interval: float = 1.0, delay: float = 0.0
                ) -> Iterator[tuple[SnapshotHub, LocalSocketServer]]:
    source = CountingSource(delay)
    hub = SnapshotHub(lambda: source, run_root, min_interval)
    hub.start()
    local = LocalSocketServer(hub, [run_root], None, min_interval)
    try:
        assert local.start() == [warm.socket_path(run_root)]
        yield hub, local
    finally:
        local.stop()
        hub.stop()


def _miss(run_root: str, max_age: float | None = None) -> str:
    t0 = time.monotonic()
    with pytest.raises(warm.Miss) as info:
        warm.ask(run_root, "json", max_age)
    assert time.monotonic() - t0 < warm.ANSWER_S + 0.2  # a miss never costs more than that
    return str(info.value)


def test_socket_path_is_per_real_run_root(tmp_path: Any, sock_dir: str) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (tmp_path / "link").symlink_to(a)
    assert warm.socket_path(str(a)) == warm.socket_path(str(tmp_path / "link"))
    assert warm.socket_path(str(a)) != warm.socket_path(str(b))
    assert os.path.dirname(warm.socket_path(str(a))) == sock_dir


def test_encoded_once_per_collection_for_every_client() -> None:
    cache = PerCollection()
    calls: list[int] = []

    def build() -> bytes:
        calls.append(1)
        time.sleep(0.05)
        return b"body"

    one, two = DEMO[-2], DEMO[-1]
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(two, "k", build)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [b"body"] * 8 and len(calls) == 1
    # a request still holding the older collection neither gets nor evicts the newer bytes
    assert cache.get(one, "k", lambda: b"old") == b"old"
    assert cache.get(two, "k", build) == b"body" and len(calls) == 1


def test_warm_answer_is_the_encoded_document_with_where_and_age(tmp_path: Any,
                                                                sock_dir: str) -> None:
    with local_serve(str(tmp_path)) as (hub, local):
        header, body, path = warm.ask(str(tmp_path), "json", None)
        assert body == jsonout.dumps(DEMO[-1]).encode()
        assert header["run_root"] == os.path.realpath(tmp_path) and 0 <= header["age_s"] < 1
        assert path == local.paths[0]
        st = os.lstat(path)
        assert oct(st.st_mode & 0o777) == oct(0o600)
        doc = json.loads(warm.with_served(body, warm.served(header, path)))
        jsonschema.validate(doc, snapshot_schema())  # `served` is in the contract
        assert doc.pop("served")["socket"] == path
        assert doc == json.loads(body)
        warm.ask(str(tmp_path), "json", None)
        assert hub.encoded.builds == 1  # the second client got the same bytes
        header, body, _ = warm.ask(str(tmp_path), "check", None)
        assert json.loads(body)["doc"]["schema"] == "kata-top/check/1"
    assert not os.path.exists(path)  # stop() removes its own socket


def test_no_serve_is_a_miss(tmp_path: Any, sock_dir: str) -> None:
    assert "no serve of this run root" in _miss(str(tmp_path))
    os.rmdir(sock_dir)
    assert "no serve" in _miss(str(tmp_path))


def test_serve_of_another_run_root_is_a_miss(tmp_path: Any, sock_dir: str) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    with local_serve(str(other)) as (_hub, local):
        os.rename(local.paths[0], warm.socket_path(str(mine)))  # found under mine's name
        assert f"reads {str(other)!r}" in _miss(str(mine))


def test_stale_serve_is_a_miss(tmp_path: Any, sock_dir: str) -> None:
    with local_serve(str(tmp_path), min_interval=60) as (_hub, _local):
        warm.ask(str(tmp_path), "json", None)
        time.sleep(0.1)
        # the serve may not collect again for a minute: its data stays 0.1 s old
        assert "stale" in _miss(str(tmp_path), max_age=0.05)


def test_socket_that_accepts_and_never_answers_is_a_quick_miss(tmp_path: Any,
                                                              sock_dir: str) -> None:
    path = warm.socket_path(str(tmp_path))
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    os.chmod(path, 0o600)
    mute.listen(4)  # the kernel accepts; nobody ever reads or writes
    try:
        assert "in time" in _miss(str(tmp_path))
    finally:
        mute.close()


def test_refused_socket_is_a_miss(tmp_path: Any, sock_dir: str) -> None:
    path = warm.socket_path(str(tmp_path))
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.bind(path)
    os.chmod(path, 0o600)
    gone.close()  # a serve that died: its socket file is left, nothing listens
    assert "refused" in _miss(str(tmp_path)).lower()


def test_paths_that_are_not_sockets_are_left_alone(tmp_path: Any, sock_dir: str) -> None:
    path = warm.socket_path(str(tmp_path))
    os.mkfifo(path, 0o600)  # opened, it would block: never opened
    assert "not a socket" in _miss(str(tmp_path))
    os.unlink(path)
    with open(path, "w") as f:
        f.write("x")
    os.chmod(path, 0o600)
    assert "not a socket" in _miss(str(tmp_path))
    os.unlink(path)
    real = tmp_path / "real"
    real.mkdir()
    with local_serve(str(real)) as (hub, local):
        os.symlink(local.paths[0], path)
        assert "symlink" in _miss(str(tmp_path))
        assert hub.stats().collections == 0  # nobody connected through the link
    os.unlink(path)


def test_socket_directory_must_be_private(tmp_path: Any, sock_dir: str) -> None:
    with local_serve(str(tmp_path)):
        os.chmod(sock_dir, 0o755)
        assert "open to others" in _miss(str(tmp_path))
        os.chmod(sock_dir, 0o700)
        os.chmod(warm.socket_path(str(tmp_path)), 0o666)
        assert "open to others" in _miss(str(tmp_path))


def test_serve_leaves_what_is_not_its_socket(tmp_path: Any, sock_dir: str) -> None:
    path = warm.socket_path(str(tmp_path))
    with open(path, "w") as f:
        f.write("mine")
    hub = SnapshotHub(CountingSource, str(tmp_path))
    local = LocalSocketServer(hub, [str(tmp_path)], None, 1.0)
    assert local.start() == []
    local.stop()
    with open(path) as f:
        assert f.read() == "mine"


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "kata_top", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_commands_take_the_warm_path_and_fall_back(tmp_path: Any, sock_dir: str) -> None:
    root = str(tmp_path / "run")
    os.mkdir(root)
    cold = _cli("snapshot", "--run-root", root, "--json")
    assert "served" not in json.loads(cold.stdout) and "kata-top serve" not in cold.stderr
    with serving(root) as (url, _proc):
        for _ in range(20):  # the serve's first collection may outlast a client's deadline
            got = _cli("snapshot", "--run-root", root, "--json")
            doc = json.loads(got.stdout)
            if "served" in doc:
                break
        assert doc["served"]["socket"] == warm.socket_path(root), got.stderr
        assert "from kata-top serve" in got.stderr
        _s, _h, http_body = http_get(url + "/api/v1/snapshot")
        assert {k: v for k, v in doc.items() if k != "served"} == json.loads(http_body)
        fresh = _cli("snapshot", "--run-root", root, "--json", "--fresh")
        assert "served" not in json.loads(fresh.stdout)
        check = _cli("check", "--run-root", root, "--json", "--max-age", "30")
        assert json.loads(check.stdout)["served"]["by"] == "kata-top serve", check.stderr
        events = _cli("events", "--run-root", root, "--since", "0", "--json")
        assert events.returncode == 0 and events.stdout == "", events.stderr
        assert "from kata-top serve" in events.stderr and "no journal" not in events.stderr
    gone = _cli("snapshot", "--run-root", root, "--json", "--debug")
    assert "served" not in json.loads(gone.stdout) and "collecting here" in gone.stderr


def test_events_since_come_from_the_serves_memory_when_it_reaches(tmp_path: Any,
                                                                  sock_dir: str) -> None:
    from collections import deque

    from kata_top.model import Event

    journal = str(tmp_path / "events.ndjson")
    with local_serve(str(tmp_path)) as (hub, local):
        local.journal = os.path.realpath(journal)
        now = hub.started_at + 0.5
        while hub.source is None:
            time.sleep(0.01)
        source: Any = hub.source
        source.history = deque([
            Event(at=now - 0.1, kind="sandbox-appeared", severity="info", summary="web-0 came",
                  sandbox_id="a" * 64, pod="default/web-0"),
            Event(at=now, kind="sandbox-appeared", severity="info", summary="web-1 came",
                  sandbox_id="b" * 64, pod="default/web-1")], maxlen=10)
        header, body, _ = warm.ask(str(tmp_path), "events", None, since=hub.started_at)
        docs = [json.loads(line) for line in body.splitlines()]
        assert [d["summary"] for d in docs] == ["web-0 came", "web-1 came"]
        assert header["journal"] == os.path.realpath(journal)
        _h, body, _ = warm.ask(str(tmp_path), "events", None, since=hub.started_at,
                               sandbox="b")
        assert [json.loads(line)["pod"] for line in body.splitlines()] == ["default/web-1"]
        # before the serve started, only the journal knows: a miss, the journal is read
        with pytest.raises(warm.Miss, match="journal reaches further back"):
            warm.ask(str(tmp_path), "events", None, since=hub.started_at - 60)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text() |
                     st.floats(allow_nan=False, allow_infinity=False),
                     lambda kids: st.lists(kids, max_size=4) |
                     st.dictionaries(st.text(), kids, max_size=4), max_leaves=20)


@given(_JSON)
def test_header_reader_reads_what_json_writes(value: Any) -> None:
    assert warm.loads(json.dumps(value).encode()) == value


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_header_reader_takes_any_bytes_or_says_not_json(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # a UnicodeDecodeError or JSONDecodeError: a Miss
        warm.loads(data)


def test_header_reader_survives_deep_nesting() -> None:
    with pytest.raises(ValueError):
        warm.loads(b"[" * 100_000)


@given(st.dictionaries(st.text(), st.none() | st.booleans() | st.integers() | st.text() |
                       st.floats(allow_nan=False, allow_infinity=False), max_size=6))
def test_flat_writer_writes_json(value: dict[str, Any]) -> None:
    assert json.loads(warm.dumps_flat(value)) == value


def test_fast_path_takes_only_lines_it_fully_understands(tmp_path: Any) -> None:
    from kata_top.cli.fast import parse

    root = str(tmp_path)
    args = parse(["snapshot", "--json", f"--run-root={root}", "--sandbox", "web-0",
                  "--max-age", "2.5"])
    assert args is not None and args.json and args.run_root == root
    assert args.sandbox == "web-0" and args.max_age == 2.5 and not args.fresh
    args = parse(["check", "--run-root", root])
    assert args is not None and args.cmd == "check" and not args.json
    for line in (["snapshot", "--run-root", root, "--fresh"],  # the parser's path
                 ["snapshot", "--run-root", root, "--watch", "1"],
                 ["snapshot", "--run", root],  # argparse's abbreviation: its job
                 ["snapshot", "--run-root", root, "--json", "--json"],
                 ["snapshot", "--run-root", root, "--json", "--prometheus"],
                 ["snapshot", "--run-root", root, "--max-age", "-1"],
                 ["snapshot", "--run-root", root, "--max-age", "nan"],
                 ["snapshot", "--run-root", root, "--sandbox"],
                 ["snapshot", "--run-root", str(tmp_path / "missing")],
                 ["check", "--run-root", root, "--prometheus"],
                 ["snapshot", "--run-root", root, "-h"], ["events", "--since", "1m"]):
        assert parse(line) is None, line


def test_any_request_gets_an_answer_or_a_no(tmp_path: Any, sock_dir: str) -> None:
    from hypothesis import settings

    root = os.path.realpath(tmp_path)
    junk = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=400) | \
        st.lists(st.integers(), max_size=3)
    keys = st.sampled_from(["v", "want", "run_root", "max_age", "wait", "sandbox", "since"])
    with local_serve(root, min_interval=60) as (_hub, local):
        warm.ask(root, "json", None)  # one collection to answer from

        @given(st.dictionaries(keys, junk | st.sampled_from([1, root, "json", "check"])))
        @settings(max_examples=150, deadline=None)
        def one(req: dict[str, Any]) -> None:
            req.setdefault("wait", 0)  # no collection per example
            header, body = local.answer(req, root)
            assert isinstance(header["ok"], bool)
            assert header["ok"] or body == b""

        one()
        # raw nonsense on the socket, then a proper client is still answered
        for raw in (b"\xff\xfe\n", b"[1,2]\n", b"{" * 5000, b""):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(local.paths[0])
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(2)
            assert s.recv(100) == b""  # closed without an answer
            s.close()
        assert warm.ask(root, "json", None)[0]["ok"]


@contextmanager
def _answering(run_root: str, body: bytes) -> Iterator[None]:
    """A serve of `run_root` whose header is right and whose body is `body`."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(warm.socket_path(run_root))
    os.chmod(warm.socket_path(run_root), 0o600)
    listener.listen(4)
    header = {"v": 1, "ok": True, "run_root": warm.run_root_key(run_root), "taken_at": 1.0,
              "age_s": 0.0, "refresh_s": 5.0, "length": len(body),
              "journal": os.path.realpath(os.path.join(run_root, "j"))}

    def answer() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(json.dumps(header).encode() + b"\n" + body)

    threading.Thread(target=answer, daemon=True).start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()


@pytest.mark.parametrize("body", [b"\xff\xfe", b"[1]", b'{"doc": 1}', b"not json", b"{}"])
def test_an_unreadable_answer_is_a_miss_not_a_traceback(tmp_path: Any, sock_dir: str,
                                                        body: bytes) -> None:
    from argparse import Namespace

    root = str(tmp_path)
    args = Namespace(run_root=root, fresh=False, max_age=None, debug=True, sandbox=None,
                     json=True, prometheus=False, output=None, watch=None, follow=False)
    with _answering(root, body):
        assert warm.check(args) is None
        assert warm.events(args, 0.0, os.path.join(root, "j")) is None or body[:1] == b"{"
        if not body.endswith(b"}"):  # the JSON document is passed on, not decoded
            assert warm.snapshot(args) is None
        if body == b"\xff\xfe":
            args.json = False
            assert warm.snapshot(args) is None


def test_a_trickling_client_loses_its_slot_at_one_deadline(tmp_path: Any, sock_dir: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The request has one deadline, not one per read: a byte every 0.2 s is cut off."""
    from kata_top.serve import local_socket

    monkeypatch.setattr(local_socket, "CLIENT_TIMEOUT_S", 1.0)
    root = os.path.realpath(tmp_path)
    with local_serve(root, min_interval=60) as (_hub, local):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(local.paths[0])
        t0 = time.monotonic()
        closed_after = None
        try:
            for _ in range(40):  # 8 s of trickle if nobody cuts it
                s.sendall(b" ")
                time.sleep(0.2)
        except OSError:  # the serve closed the connection
            closed_after = time.monotonic() - t0
        finally:
            s.close()
        assert closed_after is not None and closed_after < 4.0


def test_non_finite_numbers_are_a_bad_request(tmp_path: Any, sock_dir: str) -> None:
    root = os.path.realpath(tmp_path)
    with local_serve(root, min_interval=60) as (_hub, local):
        for field in ("wait", "max_age", "since"):
            req: dict[str, Any] = {"v": 1, "want": "json", "run_root": root, "wait": 0,
                                   field: float("nan")}
            header, body = local.answer(req, root)
            assert (header["ok"], header.get("why"), body) == (False, "bad request", b"")
        header, _ = local.answer({"v": 1, "want": "json", "run_root": root, "wait": True}, root)
        assert header["why"] == "bad request"
