"""The piezo scan controller: hardware-timed trajectories with camera triggers and encoders.

The controller (``{prefix}scan:``) holds a trajectory of fine stage targets, runs a segment
of it on its own clock (``Step``: move, settle, trigger; ``Continuous``: constant speed, one
trigger per period), fires the camera's external trigger at every point and records, per
point, the encoder position averaged over the exposure gate and its spread, the incident
flux, the ring current and the shutter state.

>>> scanner.load(xy_um, motion="Continuous", period=0.103, gate=0.1)    # doctest: +SKIP
>>> scanner.run_segment(0, 10).wait()                                   # doctest: +SKIP
>>> scanner.records(10)["enc_x"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus

from devices.camera import _finish

#: Per-point records of a segment, in the order the controller publishes them.
RECORDS = ("enc_x", "enc_y", "enc_dx", "enc_dy", "i0", "ring", "shutter", "time")


class ScannerStoppedError(RuntimeError):
    """The scan controller stopped before the end of its segment (abort or servo fault)."""


class PiezoScanner(Device):
    """ophyd device of the piezo scan controller (see the module docstring).

    Parameters
    ----------
    prefix : IOC prefix followed by ``scan:``, e.g. ``SIM:scan:``
    **kwargs : ``Device`` arguments (``name``, ...)
    """

    traj_x = Cpt(EpicsSignal, "traj_x", kind="omitted")
    traj_y = Cpt(EpicsSignal, "traj_y", kind="omitted")
    npoints = Cpt(EpicsSignalRO, "npoints_RBV", kind="omitted")
    first = Cpt(EpicsSignal, "first", kind="omitted")
    count = Cpt(EpicsSignal, "count", kind="omitted")
    motion = Cpt(EpicsSignal, "motion", string=True, kind="config")
    period = Cpt(EpicsSignal, "period", kind="config")
    gate = Cpt(EpicsSignal, "gate", kind="config")
    settle = Cpt(EpicsSignal, "settle", kind="config")
    velocity = Cpt(EpicsSignal, "velocity", kind="config")
    go = Cpt(EpicsSignal, "go", kind="omitted")
    abort = Cpt(EpicsSignal, "abort", kind="omitted")
    state = Cpt(EpicsSignalRO, "state_RBV", string=True, kind="omitted")
    index = Cpt(EpicsSignalRO, "index_RBV", kind="omitted")
    message = Cpt(EpicsSignalRO, "message_RBV", string=True, kind="omitted")
    missed = Cpt(EpicsSignalRO, "missed_RBV", kind="omitted")
    enc_x = Cpt(EpicsSignalRO, "enc_x", kind="omitted")
    enc_y = Cpt(EpicsSignalRO, "enc_y", kind="omitted")
    enc_dx = Cpt(EpicsSignalRO, "enc_dx", kind="omitted")
    enc_dy = Cpt(EpicsSignalRO, "enc_dy", kind="omitted")
    i0 = Cpt(EpicsSignalRO, "i0", kind="omitted")
    ring = Cpt(EpicsSignalRO, "ring", kind="omitted")
    shutter = Cpt(EpicsSignalRO, "shutter", kind="omitted")
    time = Cpt(EpicsSignalRO, "time", kind="omitted")

    def load(
        self,
        xy_um: np.ndarray,
        *,
        motion: str = "Step",
        period: float,
        gate: float,
        settle: float | None = None,
    ) -> None:
        """Load a trajectory and its timing (blocking Channel Access puts).

        Parameters
        ----------
        xy_um : (N, 2) float64 fine stage targets (x, y) in um, in acquisition order
        motion : ``Step`` or ``Continuous``
        period : trigger spacing (s)
        gate : exposure over which the encoders are averaged (s)
        settle : settling time after each step (s); the controller's own when None
        """
        xy = np.asarray(xy_um, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
            raise ValueError(f"{self.name}: trajectory must be (N, 2), got {xy.shape}")
        self.traj_x.put(xy[:, 0], wait=True)
        self.traj_y.put(xy[:, 1], wait=True)
        self.motion.put(motion, wait=True)
        self.period.put(float(period), wait=True)
        self.gate.put(float(gate), wait=True)
        if settle is not None:
            self.settle.put(float(settle), wait=True)
        deadline = time.monotonic() + 5
        while int(self.npoints.get(use_monitor=False)) != len(xy):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: the controller did not take the trajectory")
            time.sleep(0.005)

    def run_segment(self, first: int, count: int, timeout: float | None = None) -> DeviceStatus:
        """Start points ``first .. first + count - 1``; the status finishes at ``Done``.

        The status fails with :class:`ScannerStoppedError` (one line with the controller's
        message) when the controller stops early, or with ``TimeoutError`` after
        ``timeout`` seconds.
        """
        status = DeviceStatus(self, timeout=timeout)
        started = threading.Event()

        def watch(value: Any = None, **_: Any) -> None:
            if not started.is_set():
                return
            if value == "Done":
                _finish(status)
            elif value == "Stopped":
                why = self.message.get(use_monitor=False) or "stopped"
                _finish(status, ScannerStoppedError(f"{self.name}: {why}"))

        def unsubscribe(_status: Any = None) -> None:
            self.state.clear_sub(watch)

        self.first.put(int(first), wait=True)
        self.count.put(int(count), wait=True)
        self.state.subscribe(watch, run=False)
        status.add_callback(unsubscribe)
        started.set()
        self.go.put(1, wait=True)
        if self.state.get(use_monitor=False) == "Done" and not status.done:
            _finish(status)
        return status

    def halt(self) -> None:
        """Stop a running segment where the stage is."""
        if self.state.get(use_monitor=False) == "Running":
            self.abort.put(1, wait=True)

    def records(self, count: int) -> dict[str, np.ndarray]:
        """The segment's per-point records, each (count,) float64 (NaN where missing)."""
        out = {}
        for key in RECORDS:
            values = np.asarray(getattr(self, key).get(use_monitor=False), dtype=np.float64)
            values = np.atleast_1d(values)[:count]
            if len(values) < count:
                values = np.concatenate([values, np.full(count - len(values), np.nan)])
            out[key] = values
        return out
