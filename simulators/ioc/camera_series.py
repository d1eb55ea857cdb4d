"""Frame series of the simulated camera: internal timing, external triggers, publication.

:class:`FrameSeries` is the acquisition half of :class:`simulators.ioc.camera.AreaDetector`
(a mixin: the PVs it reads and writes are declared there). Frames are computed by
:class:`simulators.ioc.physics.FrameEngine` in the camera's worker thread while the exposure
runs, so the IOC keeps serving Channel Access; each frame is published (counters, statistics,
file write) in acquisition order while the next one exposes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from simulators.ioc.aio import hang
from simulators.ioc.physics import BeamState

#: most beam states one blurred frame is integrated over.
MAX_BLUR_SAMPLES = 12


class FrameSeries:
    """Acquisition of ``NumImages`` frames, internally timed or on external triggers."""

    _task: asyncio.Task | None
    _triggers: asyncio.Queue | None
    _busy_until: float

    async def _finish(self, state: str = "Idle") -> None:
        await self.acquire.write("Done", verify_value=False)
        await self.acquire_rbv.write("Done")
        await self.detector_state.write(state)

    async def _hang_on_timeout_fault(self) -> None:
        """With the camera-timeout fault set, consume it and hang until ``Acquire = 0``."""
        if self.faults().get("camera_timeout"):
            await self.consume_timeout()
            await self.status_message.write("Waiting for the camera (timeout fault)")
            await hang()

    async def _series(self) -> None:
        """Expose ``NumImages`` frames; each frame is published while the next one exposes."""
        mode = str(self.image_mode.value)
        total = 1 if mode == "Single" else int(self.num_images.value)
        if str(self.trigger_mode.value) == "External":
            await self._series_external(mode, total)
            return
        loop = asyncio.get_running_loop()
        done = 0
        published: asyncio.Task | None = None
        await self.num_images_counter.write(0)
        while mode == "Continuous" or done < total:
            t0 = time.monotonic()
            exposure = float(self.acquire_time.value)
            period = max(float(self.acquire_period.value), exposure)
            await self._hang_on_timeout_fault()
            state = self.beam_state()
            n, binning = self.frame_shape()
            job = loop.run_in_executor(self.pool, self.engine.frame, state, n, binning, exposure)
            await asyncio.sleep(exposure)
            frame = await self._result(job)
            if frame is None:
                return
            done += 1
            published = loop.create_task(self._publish(frame, state, done, published))
            wait = period - (time.monotonic() - t0)
            if wait > 0 and (mode == "Continuous" or done < total):
                await asyncio.sleep(wait)
        if published is not None:
            await published
        await self.status_message.write("Idle")
        await self._finish("Idle")

    # -- external trigger -------------------------------------------------------------------
    def external_trigger(
        self, path: Callable[[float], tuple[float, float]], at: float | None = None
    ) -> bool:
        """A trigger pulse from the scan controller (the cable between the two).

        Parameters
        ----------
        path : seconds since the trigger -> fine stage position (x, y) in metres during
            the exposure that this trigger starts
        at : the pulse's time on the controller's clock (``time.monotonic``; now when None)

        Returns
        -------
        bool
            False when the camera was not armed, or still exposing or reading out the last
            frame: the trigger is missed (counted in ``MissedTriggers_RBV``).
        """
        at = time.monotonic() if at is None else at
        if self._triggers is None or at < self._busy_until - 1e-4:
            asyncio.get_running_loop().create_task(
                self.missed_triggers.write(int(self.missed_triggers.value) + 1)
            )
            return False
        exposure = float(self.acquire_time.value)
        self._busy_until = at + exposure + float(self.readout_time.value)
        self._triggers.put_nowait((at, path))
        return True

    async def _series_external(self, mode: str, total: int) -> None:
        """Armed for ``total`` frames, each exposed on a trigger from the scan controller.

        The frame is computed along the stage's path during the exposure
        (:meth:`simulators.ioc.physics.FrameEngine.frame_along`): a moving stage blurs it.
        The shutter and flux are those seen at the start (first half of the exposure) and at
        the end (second half).
        """
        loop = asyncio.get_running_loop()
        self._triggers = asyncio.Queue()
        self._busy_until = 0.0
        done = 0
        published: asyncio.Task | None = None
        await self.num_images_counter.write(0)
        await self.detector_state.write("Waiting")
        await self.status_message.write("Waiting for trigger")
        try:
            while mode == "Continuous" or done < total:
                at, path = await self._triggers.get()
                exposure = float(self.acquire_time.value)
                await self._hang_on_timeout_fault()
                await self.detector_state.write("Acquire")
                start = self.beam_state()
                await asyncio.sleep(max(at + exposure - time.monotonic(), 0.0))
                end = self.beam_state()
                n, binning = self.frame_shape()
                states = self._states_along(path, start, end, exposure, n, binning)
                job = loop.run_in_executor(
                    self.pool, self.engine.frame_along, states, n, binning, exposure
                )
                done += 1
                published = loop.create_task(
                    self._publish_job(job, states[len(states) // 2], done, published)
                )
                await self.detector_state.write("Readout")
                await asyncio.sleep(max(self._busy_until - time.monotonic(), 0.0))
                await self.detector_state.write("Waiting")
            if published is not None:
                await published
        finally:
            self._triggers = None
        await self.status_message.write("Idle")
        await self._finish("Idle")

    def _states_along(
        self,
        path: Callable[[float], tuple[float, float]],
        start: BeamState,
        end: BeamState,
        exposure: float,
        n: int,
        binning: int,
    ) -> list[BeamState]:
        """Beam states at K equally spaced times of the exposure, K from the blur length.

        K is 1 when the stage moves less than a tenth of a render pixel, otherwise two
        samples per pixel travelled (at most :data:`MAX_BLUR_SAMPLES`).
        """
        geom = self.engine.geometry(n, binning, start.energy_ev)
        pixel = geom.pixel_m / geom.upsample
        x0, y0 = path(0.0)
        x1, y1 = path(exposure)
        travel_px = math.hypot(x1 - x0, y1 - y0) / pixel
        k = 1 if travel_px < 0.1 else min(MAX_BLUR_SAMPLES, math.ceil(2 * travel_px) + 1)
        states = []
        for j in range(k):
            x, y = path((j + 0.5) * exposure / k)
            base = start if j < k / 2 else end
            states.append(self.with_fine(base, x, y))
        return states

    async def _publish_job(
        self, job: Any, state: BeamState, index: int, previous: asyncio.Task | None
    ) -> None:
        frame = await self._result(job)
        if frame is not None:
            await self._publish(frame, state, index, previous)

    async def _result(self, job: Any) -> np.ndarray | None:
        """The frame a frame job computed, or None after reporting its error (state Error)."""
        try:
            frame, _ = await job
        except ValueError as err:
            await self.status_message.write(str(err)[:255])
            await self._finish("Error")
            return None
        return frame

    async def _publish(
        self, frame: np.ndarray, state: BeamState, index: int, previous: asyncio.Task | None
    ) -> None:
        """Counters, statistics and the file write of one frame, in acquisition order."""
        if previous is not None:
            await previous
        self.last_frame = frame
        await self.array_counter.write(int(self.array_counter.value) + 1)
        await self.array_counter_rbv.write(int(self.array_counter.value))
        await self.num_images_counter.write(index)
        await self.stats_total.write(float(frame.sum(dtype=np.float64)))
        await self.stats_max.write(float(frame.max()))
        await self._store(frame, state)

    async def _store(self, frame: np.ndarray, state: BeamState) -> None:
        """Pass the frame to the HDF5 writer (or drop it when the drop fault says so)."""
        await self.hdf_array_counter.write(int(self.hdf_array_counter.value) + 1)
        if self.faults().get("drop_frames", 0) > 0:
            await self.consume_drop()
            await self.dropped.write(int(self.dropped.value) + 1)
            return
        if self.file is None or str(self.enable.value) != "Enable":
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.pool, self.file.append, frame, state)
        except (OSError, ValueError) as err:
            await self.write_status.write("Write error")
            await self.write_message.write(str(err)[:255])
            await self.dropped.write(int(self.dropped.value) + 1)
            return
        count = self.file.count
        await self.next_record.write(count, verify_value=False)
        await self.num_captured.write(count)
        target = int(self.num_capture.value)
        if target > 0 and count >= target:
            await self._close_file()
