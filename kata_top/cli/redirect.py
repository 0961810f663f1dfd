"""`kata-top redirect add|remove SANDBOX`: see kata_top.cli.actions."""

from kata_top.cli.actions import add_redirect_arguments as add_arguments
from kata_top.cli.actions import run

__all__ = ["add_arguments", "run"]
