"""``python -m disaster_recovery``: an argparse dispatcher of subcommands.

Each subcommand lives in a module listed in ``COMMAND_MODULES``. The module defines
``register(subparsers)``: it adds its parser(s) and sets ``handler`` (``Namespace -> int`` exit code)
with ``parser.set_defaults(handler=...)``. Nested groups (``catalog migrate``) add their own subparsers.
Modules are imported only when the CLI runs, so a command may import Airflow; ``plans`` does not.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "disaster_recovery.commands.plans",
    "disaster_recovery.commands.catalog",
    "disaster_recovery.commands.clusters",
    "disaster_recovery.commands.services",
)


def build_parser(command_modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m disaster_recovery", description="Disaster recovery on Airflow: command-line tools."
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module_name in command_modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # a command group that forgot to require its subcommand
        parser.print_help()
        return 2
    return int(handler(args))
