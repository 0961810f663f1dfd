"""`kata-top fleet`: every Kata node in one place, read from Prometheus (read-only).

`kata-top fleet --prometheus URL` opens the fleet console; `--json` prints one round of
queries (schema kata-top/fleet/1); `kata-top fleet check` prints what is wrong, node by node,
and exits 0 (nothing), 1 (a warning or critical finding, a lost redirect, a dead VMM, a node
whose exporter is down) or 2 (Prometheus could not be asked).
"""

from __future__ import annotations

import argparse
import json
import sys

from kata_top.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    RawDescriptionHelpFormatter,
    fail,
    log_options,
)

HELP = "every Kata node at once, from Prometheus (console, --json, check)"
EPILOG = """\
examples:
  kata-top fleet --prometheus http://prometheus:9090
  kata-top fleet check --prometheus https://prom.example:9090 --token-file /var/run/secrets/\\
kubernetes.io/serviceaccount/token --ca-file /etc/ssl/certs/prom-ca.pem
  kata-top fleet --json --prometheus http://127.0.0.1:9090 | jq '.nodes[] | select(.one_way>0)'
  kata-top fleet check --node worker-7 --prometheus http://prometheus:9090

The Prometheus URL, token file and CA bundle can be set once in the config file
(prometheus_url, prometheus_token_file, prometheus_ca_file); the token is read from its file
at every query and never printed. Nodes are told apart by the `node` label the PodMonitor in
deploy/ sets. The node list reads the sums deploy/prometheusrule.yaml records (group
kata-top.fleet); without those rules every refresh computes them, slowly on large fleets."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else None
    p.epilog = EPILOG
    p.formatter_class = RawDescriptionHelpFormatter
    log_options(p, top=False)
    p.add_argument("action", nargs="?", choices=("check",),
                   help="check: print what is wrong and exit 0/1/2")
    p.add_argument("--prometheus", metavar="URL", help="Prometheus base URL")
    p.add_argument("--token-file", metavar="FILE", help="bearer token for Prometheus")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https Prometheus")
    p.add_argument("--job", default="kata-top", help="the scrape job of kata-top serve "
                   "(default kata-top)")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="deadline of each query (default 5)")
    p.add_argument("--json", action="store_true", help="one round of queries as JSON")
    p.add_argument("--node", metavar="NODE", help="--json and check: only this node's "
                   "sandboxes (default: every node's; the node list is always whole)")
    p.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                   help="console refresh interval (default 5)")


def _client(args: argparse.Namespace) -> object:
    from kata_top.fleet.promql import PrometheusClient
    from kata_top.settings import Settings

    cfg = Settings.load()
    url = args.prometheus or cfg.prometheus_url
    if not url:
        raise ValueError("give --prometheus URL (or prometheus_url in the config file)")
    if not 0 < args.timeout <= 300:
        raise ValueError("--timeout takes more than 0 and at most 300 seconds")
    return PrometheusClient(url, token_file=args.token_file or cfg.prometheus_token_file,
                            ca_file=args.ca_file or cfg.prometheus_ca_file,
                            timeout=args.timeout)


def run(args: argparse.Namespace) -> int:
    from kata_top.fleet.promql import PrometheusClient, PrometheusError
    from kata_top.fleet.query import ALL, collect

    try:
        client = _client(args)
    except (ValueError, PrometheusError) as exc:
        return fail("fleet", str(exc))
    assert isinstance(client, PrometheusClient)
    if not args.json and args.action is None:
        from kata_top.cli.fleet_console import run_console

        code: int = run_console(client, args)
        return code
    try:
        snap = collect(client, args.job, sandboxes=args.node or ALL)
    except PrometheusError as exc:
        return fail("fleet", str(exc))
    if args.json:
        from kata_top.formats.jsonout import to_plain

        doc = to_plain(snap)
        print(json.dumps({"schema": doc.pop("schema"), **doc}, indent=2))
        return EXIT_OK
    from kata_top.fleet.report import problems, render
    from kata_top.formats.terminal import for_terminal

    print(for_terminal(render(snap)))
    return EXIT_FINDINGS if problems(snap) else EXIT_OK


def usage_error(message: str) -> int:
    print(f"kata-top fleet: {message}", file=sys.stderr)
    return EXIT_USAGE
