"""The warm path: one-shot commands ask a running `kata-top serve` before collecting.

`kata-top serve` (the DaemonSet) keeps a warm engine and the encoded answer of its last
collection; it listens for local clients on a root-only unix socket, one per run root
(`socket_path`). `snapshot`, `check` and `events --since` ask it first, with a short deadline,
and print its answer when it is of their run root and fresh enough (`--max-age`, default the
serve's own refresh interval); anything else (no serve, a socket refused, stale or of another
run root, a path that is not a socket or is a symlink, which is never followed, no answer in
time, `--fresh`) is a miss and the command collects itself as it would without a serve.

Wire format (kata_top/serve/local_socket.py answers it): the client sends one JSON line (the
request), the serve answers one JSON line (the header: ok, run_root, taken_at, age_s,
refresh_s, length) and `length` bytes of body. This module is on every one-shot command's
start: standard library only, nothing imported that a miss does not need.
"""

from __future__ import annotations

import os
import stat
import sys
import time

TYPE_CHECKING = False  # not `typing`'s: importing typing is ~5 ms of a warm answer
if TYPE_CHECKING:
    import _socket
    from typing import Any

SOCKET_DIR = "/run/kata-top"
CONNECT_S = 0.1  # a serve that does not accept at once is not worth waiting for
ANSWER_S = 0.3  # the header, including one collection the serve may run to be fresh enough
SERVE_WAIT_S = 0.2  # how long the serve may wait for that collection
BODY_S = 3.0  # the body once the header said it comes (megabytes over a local socket)
MAX_HEADER = 4096
MAX_BODY = 1 << 30
WANTS = ("json", "text", "prometheus", "check", "events")


def _str(text: str) -> str:
    from _json import encode_basestring_ascii

    return str(encode_basestring_ascii(text))


