"""``sptycho scan raster|stack --queue ADDRESS``: submit the plan to the beamline's queue server.

Instead of running a RunEngine of its own, the command adds ``ptycho_raster`` or
``ptycho_stack`` (:mod:`services.queue.plans`) to the queue of the RE manager at ``ADDRESS``
(its 0MQ control socket ``tcp://host:60615`` or its HTTP server ``http://host:60610``),
with the parameters already checked by the plan's model, starts the queue when it is not
running (opening the environment when it is closed) and prints the item's uid. Unless told
``--no-follow`` it then follows the item until it ends, one line per change of state, and
exits with the run's outcome: 0 when it completed, 1 otherwise.
"""

from __future__ import annotations

import time
from typing import Any

import typer

from services.errors import fail

QUEUE_OPTIONS = dict(
    queue=typer.Option(
        None,
        "--queue",
        envvar="SPTYCHO_QUEUE_SERVER",
        help="Submit through the beamline's bluesky queue server instead of running a "
        "RunEngine here: tcp://host:60615 (0MQ) or http://host:60610 (HTTP server).",
    ),
    queue_api_key=typer.Option(
        None, envvar="SPTYCHO_QUEUE_API_KEY", help="The queue server HTTP server's key."
    ),
    follow=typer.Option(True, "--follow/--no-follow", help="With --queue: wait for the end."),
)


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _ready(manager: Any, address: str, open_timeout_s: float = 90.0) -> dict[str, Any]:
    """The manager's status, its environment opened if it was closed (one line otherwise)."""
    try:
        status = manager.status(reload=True)
    except Exception as err:  # noqa: BLE001 - any failure to reach it is one line
        fail(f"queue server {address} not answering: {_line(err)}")
    if not status.get("worker_environment_exists"):
        typer.echo("opening the queue server's environment", err=True)
        manager.environment_open()
        deadline = time.monotonic() + open_timeout_s
        while time.monotonic() < deadline:
            status = manager.status(reload=True)
            if status["worker_environment_exists"] and status["manager_state"] == "idle":
                break
            time.sleep(0.5)
        else:
            fail(f"the queue server's environment did not open within {open_timeout_s:g} s", 1)
    return status


def submit(
    address: str,
    kind: str,
    params: Any,
    api_key: str | None = None,
    follow: bool = True,
    poll_s: float = 0.5,
) -> None:
    """Queue the ``kind`` (raster/stack) plan with the validated ``params`` and start it.

    Parameters
    ----------
    address : the queue server (0MQ control socket or HTTP server URL)
    kind : ``raster`` or ``stack``
    params : the plan's validated model (:class:`plans.parameters.RasterParams` or
        :class:`plans.parameters.StackParams`)
    api_key : the HTTP server's key
    follow : wait for the item to end and exit with its outcome
    poll_s : how often the manager is asked while following
    """
    from services.queue_client import CONSOLE_USER, connect_manager, plan_item, refusals

    try:
        manager = connect_manager(address, api_key, user=CONSOLE_USER)
    except ValueError as err:
        fail(str(err))
    try:
        status = _ready(manager, address)
        try:
            reply = manager.item_add(
                plan_item(kind, params.model_dump(mode="json", exclude_unset=True), CONSOLE_USER)
            )
        except refusals() as err:
            fail(f"the queue server refused the plan: {_line(err)}")
        uid = reply["item"]["item_uid"]
        typer.echo(uid)
        if status["manager_state"] == "idle":
            try:
                manager.queue_start()
            except refusals() as err:
                fail(f"queued, but the queue did not start: {_line(err)}", 1)
        if follow:
            _follow(manager, uid, poll_s)
    finally:
        manager.close()


def _follow(manager: Any, uid: str, poll_s: float) -> None:
    """Print the item's progress until it is in the history; exit 1 unless it completed."""
    from services.queue_client import scan_state

    said = None
    try:
        while True:
            status = manager.status(reload=True)
            history = manager.history_get(reload=True)["items"]
            done = [item for item in history if item.get("item_uid") == uid]
            if done:
                break
            if status.get("running_item_uid") == uid:
                now = scan_state(status)
                runs = manager.re_runs(reload=True).get("run_list", [])
                if runs:
                    now += f": run {runs[-1]['uid']}"
            else:
                ahead = _position(manager, uid)
                now = "waiting" if ahead is None else f"queued, {ahead} item(s) ahead"
            if now != said:
                typer.echo(now, err=True)
                said = now
            time.sleep(poll_s)
    except KeyboardInterrupt:
        fail(f"stopped following; item {uid} stays with the queue server", 130)
    result = done[-1]["result"]
    exit_status = result.get("exit_status")
    for run_uid in result.get("run_uids") or []:
        typer.echo(f"run {run_uid}")
    if exit_status not in ("completed", "stopped"):
        msg = (result.get("msg") or "").strip()
        fail(f"plan {exit_status}" + (f": {msg.splitlines()[-1]}" if msg else ""), 1)
    typer.echo(f"plan {exit_status}", err=True)


def _position(manager: Any, uid: str) -> int | None:
    """How many queued items come before ``uid`` (None when it is not queued)."""
    items = manager.queue_get(reload=True).get("items", [])
    uids = [item.get("item_uid") for item in items]
    return uids.index(uid) if uid in uids else None
