"""`kata-top serve`: a long-running, read-only exporter (Prometheus /metrics and JSON)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from types import FrameType

from kata_top.cli.common import (
    EXIT_OK,
    RawDescriptionHelpFormatter,
    fail,
    node_options,
)

HELP = "HTTP exporter: /metrics for Prometheus, /api/v1/snapshot, /healthz"
DEFAULT_LISTEN = "127.0.0.1:9712"
EPILOG = """\
endpoints:
  /metrics           Prometheus text (OpenMetrics when the scraper asks for it)
  /api/v1/snapshot   the kata-top/snapshot/1 JSON (?sandbox=ID|PREFIX|NS/POD)
  /api/v1/check      the kata-top/check/1 JSON
  /healthz           200 while collections succeed and can read the node; 503 with the reason

Local clients (`kata-top snapshot`, `check`, `events --since` as root on this node) ask the
serve first, on a root-only unix socket per run root under /run/kata-top, and print its last
collection when it is fresh enough (their --max-age; --fresh collects anyway).

One collection per request, but never more often than --min-interval: concurrent scrapers share
one collection and a slow collection never stacks. Read-only: no route changes anything.

Who may read: --web.config.file takes the Prometheus exporter-toolkit file (what node_exporter
reads): tls_server_config (cert_file, key_file, client_ca_file, client_auth_type) and
basic_auth_users (bcrypt hashes). Every path but /healthz then asks for them. Command lines
are left out of /api/v1/snapshot unless authentication is configured or --include-cmdlines.

examples:
  kata-top serve                                   # 127.0.0.1:9712, run root /run
  kata-top serve --listen 10.0.0.5:9712 --web.config.file /etc/kata-top/web.yml
  kata-top serve --run-root /run/kata-top-lab --listen 127.0.0.1:0   # the lab, any free port
"""

log = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); ValueError with what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen takes HOST:PORT (e.g. {DEFAULT_LISTEN}), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"--listen: port must be 0-65535, got {port_text!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"--listen: {host!r} is not an IP address (or localhost)") \
                from None
    return ("127.0.0.1" if host == "localhost" else host), int(port_text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Serve this node's Kata sandboxes to Prometheus and remote consoles."
    p.epilog = EPILOG
    p.formatter_class = RawDescriptionHelpFormatter
    node_options(p, top=False)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help=f"where to listen (default {DEFAULT_LISTEN}; port 0 picks a free one "
                        "and the log line says which)")
    p.add_argument("--min-interval", type=float, default=1.0, metavar="SECONDS",
                   help="never collect more often than this (default 1)")
    p.add_argument("--deadline", type=float, default=8.0, metavar="SECONDS",
                   help="answer 503 when no collection finished within this (default 8, under "
                        "Prometheus' 10 s scrape timeout)")
    p.add_argument("--host-run-root", metavar="PATH", default=None,
                   help="the run root as the node's own `kata-top` names it, when this serve "
                        "sees it elsewhere (a container: /run for --run-root=/host/run); its "
                        "local socket answers for both names")
    p.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                   help="TLS and basic auth, in the Prometheus exporter-toolkit format")
    cmd = p.add_mutually_exclusive_group()
    cmd.add_argument("--redact-cmdlines", dest="cmdlines", action="store_const",
                     const="redact", help="leave process command lines out of "
                     "/api/v1/snapshot (the default without authentication)")
    cmd.add_argument("--include-cmdlines", dest="cmdlines", action="store_const",
                     const="include", help="keep them even without authentication")


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(EXIT_OK)


def run(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        return fail("serve", str(exc))
    if not args.min_interval >= 0 or args.min_interval > 3600:
        return fail("serve", "--min-interval takes 0 to 3600 seconds")
    if not 0 < args.deadline <= 300:
        return fail("serve", "--deadline takes more than 0 and at most 300 seconds")
    if not os.path.isdir(args.run_root):
        return fail("serve", f"run root {args.run_root} does not exist")
    from kata_top.engine import VMM_REFRESH_S, EngineOptions
    from kata_top.serve import webconfig
    from kata_top.serve.hub import SnapshotHub
    from kata_top.serve.server import ExporterServer

    try:
        web = webconfig.load(args.web_config_file) if args.web_config_file else \
            webconfig.WebConfig()
    except webconfig.WebConfigError as exc:
        return fail("serve", f"--web.config.file: {exc}")
    # Command lines name every device, socket and path of a VM: only for those who proved
    # who they are, unless the operator says otherwise.
    redact = args.cmdlines == "redact" or (args.cmdlines is None and not web.auth_required)
    from kata_top.settings import Settings
    from kata_top.sources.live import LiveSource

    qmp_primary = args.qmp_primary if args.qmp_primary is not None else \
        Settings.load().qmp_primary
    opts = EngineOptions(run_root=args.run_root, qmp_primary=qmp_primary,
                         vmm_refresh_s=VMM_REFRESH_S)
    from kata_top.events.journal import default_journal

    journal = default_journal(args.run_root)
    hub = SnapshotHub(lambda: LiveSource(opts, journal=journal), args.run_root,
                      args.min_interval)
    try:
        server = ExporterServer((host, port), hub, args.deadline, web=web,
                                redact_cmdlines=redact)
    except webconfig.WebConfigError as exc:
        return fail("serve", f"--web.config.file: {exc}")
    except OSError as exc:
        return fail("serve", f"cannot listen on {args.listen}: {exc.strerror or exc}")
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    who = ("basic auth" if web.users else "client certificates") if web.auth_required \
        else "no authentication"
    print(f"kata-top serve: listening on {server.scheme}://{shown}:{bound_port}/metrics "
          f"(run root {args.run_root}, read-only, {who}"
          f"{', command lines left out' if redact else ''})", file=sys.stderr, flush=True)
    log.info("listening on %s:%s, run root %s", bound_host, bound_port, args.run_root)
    signal.signal(signal.SIGTERM, _stop)
    hub.start()
    from kata_top.serve.local_socket import listen_locally

    local = listen_locally(hub, [args.run_root, *filter(None, [args.host_run_root])], journal,
                           args.min_interval)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        local.stop()
        server.server_close()
        hub.stop()
        log.info("stopped")
    return EXIT_OK