def _value(v: object) -> str:
    """A request's or a `served` field's value as JSON: None, a bool, a number or a string."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else "null"
    return _str(str(v))


def dumps_flat(obj: dict[str, object]) -> str:
    """A flat dict of None, numbers and strings as JSON, without importing `json` (its regular
    expressions are a tenth of a warm answer's start)."""
    return "{" + ",".join(f"{_str(k)}:{_value(v)}" for k, v in obj.items()) + "}"


class _Context:
    """What the C scanner of `json` asks of its decoder (json.decoder.JSONDecoder's)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf")}.get(name, float("nan"))


def loads(data: bytes | bytearray) -> Any:
    """JSON from the serve: the C scanner `json` itself uses, without `json`'s import."""
    try:
        from _json import make_scanner
    except ImportError:
        import json

        return json.loads(data)
    text = data.decode()
    try:
        value, end = make_scanner(_Context())(text, 0)  # type: ignore[arg-type]
    except (StopIteration, RecursionError):
        raise ValueError("not JSON") from None
    if text[end:].strip():
        raise ValueError("extra data after JSON")
    return value


class Miss(Exception):
    """The warm path cannot answer; the message says why (shown with --debug)."""


def socket_dir() -> str:
    return os.environ.get("KATA_TOP_SERVE_DIR") or SOCKET_DIR


def run_root_key(run_root: str) -> str:
    return os.path.realpath(run_root)


def socket_path(run_root: str, directory: str | None = None) -> str:
    """Where the serve of `run_root` listens: a name from the run root's real path (FNV-1a:
    no hashlib on a one-shot command's start; the answer names its run root, so a collision
    is a miss, never a wrong answer)."""
    h = 0xCBF29CE484222325
    for b in run_root_key(run_root).encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return os.path.join(directory or socket_dir(), f"serve-{h:016x}.sock")


def _private(st: os.stat_result, what: str) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise Miss(f"{what} belongs to uid {st.st_uid}, not root")
    if st.st_mode & 0o077:
        raise Miss(f"{what} is open to others (mode {stat.S_IMODE(st.st_mode):04o})")


def check_path(path: str) -> None:
    """The socket and its directory are what a serve makes: no symlink (never followed), a
    directory and a socket, root's, for no one else. Miss otherwise."""
    directory = os.path.dirname(path)
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise Miss(f"no serve: {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise Miss(f"{directory} is not a directory (a symlink is not followed)")
    _private(st, directory)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise Miss(f"no serve of this run root: {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise Miss(f"{path} is a symlink (not followed)")
    if not stat.S_ISSOCK(st.st_mode):
        raise Miss(f"{path} is not a socket")
    _private(st, path)


def read_line(sock: _socket.socket, deadline: float,
              error: type[Exception] = Miss) -> tuple[bytes, bytes]:
    """The first line (its newline dropped) and what came after it in the same reads, under
    one deadline for the whole line (a peer trickling bytes gets no longer than a silent
    one); `error` for a peer too slow, gone, or whose first MAX_HEADER bytes hold no line.
    Both ends of the local socket read their header with it."""
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise error("no whole line in time")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise error("closed before a whole line")
        buf += chunk
        if len(buf) > MAX_HEADER and b"\n" not in buf[:MAX_HEADER]:
            raise error(f"no line within {MAX_HEADER} bytes")
    line, _, rest = buf.partition(b"\n")
    return line, rest


def _read_body(sock: _socket.socket, first: bytes, length: int,
               deadline: float) -> bytearray:
    """`length` bytes, read into one buffer (a 1,000-sandbox document is 5 MB: no copies)."""
    if len(first) > length:
        raise Miss("the serve's answer is longer than it said")
    body = bytearray(length)
    view = memoryview(body)
    view[:len(first)] = first
    got = len(first)
    while got < length:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Miss("the serve's answer did not arrive in time")
        sock.settimeout(left)
        n = sock.recv_into(view[got:])
        if not n:
            raise Miss("the serve's answer was cut short")
        got += n
    return body


def ask(run_root: str, want: str, max_age: float | None, sandbox: str | None = None,
        since: float | None = None) -> tuple[dict[str, Any], bytearray, str]:
    """(header, body, socket path) of the serve's answer, or Miss with why."""
    path = socket_path(run_root)
    check_path(path)
    key = run_root_key(run_root)
    request = {"v": 1, "want": want, "run_root": key, "max_age": max_age,
               "wait": SERVE_WAIT_S, "sandbox": sandbox, "since": since}
    started = time.monotonic()
    import _socket  # the C module: `socket`'s enums cost a one-shot command's start

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_S)
        try:
            sock.connect(path)
            sock.sendall(dumps_flat(request).encode() + b"\n")
        except OSError as exc:
            raise Miss(f"{path}: {exc.strerror or exc}") from None
        try:
            line, rest = read_line(sock, started + ANSWER_S)
            header = loads(line)
        except OSError as exc:
            raise Miss(f"{path}: {exc.strerror or 'no answer in time'}") from None
        except ValueError:
            raise Miss("the serve's header is not JSON") from None
        if not isinstance(header, dict) or header.get("v") != 1:
            raise Miss("the serve speaks another version")
        if header.get("run_root") != key:
            raise Miss(f"the serve at {path} reads {header.get('run_root')!r}, not {key}")
        if not header.get("ok"):
            raise Miss(f"the serve says: {header.get('why') or 'no'}")
        age, length = header.get("age_s"), header.get("length")
        if not isinstance(age, (int, float)) or not isinstance(length, int) or \
                not 0 <= length <= MAX_BODY:
            raise Miss("the serve's header is malformed")
        limit = max_age if max_age is not None else header.get("refresh_s")
        if want != "events" and (not isinstance(limit, (int, float)) or age > limit):
            raise Miss(f"the serve's data is {age:.1f} s old (max age {limit})")
        try:
            body = _read_body(sock, rest, length, time.monotonic() + BODY_S)
        except OSError as exc:
            raise Miss(f"{path}: {exc.strerror or 'cut short'}") from None
        header["age_s"] = float(age) + (time.monotonic() - started)
        return header, body, path
    finally:
        sock.close()


# -- the commands' side ---------------------------------------------------------------------

def _max_age(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:  # nan too
        raise argparse.ArgumentTypeError("takes 0 to 86400 seconds")
    return value


def add_options(p: Any) -> None:
    """--max-age and --fresh, for the commands that take the warm path."""
    p.add_argument("--max-age", type=_max_age, metavar="SECONDS", default=None,
                   help="take a running `kata-top serve`'s last collection when it is at most "
                        "this old (default: the serve's refresh interval)")
    p.add_argument("--fresh", action="store_true",
                   help="always collect here, never ask a running `kata-top serve`")


def _attempt(cmd: str, args: Any, want: str, sandbox: str | None = None,
             since: float | None = None) -> tuple[dict[str, Any], bytearray, str] | None:
    if getattr(args, "fresh", False):
        return None
    try:
        return ask(args.run_root, want, getattr(args, "max_age", None), sandbox, since)
    except Miss as exc:
        if getattr(args, "debug", False):
            print(f"kata-top {cmd}: collecting here: {exc}", file=sys.stderr)
        return None


def _unreadable(cmd: str, args: Any) -> None:
    """A serve's answer that is not what this version reads (another version's serve): the
    command collects itself, as on any other miss, never a traceback."""
    if getattr(args, "debug", False):
        print(f"kata-top {cmd}: collecting here: the serve's answer is not readable",
              file=sys.stderr)


def served(header: dict[str, Any], path: str) -> dict[str, Any]:
    """The document's `served` field: where a warm answer came from and how old it is."""
    return {"by": "kata-top serve", "socket": path, "age_s": round(header["age_s"], 3),
            "taken_at": header.get("taken_at")}


def _say(cmd: str, header: dict[str, Any], path: str) -> None:
    print(f"kata-top {cmd}: from kata-top serve ({path}), collected "
          f"{header['age_s']:.1f} s ago; --fresh collects here", file=sys.stderr)


def served_parts(body: bytes | bytearray,
                 field: dict[str, Any]) -> list[bytes | bytearray | memoryview]:
    """The JSON object `body` with `served` added last, as parts to write one after the
    other: the document is not decoded, nor copied."""
    end = len(body)
    while end and body[end - 1] in b" \t\r\n":
        end -= 1
    if not end or body[end - 1] != ord("}"):
        raise ValueError("not a JSON object")
    return [memoryview(body)[:end - 1], b',"served":' + dumps_flat(field).encode() + b"}"]


def with_served(body: bytes | bytearray, field: dict[str, Any]) -> bytes:
    return b"".join(served_parts(body, field))


def snapshot(args: Any) -> int | None:
    """`kata-top snapshot` from the warm path: its exit code, or None to collect here."""
    if args.watch is not None:
        return None
    want = "prometheus" if args.prometheus else "json" if args.json else "text"
    got = _attempt("snapshot", args, want, sandbox=args.sandbox)
    if got is None:
        return None
    header, body, path = got
    field = served(header, path)
    parts: list[bytes | bytearray | memoryview]
    try:
        if want == "json":
            if not args.output and sys.stdout.isatty():
                import json

                doc = json.loads(body)
                doc["served"] = field
                parts = [(json.dumps(doc, indent=2) + "\n").encode()]
            else:
                parts = [*served_parts(body, field), b"\n"]
        elif want == "prometheus":
            parts = [(f"# kata-top: served by kata-top serve ({path}), collected "
                      f"{field['age_s']} s before this was written\n").encode(), body]
        else:
            from kata_top.formats.terminal import for_terminal

            parts = [(for_terminal(body.decode()) + "\n").encode()]
    except (ValueError, TypeError):  # UnicodeDecodeError and JSON's errors are ValueErrors
        _unreadable("snapshot", args)
        return None
    if args.output:
        from kata_top.fsutil import write_atomically

        try:
            write_atomically(args.output, b"".join(parts).decode())
        except OSError as exc:
            from kata_top.cli.common import fail

            return fail("snapshot", f"cannot write {args.output}: {exc.strerror or exc}")
    else:
        sys.stdout.flush()
        for part in parts:
            sys.stdout.buffer.write(part)
        sys.stdout.flush()
    _say("snapshot", header, path)
    return 0 if os.geteuid() == 0 else 3


def check(args: Any) -> int | None:
    """`kata-top check` from the warm path: its exit code, or None to collect here."""
    got = _attempt("check", args, "check", sandbox=args.sandbox)
    if got is None:
        return None
    header, body, path = got
    import json

    try:
        answer = json.loads(body)
        doc, text, worst = dict(answer["doc"]), str(answer["text"]), answer.get("worst")
    except (ValueError, TypeError, KeyError, AttributeError):
        _unreadable("check", args)
        return None
    if args.json:
        doc["served"] = served(header, path)
        print(json.dumps(doc, indent=2))
    else:
        from kata_top.formats.terminal import for_terminal

        print(for_terminal(text))
    sys.stdout.flush()
    _say("check", header, path)
    return 1 if worst in ("warning", "critical") else 0


def events(args: Any, since: float | None, journal: str) -> list[dict[str, Any]] | None:
    """`kata-top events --since` from the serve's memory: the journal's documents it would
    have printed, or None to read the journal (the serve keeps less than `since` asks, or
    writes another journal)."""
    if since is None or args.follow:
        return None
    got = _attempt("events", args, "events", sandbox=args.sandbox, since=since)
    if got is None:
        return None
    header, body, path = got
    if header.get("journal") != os.path.realpath(journal):
        if getattr(args, "debug", False):
            print(f"kata-top events: reading the journal: the serve writes "
                  f"{header.get('journal')}", file=sys.stderr)
        return None
    try:
        docs = [loads(line) for line in body.splitlines() if line.strip()]
    except ValueError:  # not UTF-8 or not JSON
        _unreadable("events", args)
        return None
    if not all(isinstance(d, dict) for d in docs):
        _unreadable("events", args)
        return None
    _say("events", header, path)
    return docs
