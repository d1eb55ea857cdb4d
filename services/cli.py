"""The ``sptycho`` console command: one typer app, one module per subcommand.

Every subcommand validates its input and, on bad input, prints one line ``error: ...`` to
stderr and exits with status 2 (never a traceback). Command-line usage errors (an unknown
option, a value that is not a number) are one such line too.

Anything unexpected is also one line, ``error: <what> (details in <log file>)``, with exit
status 1 (2 for a ``ValueError`` or ``OSError``, which are nearly always bad input or a bad
file); the full traceback goes to that log file, in ``<state dir>/logs`` (see
:func:`state_dir`: ``$SPTYCHO_STATE_DIR``, else ``$XDG_STATE_HOME/sptycho``, else
``~/.local/state/sptycho``). With the global option ``--debug`` (or ``SPTYCHO_DEBUG=1``)
the traceback is printed instead.

EPICS: libca starts a ``caRepeater`` daemon the first time it searches for a channel and,
when there is none on ``PATH`` (pyepics ships one only for Windows), prints a five-line
banner. Channel Access works without the repeater, so :func:`quiet_ca_repeater` puts a
``caRepeater`` that does nothing at the *end* of ``PATH`` (a real one earlier on ``PATH``
still wins), before any command imports pyepics.
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import typer

#: The do-nothing caRepeater: libca execs it and carries on without a repeater, silently.
CA_REPEATER_SHIM = """#!/bin/sh
# Written by sptycho (services/cli.py): Channel Access works without a CA repeater; this
# stands in for the missing caRepeater so that libca does not print a banner. Install
# EPICS base's caRepeater earlier on PATH to run a real one.
exit 0
"""


def state_dir() -> Path:
    """Per-user directory of sptycho's own files (``logs/``, ``bin/caRepeater``).

    ``$SPTYCHO_STATE_DIR``, else ``$XDG_STATE_HOME/sptycho``, else
    ``~/.local/state/sptycho``; a private ``sptycho-<uid>`` folder in the temporary
    directory when the home directory cannot be written.
    """
    explicit = os.environ.get("SPTYCHO_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    path = base / "sptycho"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / f"sptycho-{os.getuid()}"
    return path


def _private_dir(path: Path) -> Path | None:
    """``path`` created (mode 0700) or checked to be ours and not writable by others."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return path


def quiet_ca_repeater() -> Path | None:
    """Put a do-nothing ``caRepeater`` at the end of ``PATH``; returns its path (or None).

    Does nothing on Windows (pyepics ships caRepeater.exe there) or when the state
    directory cannot be written (libca then prints its banner, as before).
    """
    if os.name == "nt":
        return None
    folder = _private_dir(state_dir() / "bin")
    if folder is None:
        return None
    shim = folder / "caRepeater"
    try:
        if not shim.is_file() or shim.read_text() != CA_REPEATER_SHIM:
            part = folder / f".caRepeater.{os.getpid()}"
            part.write_text(CA_REPEATER_SHIM)
            part.chmod(0o755)
            os.replace(part, shim)
    except OSError:
        return None
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if str(folder) not in entries:
        os.environ["PATH"] = os.pathsep.join([*filter(None, entries), str(folder)])
    return shim


quiet_ca_repeater()

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

#: Set by ``--debug`` (or ``SPTYCHO_DEBUG``): print tracebacks instead of logging them.
DEBUG = {"on": False}


def package_version() -> str:
    """The installed ``sptycho`` distribution's version (``0+unknown`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sptycho")
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sptycho {package_version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="SPTYCHO_DEBUG",
        help="Print the full traceback of an unexpected error (else it goes to a log file).",
    ),
) -> None:
    """Soft X-ray spectro-ptychography: simulate, acquire, reconstruct, serve."""
    DEBUG["on"] = debug


for _name in COMMAND_MODULES:
    importlib.import_module(f"services.commands.{_name}").register(app)


def _first_line(err: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        from services.validation import one_line

        return one_line(err)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def write_log(text: str, args: Sequence[str]) -> Path | None:
    """Write the command line ``args`` and ``text`` to a new file in ``<state dir>/logs``.

    Returns
    -------
    path : the log file, or None when it cannot be written
    """
    folder = _private_dir(state_dir() / "logs")
    if folder is None:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"sptycho-{stamp}-{os.getpid()}.log"
    try:
        path.write_text(f"sptycho {' '.join(args)}\n\n{text}")
    except OSError:
        return None
    return path


def report_crash(err: BaseException, args: Sequence[str]) -> int:
    """One ``error:`` line for an unexpected exception; the traceback to a log (or stderr).

    Parameters
    ----------
    err : the exception
    args : the command line (after the program name), written at the top of the log

    Returns
    -------
    code : the exit status, 2 for ValueError and OSError (bad input, bad file), else 1
    """
    code = 2 if isinstance(err, (ValueError, OSError)) else 1
    summary = _first_line(err)
    if code == 1:
        summary = f"unexpected {type(err).__name__}: {summary}"
    details = "".join(traceback.format_exception(err))
    debug = DEBUG["on"] or os.environ.get("SPTYCHO_DEBUG", "").lower() in ("1", "true", "yes")
    if debug:
        sys.stderr.write(details)
        typer.echo(f"error: {summary}", err=True)
        return code
    log = write_log(details, args)
    where = f"details in {log}" if log else "rerun with --debug for details"
    typer.echo(f"error: {summary} ({where})", err=True)
    return code


def _usage_error(err: typer.TyperException) -> int:
    """Print a command-line usage error as one ``error:`` line; returns the exit status."""
    if type(err).__name__ == "NoArgsIsHelpError":  # no arguments at all: the help text
        err.show()
    else:
        text = " ".join(err.format_message().split()).replace("Value error, ", "")
        typer.echo(f"error: {text}", err=True)
    return int(getattr(err, "exit_code", 2))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the app, each failure ending in one ``error:`` line.

    Parameters
    ----------
    argv : arguments after the program name (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="sptycho", standalone_mode=False)
    except typer.TyperException as err:  # usage errors: one line instead of a panel
        code = _usage_error(err)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        code = 1
    except Exception as err:  # noqa: BLE001 - the safety net: one line, details in a log
        code = report_crash(err, args)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
