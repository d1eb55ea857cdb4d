"""Motor-record axes: sample stage (coarse and piezo), zone plate stage, OSA stage.

:class:`Motor` is ophyd's ``EpicsMotor`` with one addition: a move without an explicit
timeout gets one from the travel time (``.VELO``, ``.ACCL``), so a stalled axis raises
``StatusTimeoutError`` naming the motor instead of waiting forever. Soft limits are the
record's ``.HLM``/``.LLM`` (served as the control limits of ``.VAL``); ophyd refuses a move
outside them with ``LimitError`` before anything moves.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor
from ophyd.status import MoveStatus, StatusBase
from ophyd.utils import InvalidState

logger = logging.getLogger(__name__)


def travel_time_s(distance: float, velocity: float, accel_s: float) -> float:
    """Duration of a trapezoidal move (s).

    Parameters
    ----------
    distance : absolute distance
    velocity : cruise speed (> 0)
    accel_s : time to reach the cruise speed (s)
    """
    distance = abs(distance)
    if distance == 0:
        return 0.0
    if accel_s <= 0:
        return distance / velocity
    accel = velocity / accel_s
    if distance >= velocity * accel_s:
        return distance / velocity + accel_s
    return 2 * math.sqrt(distance / accel)


class RaceFreeCompletion:
    """Positioner mixin: finishing one move can never drop the next move's completion.

    ophyd's ``PositionerBase`` finishes a move's status through a ``_req_done`` subscription:
    ``_done_moving`` runs the subscribed callbacks (``status._finished``) and *then* clears
    them, and ``move`` fails the previous move's callbacks, clears them and subscribes its new
    status. A waiter woken by the finished status (``status.wait()``, the RunEngine) can start
    the next move in between, from another thread: it fails the callback of the status that
    just succeeded (``InvalidState`` logged from the subscription) and subscribes its own
    status, which the finishing thread then clears, so the new move's status never finishes.

    Here the ``_req_done`` callbacks are taken out of the subscription (atomically) when
    they run, and clearing that subscription is left to that: a callback subscribed later
    belongs to a later move and stays. A completion reaching a status that is already done
    (finished by a failing axis, by its own timeout, or superseded) is dropped quietly.
    """

    #: makes taking the callbacks exclusive: two threads finishing at once run each once.
    _req_done_lock = threading.Lock()

    def _run_subs(self, *args: Any, sub_type: str, **kwargs: Any) -> None:
        if sub_type != self._SUB_REQ_DONE:
            return super()._run_subs(*args, sub_type=sub_type, **kwargs)
        with self._req_done_lock:
            taken = list(self._unwrapped_callbacks[sub_type].items())
            for cid, _ in taken:
                self.unsubscribe(cid)
        kwargs["sub_type"] = sub_type
        kwargs.setdefault("obj", self)
        if kwargs.get("timestamp", 0) is None:
            kwargs["timestamp"] = time.time()
        for _, callback in taken:
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, StatusBase) and owner.done:
                continue
            try:
                callback(*args, **kwargs)
            except InvalidState:  # finished meanwhile (its own timeout, a failing axis)
                logger.debug("%s: completion of a finished status dropped", self.name)
            except Exception:
                self.log.exception("Subscription %s callback exception (%s)", sub_type, self)
        return None

    def _reset_sub(self, event_type: str) -> None:
        if event_type == self._SUB_REQ_DONE:
            return  # the callbacks that ran were taken out; later ones are the next move's
        super()._reset_sub(event_type)


class Motor(RaceFreeCompletion, EpicsMotor):
    """EPICS motor record with a default timeout derived from the move's travel time.

    Parameters
    ----------
    prefix : record name, e.g. ``SIM:sample:cx``
    timeout_margin_s : seconds added to twice the travel time to form the default timeout
    **kwargs : ``EpicsMotor`` arguments (``name``, ``settle_time``, ``timeout``, ...)
    """

    def __init__(self, prefix: str = "", *, timeout_margin_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.timeout_margin_s = timeout_margin_s

    def expected_move_s(self, position: float) -> float:
        """Seconds a move from the current position to ``position`` should take."""
        here = self.position if self.position is not None else position
        velocity = float(self.velocity.get() or 0.0) or 1.0
        accel = float(self.acceleration.get() or 0.0)
        return travel_time_s(float(position) - float(here), velocity, accel)

    def move(self, position: float, wait: bool = True, **kwargs: Any) -> MoveStatus:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout or (
                2 * self.expected_move_s(position) + self.timeout_margin_s
            )
        return super().move(position, wait=wait, **kwargs)


class XYStage(Device):
    """Two motors, ``x`` and ``y`` (um)."""

    x = Cpt(Motor, "x")
    y = Cpt(Motor, "y")


class SampleStage(Device):
    """Sample stage: coarse ``cx``/``cy`` and piezo ``fx``/``fy`` (um).

    The probe's position on the sample is ``(cx + fx, cy + fy)``.
    """

    cx = Cpt(Motor, "cx")
    cy = Cpt(Motor, "cy")
    fx = Cpt(Motor, "fx")
    fy = Cpt(Motor, "fy")

    def position_um(self) -> tuple[float, float]:
        """Probe position on the sample (x, y) in um, coarse plus fine."""
        return (
            float(self.cx.position) + float(self.fx.position),
            float(self.cy.position) + float(self.fy.position),
        )


class ZonePlateStage(Device):
    """Zone plate stage (um): ``x``, ``y`` and ``z``, the zone plate to sample distance."""

    x = Cpt(Motor, "x")
    y = Cpt(Motor, "y")
    z = Cpt(Motor, "z")


class OSAStage(XYStage):
    """Order-sorting aperture stage (um)."""
