"""Subcommands of ``python -m disaster_recovery`` (one module each, listed in cli.COMMAND_MODULES)."""
