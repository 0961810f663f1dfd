"""The one writer: typed requests are planned against fresh state, applied all-or-nothing and
audited. `model` holds the vocabulary, `steps` the tc/ip changes, `plan` the planners, `apply`
the executor, `audit` the log."""

from kata_top.actions.apply import execute
from kata_top.actions.model import (
    ActionError,
    ActionRequest,
    Outcome,
    Plan,
    RateLimitRequest,
    RedirectRequest,
    Step,
)
from kata_top.actions.plan import find_sandbox, plan_ratelimit, plan_redirect, plan_request

__all__ = ["ActionError", "ActionRequest", "Outcome", "Plan", "RateLimitRequest",
           "RedirectRequest", "Step", "execute", "find_sandbox", "plan_ratelimit",
           "plan_redirect", "plan_request"]
