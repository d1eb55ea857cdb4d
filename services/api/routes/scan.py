"""``/api/scan``: the scan controller's state, and the operators' commands.

Anyone may read the state; starting, pausing, resuming and aborting need the operators'
key in ``X-API-Key`` (:func:`services.api.deps.require_operator`: 401 without a key, 403
with a wrong one or when no key is set). Without a beamline attached the commands are 409s,
as are commands the controller's state refuses (:class:`~services.api.control.ControllerBusy`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import ValidationError

from services.api.control import ControllerBusy, ScanRequest
from services.api.deps import Controller, attached, require_operator
from services.validation import one_line

router = APIRouter(prefix="/api/scan", tags=["scan"])


@router.get("")
def scan_state(controller: Controller) -> dict[str, Any]:
    """The controller's state (``{"state": "unavailable"}`` without a beamline)."""
    if controller is None:
        return {"state": "unavailable"}
    return controller.state()


@router.post("", dependencies=[Depends(require_operator)])
def scan_start(request: ScanRequest, controller: Controller) -> dict[str, Any]:
    """Start a raster or a stack; the plan's own parameter checks answer 422."""
    ctl = attached(controller)
    try:
        return ctl.start(request)
    except ValidationError as err:
        raise HTTPException(422, one_line(err)) from None
    except ControllerBusy as err:
        raise HTTPException(409, str(err)) from None


@router.post("/{action}", dependencies=[Depends(require_operator)])
def scan_action(action: str, controller: Controller) -> dict[str, Any]:
    """Pause, resume or abort the running scan."""
    ctl = attached(controller)
    actions = {"pause": ctl.pause, "resume": ctl.resume, "abort": ctl.abort}
    if action not in actions:
        raise HTTPException(404, f"no scan action {action!r}: use pause, resume or abort")
    try:
        return actions[action]()
    except ControllerBusy as err:
        raise HTTPException(409, str(err)) from None
