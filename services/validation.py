"""Checks of command-line input that end in one readable line for the console.

Every helper either returns quietly or calls :func:`services.errors.fail` (``error: ...``
on stderr, exit status 2); the ``*_problem`` functions return that line instead (``None``
when all is well) for callers that must clean up first.
"""

from __future__ import annotations

import math
import socket
from urllib.parse import urlsplit

from pydantic import ValidationError

from services.errors import fail


def one_line(err: ValidationError) -> str:
    """First problem of a validation error as ``field: message``."""
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def option_name(name: str) -> str:
    """The command-line spelling of a parameter name: ``pol_time`` -> ``--pol-time``."""
    return "--" + name.replace("_", "-")


def polarization(text: str) -> str:
    """``text`` as one of the undulator's polarizations (upper case); one ``error:`` line
    otherwise."""
    from typing import get_args

    from plans.parameters import Polarization

    choices = get_args(Polarization)
    if text.upper() not in choices:
        fail(f"polarization must be {', '.join(choices[:-1])} or {choices[-1]}, got {text!r}")
    return text.upper()


def require_finite(**options: float | None) -> None:
    """Refuse NaN and infinite values; ``None`` (an option not given) passes.

    Parameters
    ----------
    **options : option values by parameter name (``frame_size=...`` names ``--frame-size``)
    """
    for name, value in options.items():
        if value is not None and not math.isfinite(value):
            fail(f"{option_name(name)} must be a finite number, got {value}")


def require_positive(**options: float | None) -> None:
    """Refuse values that are not finite and > 0; ``None`` (an option not given) passes."""
    require_finite(**options)
    for name, value in options.items():
        if value is not None and value <= 0:
            fail(f"{option_name(name)} must be > 0, got {value:g}")


def finite_list(text: str, what: str) -> list[float]:
    """Comma-separated finite numbers, e.g. ``"188,190.5"``; empty items are skipped.

    Parameters
    ----------
    text : the option's value
    what : what the numbers are, for the message (``"energies"``)
    """
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{what} must be comma-separated numbers, got {text!r}")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        fail(f"{what} must be finite numbers, got {bad[0]} in {text!r}")
    return values


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (range, address, in use), or None.

    Port 0 (any free port) only checks the address.
    """
    if not 0 <= port <= 65535:
        return f"port must be within 0..65535, got {port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        return f"cannot listen on {host!r}: {err}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as err:
            return f"cannot listen on {host}:{port}: {err.strerror or err}"
    return None


def uri_problem(uri: str | None, what: str = "Tiled") -> str | None:
    """Why ``uri`` is not an ``http(s)://host[:port][/path]`` address, or None."""
    hint = f"malformed {what} URI {uri!r}: expected http(s)://host[:port]"
    if not uri or any(c.isspace() for c in uri):
        return hint
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return hint
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return hint
    return None


def tiled_problem(
    uri: str | None, api_key: str | None = None, timeout_s: float = 5.0
) -> str | None:
    """Why the Tiled server at ``uri`` cannot be used (address, reachability, API key), or None.

    One plain HTTP request first, so that an unreachable server is reported at once (the
    Tiled client retries for tens of seconds and prints its own lines meanwhile); then a
    Tiled client with the key, which the server refuses when the key is wrong.
    """
    import httpx

    problem = uri_problem(uri)
    if problem:
        return problem
    try:
        httpx.get(uri, timeout=timeout_s)
    except httpx.HTTPError as err:
        return f"cannot reach Tiled at {uri}: {_first_line(err)}"
    try:
        from tiled.client import from_uri

        from_uri(uri, api_key=api_key)
    except Exception as err:  # noqa: BLE001 - any refusal is one line
        text = _first_line(err)
        if text.startswith("401") or "API key" in text:
            if api_key:
                return f"Tiled at {uri} refused the API key ({text})"
            return f"Tiled at {uri} needs an API key ({text})"
        return f"cannot connect to Tiled at {uri}: {text}"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
