"""Talk to the beamline's bluesky queue server: connect, describe its items, read its state.

The queue server (``start-re-manager`` with the startup module :mod:`services.queue.startup`)
owns the beamline's only RunEngine. The live page (:mod:`services.api.queue_control`) and
``sptycho scan --queue`` (:mod:`services.commands.queue_scan`) queue the plans
``ptycho_raster`` and ``ptycho_stack`` through it, with the fields of
:class:`plans.parameters.RasterParams` / :class:`plans.parameters.StackParams` as plain JSON
keyword arguments, validated here by the same models first.

An address is either the RE manager's 0MQ control socket (``tcp://host:60615``) or the URL of
the bluesky HTTP server in front of it (``http://host:60610``, with its API key).
"""

from __future__ import annotations

from typing import Any

#: Page/console plan kind -> queue plan name.
QUEUE_PLAN = {"raster": "ptycho_raster", "stack": "ptycho_stack"}
#: Queue server exit status of an item -> the RunEngine's ``exit_status`` words.
EXIT = {
    "completed": "success",
    "stopped": "success",
    "aborted": "abort",
    "halted": "abort",
    "failed": "fail",
}
#: Who the items queued by this project say they come from (the item's ``user``).
WEB_USER = "sptycho web page"
CONSOLE_USER = "sptycho scan"


def refusals() -> tuple[type[Exception], ...]:
    """The exceptions of a request the RE manager (or its HTTP server) refused."""
    from bluesky_queueserver_api.comm_base import (
        HTTPClientError,
        RequestFailedError,
        RequestParameterError,
    )

    return (RequestFailedError, RequestParameterError, HTTPClientError)


def is_http(address: str) -> bool:
    """Whether ``address`` is the HTTP server's URL (else the 0MQ control socket)."""
    return address.startswith(("http://", "https://"))


def connect_manager(address: str, api_key: str | None = None, user: str = WEB_USER) -> Any:
    """An ``REManagerAPI`` (threads) of the queue server at ``address``.

    Parameters
    ----------
    address : ``tcp://host:port`` (0MQ control socket) or ``http(s)://host:port`` (HTTP server)
    api_key : the HTTP server's key (``QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY``); unused by 0MQ
    user : the name the items added through it carry

    Raises
    ------
    ValueError
        On an address that is neither.
    """
    if is_http(address):
        from bluesky_queueserver_api.http import REManagerAPI

        manager = REManagerAPI(http_server_uri=address.rstrip("/"), timeout=10)
        if api_key:
            manager.set_authorization_key(api_key=api_key)
    elif address.startswith("tcp://"):
        from bluesky_queueserver_api.zmq import REManagerAPI

        manager = REManagerAPI(zmq_control_addr=address, timeout_recv=5.0, timeout_send=1.0)
    else:
        raise ValueError(
            f"queue server address {address!r}: use tcp://host:port or http://host:port"
        )
    manager.user = user
    return manager


def validated_kwargs(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The queue plan's keyword arguments for ``params`` of a ``kind`` scan, checked by the
    plan's own model (what was given, as JSON).

    Raises
    ------
    pydantic.ValidationError
        When the model refuses them (nothing is queued).
    """
    from plans.parameters import RasterParams, StackParams

    model = RasterParams if kind == "raster" else StackParams
    checked = model(**params)
    return checked.model_dump(mode="json", include=set(params))


def plan_item(kind: str, kwargs: dict[str, Any], source: str | None = None) -> Any:
    """The queue item (``BPlan``) of a ``kind`` scan; ``source`` (who queued it) goes to the
    run's start document as ``queued_by``."""
    from bluesky_queueserver_api import BPlan

    md = {"queued_by": source} if source else {}
    return BPlan(QUEUE_PLAN[kind], **kwargs, **({"md": md} if md else {}))


def describe_item(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the page shows of a queue item: ``kind`` (raster/stack or the plan's name),
    ``name``, ``params`` (its keyword arguments), ``item_uid``, ``user``, ``user_group``."""
    if not item:
        return None
    kinds = {name: kind for kind, name in QUEUE_PLAN.items()}
    name = item.get("name")
    return {
        "kind": kinds.get(name, name),
        "name": name,
        "params": item.get("kwargs", {}),
        "args": item.get("args", []),
        "item_uid": item.get("item_uid"),
        "user": item.get("user"),
        "user_group": item.get("user_group"),
    }


def scan_state(status: dict[str, Any]) -> str:
    """The page's scan state (idle, running, paused, or the RunEngine's passing state such as
    ``pausing``) from the RE manager's status."""
    re_state = status.get("re_state")
    if status.get("manager_state") == "paused":
        return "paused"  # resumable: the RunEngine and the manager both paused
    if re_state == "paused":
        return "pausing"  # the manager has not caught up yet
    if re_state and re_state != "idle":
        return str(re_state)
    if status.get("manager_state") == "executing_queue":
        return "running"  # between items or before the RunEngine starts
    return "idle"


def manager_notice(status: dict[str, Any]) -> str | None:
    """One line about what keeps the queue server from running plans, or None."""
    if not status.get("worker_environment_exists"):
        return "the queue server's environment is closed (qserver environment open)"
    if status.get("queue_stop_pending"):
        return "the queue stops after the running plan"
    return None


def last_outcome(history: list[dict[str, Any]]) -> dict[str, Any]:
    """``last_uid``, ``last_exit`` (success, abort, fail) and ``last_error`` (one line) of the
    newest item of the history."""
    if not history:
        return {"last_uid": None, "last_exit": None, "last_error": None}
    result = history[-1].get("result", {})
    uids = result.get("run_uids") or []
    status = result.get("exit_status")
    message = (result.get("msg") or "").strip()
    return {
        "last_uid": uids[-1] if uids else None,
        "last_exit": EXIT.get(status, status),
        "last_error": message.splitlines()[-1] if status == "failed" and message else None,
    }
