"""The fleet as one immutable snapshot: nodes, their sandboxes, and what could not be read."""

from __future__ import annotations

from msgspec import Struct, field

FLEET_SCHEMA = "kata-top/fleet/1"


class FleetSandbox(Struct, frozen=True):
    """A sandbox as the metrics tell it (the node's `serve` has the whole of it)."""

    node: str
    sandbox_id: str
    pod_namespace: str
    pod_name: str
    state: str
    network_model: str
    critical: int = 0
    warning: int = 0
    codes: tuple[str, ...] = ()
    in_bps: float = 0.0
    out_bps: float = 0.0
    missing_redirects: tuple[str, ...] = ()  # directions whose redirect is gone
    rate_limit_drops_ps: float = 0.0
    # packets lost on the way into or out of the VM: attempted by the redirect but not handed
    # to its target (the tap down or gone), and dropped by the tap on the way in
    redirect_failed_ps: float = 0.0
    tap_dropped_ps: float = 0.0


class FleetNode(Struct, frozen=True):
    """One node: its exporter's health and its sandboxes summed up."""

    node: str
    up: bool | None  # Prometheus' `up` for the node's kata-top target
    last_seen_age_s: float | None  # since the last snapshot Prometheus holds
    sandboxes: int = 0
    critical: int = 0
    warning: int = 0
    in_bps: float = 0.0
    out_bps: float = 0.0
    one_way: int = 0
    dead_vmms: int = 0
    rate_limit_drops_ps: float = 0.0
    redirect_failed_ps: float = 0.0  # summed over the node's sandboxes, as FleetSandbox's
    tap_dropped_ps: float = 0.0


class FleetSnapshot(Struct, frozen=True):
    """One round of queries against Prometheus."""

    taken_at: float
    prometheus: str
    nodes: tuple[FleetNode, ...]
    sandboxes: tuple[FleetSandbox, ...]
    errors: tuple[str, ...] = ()
    serve_urls: tuple[tuple[str, str], ...] = ()  # node -> its `kata-top serve`
    queries: int = 0
    duration_ms: float = 0.0
    # Whose sandboxes `sandboxes` holds: one node's name, "*" for every node's, None for none
    # (the fleet screen asks Prometheus for the nodes only).
    sandboxes_of: str | None = "*"
    schema: str = field(default=FLEET_SCHEMA)
