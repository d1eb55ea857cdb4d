"""Logging for console commands: one line per message on the terminal, details in a file.

The terminal gets warnings and errors as single lines (no tracebacks: bluesky logs a
failed run with its traceback, the user sees the one ``error:`` line instead); a log file
gets everything at INFO and above with tracebacks, and its path goes into error lines.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path


class OneLineFormatter(logging.Formatter):
    """``name: first line of the message``, without exception text."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().splitlines()
        return text[0] if text else record.levelname

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        return ""


class _ConsoleFilter(logging.Filter):
    """Leave out notices (the console prints them itself) and bluesky's 'Run aborted'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "notice"):
            return False
        return not (record.name.startswith("bluesky") and record.exc_info)


def setup_console_logging(log_dir: str | Path, name: str = "scan") -> Path:
    """Terminal handler (one line, WARNING+) and a file handler (INFO+, tracebacks).

    Returns
    -------
    path : the log file
    """
    folder = Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_sptycho", False):
            root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(OneLineFormatter())
    console.addFilter(_ConsoleFilter())
    logfile = logging.FileHandler(path, encoding="utf-8")
    logfile.setLevel(logging.INFO)
    logfile.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in (console, logfile):
        handler._sptycho = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("httpx", "httpcore", "caproto", "bluesky.RE.state"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
