"""Turn pydantic validation errors into one readable line for the console."""

from __future__ import annotations

from pydantic import ValidationError


def one_line(err: ValidationError) -> str:
    """First problem of a validation error as ``field: message``."""
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg
