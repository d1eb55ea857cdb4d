"""What keeps a scan's data clean through beam losses, camera faults and motor stalls.

Three layers, from the outside in:

1. Suspenders (installed by the session, :mod:`services.acquisition`) watch the ring
   current and I0; when the beam goes, the RunEngine suspends, closes the shutter, waits
   for the beam plus a settle time (:func:`wait_for_beam` as the suspender's pre-plan
   gives up after ``timeout_s``) and re-takes the point from its checkpoint.
2. :func:`acquire_point` checks the beam recorded with every frame: a frame whose I0 or
   ring current is below the thresholds (a beam loss the suspender saw too late, or no
   suspender at all), or taken after the shutter closed by itself, is dropped from the
   event stream and the point is taken again once the beam is back. Every frame is
   written to the file record of its event (the writer's position mode), so a re-take
   replaces whatever an interrupted attempt left there and the file holds exactly one
   frame per saved event, in order.
3. A camera or motor fault that the device's own retries did not cure pauses the RunEngine
   (:func:`pause_for_fault`) with one line naming the device and what to do; resuming takes
   the point again.

Notices (``"suspended: beam lost (ring 0.0 mA)"``, ``"paused: ..."``, ``None`` when all is
well) go to the ``sptycho.notice`` logger with the text in the record's ``notice``
attribute; the session shows them on the console and on the web page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

import bluesky.plan_stubs as bps
from bluesky.utils import FailedStatus, Msg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Plan = Generator[Msg, Any, Any]

notice_log = logging.getLogger("sptycho.notice")


class BeamLostError(RuntimeError):
    """The beam did not come back within the guard's timeout."""


class BeamGuard(BaseSettings):
    """Thresholds of the beam checks (suspenders and per-frame checks use the same).

    Each field can be set in the environment: ``SPTYCHO_BEAM_RING_MIN_MA``,
    ``SPTYCHO_BEAM_I0_MIN_PH_S``, ``SPTYCHO_BEAM_SETTLE_S``, ``SPTYCHO_BEAM_TIMEOUT_S``.

    Attributes
    ----------
    ring_min_ma : ring current below which there is no beam (mA)
    i0_min_ph_s : incident flux below which a frame is not data (photons/s)
    settle_s : time the beam must be back before the scan goes on (s)
    timeout_s : a beam loss longer than this ends the scan, data kept (s)
    """

    model_config = SettingsConfigDict(env_prefix="SPTYCHO_BEAM_", frozen=True, extra="ignore")

    ring_min_ma: float = Field(50.0, ge=0, allow_inf_nan=False)
    i0_min_ph_s: float = Field(1e4, ge=0, allow_inf_nan=False)
    settle_s: float = Field(2.0, ge=0, le=3600, allow_inf_nan=False)
    timeout_s: float = Field(600.0, gt=0, le=86400, allow_inf_nan=False)

    def problem(self, ring_ma: float | None, i0_ph_s: float | None) -> str | None:
        """Why there is no usable beam (one line), or None when the beam is fine."""
        if ring_ma is not None and not ring_ma >= self.ring_min_ma:
            return f"beam lost (ring {ring_ma:.1f} mA)"
        if i0_ph_s is not None and not i0_ph_s >= self.i0_min_ph_s:
            return f"no incident flux (I0 {i0_ph_s:.3g} ph/s)"
        return None


def notice(text: str | None) -> None:
    """Publish a one-line notice (``None`` clears it)."""
    if text is None:
        notice_log.info("resumed", extra={"notice": None})
    else:
        notice_log.warning(text, extra={"notice": text})


def signal_value(signal: Any) -> float | None:
    """The signal's value as a float, None when it cannot be read."""
    try:
        return float(signal.get())
    except Exception:  # noqa: BLE001 - a disconnected monitor reads as "unknown"
        return None


def beam_problem(monitor: Any, guard: BeamGuard) -> str | None:
    """The guard's verdict on the monitor's current ring current and I0."""
    return guard.problem(signal_value(monitor.ring_current), signal_value(monitor.i0))


def wait_for_beam(monitor: Any, guard: BeamGuard, *, poll_s: float = 0.2) -> Plan:
    """Wait until the beam has been good for ``settle_s``; raise after ``timeout_s``.

    Raises
    ------
    BeamLostError
        When the beam is not back within the timeout (the scan ends, data kept).
    """
    t0 = time.monotonic()
    good_since: float | None = None
    while True:
        problem = beam_problem(monitor, guard)
        now = time.monotonic()
        if problem is None:
            good_since = good_since if good_since is not None else now
            if now - good_since >= guard.settle_s:
                return
        else:
            good_since = None
            if now - t0 > guard.timeout_s:
                raise BeamLostError(
                    f"{problem} for more than {guard.timeout_s:g} s: scan ended, "
                    "the points taken so far are kept"
                )
        yield from bps.sleep(poll_s)


def _status_line(err: FailedStatus) -> str:
    """One line for a failed status: the innermost cause, naming the device."""
    status = err.args[0] if err.args else None
    exc = status.exception() if hasattr(status, "exception") else None
    device = getattr(getattr(status, "device", None), "name", None) or getattr(
        getattr(status, "pos", None), "name", None
    )
    text = str(exc or err).splitlines()[0] if str(exc or err) else type(exc or err).__name__
    if isinstance(exc, TimeoutError) and text.startswith("Status "):  # ophyd's status repr
        limit = getattr(status, "timeout", None)
        within = f" within {limit:.3g} s" if isinstance(limit, int | float) else ""
        text = f"did not finish its move{within} (stalled?)"
    if device and device not in text:
        text = f"{device}: {text}"
    return text


def pause_for_fault(line: str, shutter: Any) -> Plan:
    """Close the shutter, publish ``paused: line`` and pause the RunEngine (not abort).

    The caller takes the point again when the RunEngine resumes.
    """
    notice(f"paused: {line}")
    yield from bps.abs_set(shutter, "close", wait=True)
    yield from bps.checkpoint()  # nothing to replay: the caller's loop retries
    yield from bps.pause()
    notice(None)


def _ensure_open(shutter: Any) -> Plan:
    reading = yield from bps.rd(shutter.status)
    if reading != "Open":
        yield from bps.mv(shutter, "open")


def move_or_pause(shutter: Any, *args: Any) -> Plan:
    """``bps.mv(*args)``; a move that fails (a stall) pauses with one line, then retries."""
    while True:
        try:
            return (yield from bps.mv(*args))
        except FailedStatus as err:
            yield from pause_for_fault(f"{_status_line(err)}; free the axis, then resume", shutter)
            yield from _ensure_open(shutter)


def acquire_point(
    detectors: list[Any],
    camera: Any,
    monitor: Any,
    shutter: Any,
    guard: BeamGuard,
    *,
    stream: str = "primary",
    check_beam: bool = True,
) -> Plan:
    """Trigger, check and save one event; re-take it until it is good.

    Parameters
    ----------
    detectors : everything read into the event (the camera and ``monitor.i0`` among them)
    camera : the camera; ``camera.accepted`` frames of its current file are saved events,
        and the next frame is written to that record
    monitor : beam monitor with ``i0`` and ``ring_current``
    shutter : closed while paused or waiting for beam
    guard : thresholds
    stream : event stream name
    check_beam : False for dark frames (taken with the shutter closed on purpose)

    Returns
    -------
    dict : the readings of the saved event
    """
    i0_key = monitor.i0.name
    ring_key = monitor.ring_current.name
    shutter_key = shutter.status.name
    while True:
        group = f"point-{time.monotonic_ns()}"
        try:
            # The frame goes to the file record of this event: a re-take (after a suspension,
            # a refused frame or a pause) overwrites what an earlier attempt left there.
            yield from bps.mv(camera.hdf5.next_record, camera.accepted)
            yield from bps.trigger(camera, group=group)
            yield from bps.wait(group=group)
        except FailedStatus as err:
            yield from pause_for_fault(_status_line(err), shutter)
            if check_beam:
                yield from _ensure_open(shutter)
            continue
        yield from bps.create(stream)
        readings: dict[str, Any] = {}
        for obj in [*detectors, monitor.ring_current, shutter.status]:
            reading = yield from bps.read(obj)
            readings.update(reading or {})
        problem = None
        if check_beam:
            i0 = readings.get(i0_key, {}).get("value")
            ring = readings.get(ring_key, {}).get("value")
            problem = guard.problem(
                None if ring is None else float(ring), None if i0 is None else float(i0)
            )
            if problem is None and readings.get(shutter_key, {}).get("value") != "Open":
                problem = "the shutter closed by itself"
        if problem is None:
            yield from bps.save()
            camera.accepted += 1
            return readings
        yield from bps.drop()
        yield from bps.checkpoint()  # a suspension from here on replays only the wait
        notice(f"suspended: {problem}")
        yield from bps.abs_set(shutter, "close", wait=True)
        yield from wait_for_beam(monitor, guard)
        yield from _ensure_open(shutter)
        notice(None)
