"""Simulated piezo scan controller: hardware-timed trajectories, camera triggers, encoders.

Fast ptychography beamlines do not step the sample point by point from the control system:
a scan controller (a PI E-712, a PandABox with a piezo amplifier, a Delta Tau) holds the
whole trajectory, moves the piezo stage itself, fires the camera's external trigger once per
point and latches the stage encoders during every exposure. This group plays that part.

PVs (``P`` is the IOC prefix):

=========================  ============================================================
``Pscan:traj_x/traj_y``    trajectory: fine stage targets (um), up to :data:`MAX_POINTS`
``Pscan:first/count``      the segment to run: points ``first .. first + count - 1``
``Pscan:motion``           ``Step`` (move, settle, trigger, hold) or ``Continuous``
                           (constant speed through the points, one trigger per period)
``Pscan:period``           trigger spacing (s): at least the camera's exposure plus readout
``Pscan:gate``             exposure window over which the encoders are averaged (s)
``Pscan:settle``           settling time after a step (s); ``Pscan:velocity`` piezo speed
``Pscan:go`` / ``abort``   1 runs the segment / stops it where it is
``Pscan:state_RBV``        Idle, Running, Done, Stopped (by ``abort`` or a fault)
``Pscan:index_RBV``        triggers fired in the segment
``Pscan:enc_x/enc_y``      per point: mean encoder position over the gate (um)
``Pscan:enc_dx/enc_dy``    per point: spread (standard deviation) over the gate (um)
``Pscan:i0/ring``          per point: lowest incident flux (ph/s) and ring current (mA)
                           seen at the start and the end of the gate
``Pscan:shutter``          per point: 1 when the shutter was open for the whole gate
``Pscan:time``             per point: trigger time (s since the epoch)
=========================  ============================================================

The piezo follows its target with a closed-loop error of :data:`SERVO_ERROR_M` (rms) and
the encoders read with :data:`ENCODER_NOISE_M` (rms) per sample, so the recorded positions
differ from the commanded ones as a real stage's do. In continuous motion the stage passes
point ``i`` at trigger ``i`` and reaches point ``i + 1`` one period later (the last point of
a segment continues in the same direction), so the exposure smears the probe over
``gate / period`` of a step; in step motion it is still during the exposure.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from caproto.server import PVGroup

from simulators.ioc.aio import cancel
from simulators.ioc.pvs import enum_pv, number_pv, text_pv, waveform_pv

#: Most points a trajectory may hold (``ScanParams.max_points``).
MAX_POINTS = 10000
#: rms closed-loop following error of the piezo stage (m).
SERVO_ERROR_M = 3e-9
#: rms noise of one encoder sample (m).
ENCODER_NOISE_M = 1e-9
#: encoder samples averaged over one gate.
ENCODER_SAMPLES = 16

#: Per point records: attribute -> PV name after ``scan:``.
RECORDS = {
    "enc_x": "enc_x",
    "enc_y": "enc_y",
    "enc_dx": "enc_dx",
    "enc_dy": "enc_dy",
    "i0": "i0",
    "ring": "ring",
    "shutter": "shutter",
    "trig_time": "time",
}

#: A path: seconds since the trigger -> fine stage position (x, y) in metres.
Path = Callable[[float], tuple[float, float]]


class PiezoScanController(PVGroup):
    """The scan controller's PVs (``{prefix}scan:``).

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    move_fine : sets the fine stage position (x, y) in um (the motor records follow)
    fine_um : returns the fine stage position (x, y) in um
    trigger_camera : fires the camera's external trigger with the path of the exposure and
        the pulse's time (``time.monotonic``); returns False when the camera was not ready
        (a missed trigger)
    beam : returns (I0 ph/s, ring mA, shutter open) now
    stop_fault : returns the point at which the controller stops with a fault (0: none) and
        clears it
    seed : seed of the servo and encoder noise
    """

    traj_x = waveform_pv("scan:traj_x", size=MAX_POINTS)
    traj_y = waveform_pv("scan:traj_y", size=MAX_POINTS)
    npoints = number_pv("scan:npoints_RBV", 0, read_only=True)
    first = number_pv("scan:first", 0)
    count = number_pv("scan:count", 0)
    motion = enum_pv("scan:motion", "Step", choices=["Step", "Continuous"])
    period = number_pv("scan:period", 0.1, precision=5)
    gate = number_pv("scan:gate", 0.1, precision=5)
    settle = number_pv("scan:settle", 0.004, precision=5)
    velocity = number_pv("scan:velocity", 1000.0, precision=2)
    go = number_pv("scan:go", 0)
    abort = number_pv("scan:abort", 0)
    state = enum_pv(
        "scan:state_RBV", "Idle", choices=["Idle", "Running", "Done", "Stopped"], read_only=True
    )
    index = number_pv("scan:index_RBV", 0, read_only=True)
    message = text_pv("scan:message_RBV", read_only=True)
    missed = number_pv("scan:missed_RBV", 0, read_only=True)
    # per point records of the last segment, one PV per entry of RECORDS
    enc_x, enc_y, enc_dx, enc_dy, i0, ring, shutter, trig_time = (
        waveform_pv(f"scan:{pv}", size=MAX_POINTS, read_only=True) for pv in RECORDS.values()
    )

    def __init__(
        self,
        prefix: str,
        *,
        move_fine: Callable[[float, float], Any],
        fine_um: Callable[[], tuple[float, float]],
        trigger_camera: Callable[[Path, float], bool],
        beam: Callable[[], tuple[float, float, bool]],
        stop_fault: Callable[[], Any],
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, **kwargs)
        self.move_fine = move_fine
        self.fine_um = fine_um
        self.trigger_camera = trigger_camera
        self.beam = beam
        self.stop_fault = stop_fault
        self.rng = np.random.default_rng(seed + 7)
        self._task: asyncio.Task | None = None

    # -- set-up ---------------------------------------------------------------------------
    @traj_x.putter
    async def traj_x(self, instance, value) -> Any:  # noqa: F811
        await self.npoints.write(min(len(value), len(self.traj_y.value)))
        return value

    @traj_y.putter
    async def traj_y(self, instance, value) -> Any:  # noqa: F811
        await self.npoints.write(min(len(value), len(self.traj_x.value)))
        return value

    @go.putter
    async def go(self, instance, value: int) -> int:  # noqa: F811
        if not value:
            return 0
        if self._task is not None and not self._task.done():
            raise ValueError("scan:go: a segment is running; abort it first")
        first, count = int(self.first.value), int(self.count.value)
        n = min(len(self.traj_x.value), len(self.traj_y.value))
        if count < 1 or first < 0 or first + count > n:
            raise ValueError(f"scan:go: points {first}..{first + count - 1} outside 0..{n - 1}")
        await self.state.write("Running")
        await self.index.write(0)
        await self.message.write("")
        self._task = asyncio.get_running_loop().create_task(self._run(first, count))
        return 0

    @abort.putter
    async def abort(self, instance, value: int) -> int:  # noqa: F811
        if value and cancel(self._task):
            await self._stopped("aborted")
        return 0

    async def _stopped(self, why: str) -> None:
        await self.message.write(why[:255])
        await self.state.write("Stopped")

    # -- motion ---------------------------------------------------------------------------
    def _servo(self) -> np.ndarray:
        """(2,) float64 closed-loop error of the stage now (um)."""
        return self.rng.normal(0.0, SERVO_ERROR_M * 1e6, 2)

    async def _move_to(self, target_um: np.ndarray) -> None:
        """Step to ``target_um`` (x, y) and settle."""
        here = np.asarray(self.fine_um(), float)
        distance = float(np.hypot(*(target_um - here)))
        velocity = max(float(self.velocity.value), 1e-3)
        await asyncio.sleep(distance / velocity + max(float(self.settle.value), 0.0))
        self.move_fine(*(target_um + self._servo()))

    async def _sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def _encoders(self, path: Path, gate: float) -> tuple[float, float, float, float]:
        """Mean and spread (x, y, dx, dy in um) of the encoder samples over the gate."""
        t = (np.arange(ENCODER_SAMPLES) + 0.5) * gate / ENCODER_SAMPLES
        xy = np.array([path(ti) for ti in t]) * 1e6
        xy += self.rng.normal(0.0, ENCODER_NOISE_M * 1e6, xy.shape)
        mean, spread = xy.mean(axis=0), xy.std(axis=0)
        return float(mean[0]), float(mean[1]), float(spread[0]), float(spread[1])

    async def _run(self, first: int, count: int) -> None:
        """Run points ``first .. first + count - 1``: trigger, latch encoders, record beam."""
        targets = np.stack(
            [
                np.asarray(self.traj_x.value, float)[first : first + count],
                np.asarray(self.traj_y.value, float)[first : first + count],
            ],
            axis=1,
        )
        continuous = str(self.motion.value) == "Continuous"
        period = max(float(self.period.value), 1e-4)
        gate = max(float(self.gate.value), 1e-5)
        stop_at = int(self.stop_fault() or 0)
        records: dict[str, list[float]] = {k: [] for k in RECORDS}
        pending: list[asyncio.Task] = []
        try:
            await self._move_to(targets[0])
            start = np.asarray(self.fine_um(), float)
            t0 = time.monotonic()
            last = -math.inf
            for i in range(count):
                if stop_at and i == stop_at:
                    x, y = self.fine_um()
                    await self._stopped(
                        f"following error on sample:fx at point {first + i} "
                        f"(x {x:.3f} um): servo off"
                    )
                    return
                if continuous:
                    here = start + (targets[i] - targets[0])
                    ahead = targets[i + 1] if i + 1 < count else 2 * targets[i] - targets[i - 1]
                    step = (ahead - targets[i]) if count > 1 else np.zeros(2)
                    t_trig = t0 + i * period
                    await self._sleep_until(t_trig)
                    path = _linear_path(here * 1e-6, step * 1e-6 / period)
                else:
                    if i:  # the stage moves once the last exposure has ended
                        await self._sleep_until(last + gate)
                        await self._move_to(targets[i])
                    await self._sleep_until(last + period)
                    t_trig = time.monotonic()
                    path = _still_path(np.asarray(self.fine_um(), float) * 1e-6)
                last = t_trig
                wall = time.time()
                if not self.trigger_camera(path, t_trig):
                    await self.missed.write(int(self.missed.value) + 1)
                i0_start, ring_start, open_start = self.beam()
                enc = self._encoders(path, gate)
                pending.append(
                    asyncio.get_running_loop().create_task(
                        self._latch(records, i, enc, wall, (i0_start, ring_start, open_start), gate)
                    )
                )
                await self.index.write(i + 1)
                if continuous:  # the stage moves on: the records show where it is
                    x, y = path(min(period, gate))
                    self.move_fine(x * 1e6, y * 1e6)
            await asyncio.gather(*pending)
            if continuous:
                x, y = path(period)
                self.move_fine(x * 1e6, y * 1e6)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise
        finally:
            await self._publish(records)
        await self.state.write("Done")

    async def _latch(
        self,
        records: dict[str, list[float]],
        i: int,
        enc: tuple[float, float, float, float],
        wall: float,
        beam_start: tuple[float, float, bool],
        gate: float,
    ) -> None:
        """Record point ``i`` once its gate has ended (beam seen at both ends of the gate)."""
        await asyncio.sleep(gate)
        i0_end, ring_end, open_end = self.beam()
        i0_start, ring_start, open_start = beam_start
        row = {
            "enc_x": enc[0],
            "enc_y": enc[1],
            "enc_dx": enc[2],
            "enc_dy": enc[3],
            "i0": min(i0_start, i0_end),
            "ring": min(ring_start, ring_end),
            "shutter": float(open_start and open_end),
            "trig_time": wall,
        }
        for key, value in row.items():
            records[key].extend([math.nan] * (i + 1 - len(records[key])))
            records[key][i] = value

    async def _publish(self, records: dict[str, list[float]]) -> None:
        n = min((len(v) for v in records.values()), default=0)
        for key, values in records.items():
            await getattr(self, key).write(list(values[:n]) or [0.0])


def _still_path(xy_m: np.ndarray) -> Path:
    x, y = float(xy_m[0]), float(xy_m[1])
    return lambda t: (x, y)


def _linear_path(xy_m: np.ndarray, velocity_m_s: np.ndarray) -> Path:
    x, y = float(xy_m[0]), float(xy_m[1])
    vx, vy = float(velocity_m_s[0]), float(velocity_m_s[1])
    return lambda t: (x + vx * t, y + vy * t)
