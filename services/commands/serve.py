"""``sptycho serve``: the streaming reconstruction worker, against a Tiled server.

Without ``--tiled-uri`` (or ``SPTYCHO_TILED_URI``) an embedded Tiled server (SQLite and
local files) is started in ``--directory`` and served until Ctrl-C. The REST/WebSocket API
of the browser page hooks in through :data:`API_HOOK` (called with the worker and the Tiled
URI once both are up).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

#: Set by the API module to start its app next to the worker: ``hook(worker, tiled_uri)``.
API_HOOK: Callable[[Any, str], None] | None = None


def serve(
    config: Path | None = typer.Option(None, "--config", "-c", help="Worker YAML/TOML file."),
    tiled_uri: str | None = typer.Option(None, help="Tiled server (else an embedded one)."),
    api_key: str | None = typer.Option(None, help="API key of the Tiled server."),
    directory: Path = typer.Option(
        Path("sptycho-data"), help="Where the embedded Tiled server keeps its catalog."
    ),
    readable: list[Path] = typer.Option([], help="Frame directories the embedded Tiled reads."),
    algorithm: str | None = typer.Option(None, "--algorithm", "-a", help="e.g. 'AP**100'."),
    redo: bool = typer.Option(False, help="Reconstruct again ptychograms already done."),
) -> None:
    """Reconstruct every ptychogram of every run in Tiled as its frames arrive."""
    import logging

    from services.errors import fail
    from services.validation import tiled_problem
    from services.worker.config import load_settings
    from services.worker.service import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll request: noise
    try:
        settings = load_settings(
            config,
            tiled_uri=tiled_uri,
            tiled_api_key=api_key,
            algorithm=algorithm,
            redo=redo or None,
        )
    except ValueError as err:
        fail(str(err).splitlines()[0].replace("Value error, ", ""))
    if settings.tiled_uri:
        problem = tiled_problem(settings.tiled_uri, settings.tiled_api_key)
        if problem:
            fail(problem)
    server = None
    if not settings.tiled_uri:
        from services.tiled_server import TiledServer

        try:
            server = TiledServer(directory, readable=list(readable)).start()
        except (RuntimeError, OSError) as err:
            fail(f"cannot start the embedded Tiled server: {err}")
        settings = settings.model_copy(
            update={"tiled_uri": server.uri, "tiled_api_key": server.api_key}
        )
        typer.echo(f"tiled: {server.uri} (api key {server.api_key})", err=True)
    try:
        worker = Worker(settings)
    except Exception as err:  # noqa: BLE001 - unreachable server, bad key: one line
        if server is not None:
            server.stop()
        fail(f"cannot connect to {settings.tiled_uri}: {str(err).splitlines()[0]}")
    if API_HOOK is not None:
        API_HOOK(worker, settings.tiled_uri or "")
    typer.echo(f"worker: following {settings.tiled_uri} (Ctrl-C stops)", err=True)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        worker.stop()
    finally:
        if server is not None:
            server.stop()


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``sptycho`` app."""
    app.command("serve")(serve)
