"""Subcommands of the sptycho CLI."""
