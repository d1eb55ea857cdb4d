"""The ``sptycho`` console command: one typer app, one module per subcommand.

Every subcommand validates its input and, on bad input, prints one line ``error: ...`` to
stderr and exits with status 2 (never a traceback).
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="sptycho",
    help="Soft X-ray spectro-ptychography: simulate, acquire, reconstruct, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Modules under services/commands that each define ``register(app)``.
COMMAND_MODULES = (
    "simulate",
    "dose",
    "recon",
    "ioc",
    "scan",
    "web",
    "demo",
    "console",
    "serve",
    "export",
    "import_",
)


for _name in COMMAND_MODULES:
    importlib.import_module(f"services.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except (ValueError, OSError) as err:  # last line of defence: one clear line
        typer.echo(
            f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", err=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
