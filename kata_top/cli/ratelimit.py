"""`kata-top ratelimit set|clear SANDBOX`: see kata_top.cli.actions."""

from kata_top.cli.actions import add_ratelimit_arguments as add_arguments
from kata_top.cli.actions import run

__all__ = ["add_arguments", "run"]
