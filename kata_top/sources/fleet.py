"""Where the fleet console's snapshots come from: Prometheus, one round of queries each."""

from __future__ import annotations

from kata_top.fleet.model import FleetSnapshot
from kata_top.fleet.promql import PrometheusClient, PrometheusError
from kata_top.fleet.query import collect
from kata_top.sources.base import SourceError


class FleetSource:
    """`next()` asks Prometheus (SourceError with the reason when it cannot) for the nodes,
    and for the sandboxes of the node in `focus` (set while a screen shows them); nodes'
    `serve` URLs come from the scrape targets' `instance` labels."""

    read_only = True

    def __init__(self, client: PrometheusClient, job: str = "kata-top") -> None:
        self.client = client
        self.job = job
        self.serve_urls: dict[str, str] = {}
        self.focus: str | None = None  # written by the UI thread, read by the worker

    def next(self) -> FleetSnapshot:
        focus = self.focus
        try:
            snap = collect(self.client, self.job, sandboxes=focus)
        except PrometheusError as exc:
            raise SourceError(str(exc)) from exc
        self.serve_urls = dict(snap.serve_urls)
        return snap
