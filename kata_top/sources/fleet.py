"""Where the fleet console's snapshots come from: Prometheus, one round of queries each."""

from __future__ import annotations

from kata_top.fleet.model import FleetSnapshot
from kata_top.fleet.promql import PrometheusClient, PrometheusError
from kata_top.fleet.query import collect
from kata_top.sources.base import SourceError


class FleetSource:
    """`next()` asks Prometheus (PrometheusError with the reason when it cannot); nodes'
    `serve` URLs come from the scrape targets' `instance` labels."""

    read_only = True

    def __init__(self, client: PrometheusClient, job: str = "kata-top") -> None:
        self.client = client
        self.job = job
        self.serve_urls: dict[str, str] = {}

    def next(self) -> FleetSnapshot:
        """SourceError with the reason when Prometheus cannot answer."""
        try:
            snap = collect(self.client, self.job)
        except PrometheusError as exc:
            raise SourceError(str(exc)) from exc
        self.serve_urls = dict(snap.serve_urls)
        return snap
