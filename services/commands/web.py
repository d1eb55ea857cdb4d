"""``sptycho web``: the live page and its REST/WebSocket API, against a Tiled server."""

from __future__ import annotations

from pathlib import Path

import typer

from services.errors import fail
from services.validation import port_problem, tiled_problem


def web(
    tiled_uri: str = typer.Option(..., envvar="SPTYCHO_API_TILED_URI", help="Tiled server."),
    tiled_api_key: str | None = typer.Option(
        None, envvar="SPTYCHO_API_TILED_API_KEY", help="Tiled API key."
    ),
    key: str | None = typer.Option(
        None,
        envvar="SPTYCHO_API_KEY",
        help="Operators' key (X-API-Key) that may start, pause and abort scans.",
    ),
    host: str = typer.Option("127.0.0.1", envvar="SPTYCHO_API_HOST", help="Listen address."),
    port: int = typer.Option(8000, envvar="SPTYCHO_API_PORT", help="Listen port."),
    beamline: str | None = typer.Option(
        None, help="IOC prefix of a beamline to run scans on (e.g. 'SIM:'); read-only without."
    ),
    data_dir: Path = typer.Option(Path("sptycho-data"), help="Where the camera writes frames."),
    queue_server: str | None = typer.Option(
        None,
        "--queue-server",
        envvar="SPTYCHO_API_QUEUE_SERVER",
        help="The beamline's bluesky queue server, whose RunEngine runs the page's scans: "
        "its 0MQ control socket (tcp://host:60615) or HTTP server (http://host:60610).",
    ),
    queue_api_key: str | None = typer.Option(
        None, envvar="SPTYCHO_API_QUEUE_API_KEY", help="The queue server HTTP server's key."
    ),
) -> None:
    """Serve the live page: runs, reconstructions, stacks, spectra; scans for operators."""
    import contextlib

    import uvicorn
    from pydantic import ValidationError

    from services.api.app import create_app
    from services.api.control import ScanController
    from services.api.settings import ApiSettings
    from services.validation import one_line

    try:
        settings = ApiSettings(
            tiled_uri=tiled_uri,
            tiled_api_key=tiled_api_key,
            key=key,
            host=host,
            port=port,
            queue_server=queue_server,
            queue_api_key=queue_api_key,
        )
    except ValidationError as err:
        fail(one_line(err))
    problem = port_problem(host, port) or tiled_problem(tiled_uri, tiled_api_key)
    if problem:
        fail(problem)
    if beamline and queue_server:
        fail("--beamline and --queue-server exclude each other: one RunEngine per beamline")
    with contextlib.ExitStack() as stack:
        controller = None
        if queue_server:
            from services.api.queue_control import QueueController
            from services.queue_client import connect_manager

            controller = QueueController(connect_manager(queue_server, queue_api_key))
            stack.callback(controller.close)
        elif beamline:
            from services.session import open_session

            try:
                session = stack.enter_context(
                    open_session(
                        beamline,
                        tiled_uri=tiled_uri,
                        api_key=tiled_api_key,
                        data_dir=data_dir,
                        context_managers=[],
                    )
                )
            except (TimeoutError, RuntimeError) as err:
                fail(str(err).splitlines()[0])
            controller = ScanController(session.beamline, session.RE)
            stack.callback(controller.close)
        try:
            app = create_app(settings, controller=controller)
        except (ValueError, RuntimeError) as err:
            fail(str(err).splitlines()[0])
        typer.echo(f"live page: http://{host}:{port}/", err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("web")(web)
