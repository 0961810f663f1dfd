"""Reading deploy/: the manifests, and the PrometheusRule's groups as a plain rules file."""

from __future__ import annotations

import os
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")


def load(name: str) -> Any:
    with open(os.path.join(DEPLOY, name), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def write_rules(path: str, for_override: str | None = None) -> str:
    """The PrometheusRule's spec.groups as a Prometheus rules file (what the operator loads);
    `for_override` replaces every `for:` (a live test cannot wait minutes)."""
    groups = load("prometheusrule.yaml")["spec"]["groups"]
    if for_override is not None:
        for g in groups:
            for r in g["rules"]:
                if "for" in r:
                    r["for"] = for_override
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"groups": groups}, fh, allow_unicode=True)
    return path
