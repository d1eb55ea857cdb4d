"""Simulated areaDetector sCMOS camera: driver (``cam1:``), HDF5 writer (``HDF1:``), stats.

The driver follows areaDetector's ADBase conventions: ``Acquire = 1`` starts a series of
``NumImages`` frames (``ImageMode`` Single / Multiple / Continuous), each exposed for
``AcquireTime`` and spaced by at least ``AcquirePeriod``; ``ArrayCounter_RBV`` counts
frames; ``DetectorState_RBV`` is Acquire while exposing. The frame size is ``SizeX / BinX``
binned pixels (the region is centred on the optical axis). Frames are computed by
:class:`simulators.ioc.physics.FrameEngine` in a worker thread while the exposure runs, so
the IOC keeps serving Channel Access. With ``TriggerMode = External`` an ``Acquire`` arms the
camera (``DetectorState_RBV`` Waiting) for ``NumImages`` frames, each exposed on a trigger
from the scan controller (:mod:`simulators.ioc.scanner`) and computed along the stage's
path during the exposure; a trigger that comes while the camera still exposes or reads out
(``ReadoutTime_RBV``) is missed and counted in ``MissedTriggers_RBV``.

The HDF5 writer works like NDFileHDF5 in Stream mode: ``Capture = 1`` opens
``FileTemplate % (FilePath, FileName, FileNumber)`` (SWMR, dataset ``/entry/data/data`` of
shape ``(frames, n, n)``, per-frame beam state under ``/entry/instrument/NDAttributes``),
each frame is appended and flushed, ``NumCaptured_RBV`` counts them, and ``Capture = 0`` (or
``NumCapture`` frames) closes the file and increments ``FileNumber``.

Like NDFileHDF5's position mode (the record of each frame chosen by the client, as
NDPosPlugin does), ``NextRecord`` is the record the next frame is written to. It advances by
itself; a client that rejects a frame (taken while the beam was lost) sets it back by one so
the frame taken again replaces the rejected one, and the file keeps one frame per accepted
point, in order. When the file closes it is cut to ``NextRecord`` records.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from caproto.server import PVGroup

from simulators.ioc.camera_series import FrameSeries
from simulators.ioc.frame_file import FrameFile
from simulators.ioc.physics import BeamState, FrameEngine
from simulators.ioc.pvs import at_least, enum_pv, number_pv, readback_pair, text_pv

DETECTOR_STATES = [
    "Idle",
    "Acquire",
    "Readout",
    "Correct",
    "Saving",
    "Aborting",
    "Error",
    "Waiting",
    "Initializing",
    "Disconnected",
    "Aborted",
]
IMAGE_MODES = ["Single", "Multiple", "Continuous"]


def readout_time_s(rows: int) -> float:
    """Rolling-shutter readout of ``rows`` sensor rows (s): 5 us per row plus 0.5 ms."""
    return 5e-6 * rows + 5e-4


class AreaDetector(FrameSeries, PVGroup):
    """The camera's PVs (``{prefix}cam1:``, ``{prefix}HDF1:``, ``{prefix}Stats1:``).

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    engine : the frame engine
    beam_state : returns the current :class:`BeamState`
    faults : returns the current fault flags (``camera_timeout``, ``drop_frames``)
    consume_drop : called when a frame is dropped (decrements the drop fault)
    consume_timeout : called when a frame hangs (decrements the timeout fault)
    """

    # -- driver -------------------------------------------------------------------------
    acquire, acquire_rbv = readback_pair(
        "cam1:Acquire", "Done", factory=enum_pv, choices=["Done", "Acquire"]
    )
    acquire_time, acquire_time_rbv = readback_pair(
        "cam1:AcquireTime", 0.1, precision=4, copy=at_least(1e-4)
    )
    acquire_period, acquire_period_rbv = readback_pair(
        "cam1:AcquirePeriod", 0.0, precision=4, copy=at_least(0.0)
    )
    image_mode, image_mode_rbv = readback_pair(
        "cam1:ImageMode", "Single", factory=enum_pv, choices=IMAGE_MODES, copy=str
    )
    num_images, num_images_rbv = readback_pair("cam1:NumImages", 1, copy=at_least(1, int))
    num_images_counter = number_pv("cam1:NumImagesCounter_RBV", 0, read_only=True)
    trigger_mode = enum_pv("cam1:TriggerMode", "Internal", choices=["Internal", "External"])
    readout_time = number_pv("cam1:ReadoutTime_RBV", 0.0025, precision=5, read_only=True)
    missed_triggers = number_pv("cam1:MissedTriggers_RBV", 0, read_only=True)
    detector_state = enum_pv(
        "cam1:DetectorState_RBV", "Idle", choices=DETECTOR_STATES, read_only=True
    )
    status_message = text_pv("cam1:StatusMessage_RBV", "Idle", read_only=True)
    array_counter, array_counter_rbv = readback_pair("cam1:ArrayCounter", 0, copy=int)
    # the region: MinX/MinY follow SizeX (centred); SizeX/BinX set both axes
    min_x, min_x_rbv = readback_pair("cam1:MinX", 640)
    min_y, min_y_rbv = readback_pair("cam1:MinY", 640)
    size_x, size_x_rbv = readback_pair("cam1:SizeX", 768, method="_geometry_write")
    size_y, size_y_rbv = readback_pair("cam1:SizeY", 768, method="_geometry_write")
    bin_x, bin_x_rbv = readback_pair("cam1:BinX", 3, method="_geometry_write")
    bin_y, bin_y_rbv = readback_pair("cam1:BinY", 3, method="_geometry_write")
    max_size_x = number_pv("cam1:MaxSizeX_RBV", 2048, read_only=True)
    max_size_y = number_pv("cam1:MaxSizeY_RBV", 2048, read_only=True)
    array_size_x = number_pv("cam1:ArraySizeX_RBV", 256, read_only=True)
    array_size_y = number_pv("cam1:ArraySizeY_RBV", 256, read_only=True)
    data_type = enum_pv("cam1:DataType_RBV", "UInt32", choices=["UInt16", "UInt32"], read_only=True)
    pixel_size = number_pv("cam1:PixelSize_RBV", 11.0, precision=3, read_only=True)
    temperature, temperature_rbv = readback_pair("cam1:Temperature", -20.0, precision=2, copy=float)
    # -- stats --------------------------------------------------------------------------
    stats_total = number_pv("Stats1:Total_RBV", 0.0, read_only=True)
    stats_max = number_pv("Stats1:MaxValue_RBV", 0.0, read_only=True)
    # -- HDF5 writer --------------------------------------------------------------------
    file_path, file_path_rbv = readback_pair("HDF1:FilePath", "", factory=text_pv)
    file_path_exists = number_pv("HDF1:FilePathExists_RBV", 0, read_only=True)
    file_name, file_name_rbv = readback_pair("HDF1:FileName", "", factory=text_pv, copy=str)
    file_template = text_pv("HDF1:FileTemplate", "%s%s_%6.6d.h5")
    file_number, file_number_rbv = readback_pair("HDF1:FileNumber", 0, copy=int)
    auto_increment = number_pv("HDF1:AutoIncrement", 1)
    write_mode = enum_pv("HDF1:FileWriteMode", "Stream", choices=["Single", "Capture", "Stream"])
    capture, capture_rbv = readback_pair(
        "HDF1:Capture", "Done", factory=enum_pv, choices=["Done", "Capture"]
    )
    num_capture = number_pv("HDF1:NumCapture", 0)
    num_captured = number_pv("HDF1:NumCaptured_RBV", 0, read_only=True)
    next_record = number_pv("HDF1:NextRecord", 0)
    full_file_name = text_pv("HDF1:FullFileName_RBV", read_only=True)
    write_message = text_pv("HDF1:WriteMessage", read_only=True)
    write_status = enum_pv(
        "HDF1:WriteStatus", "Write OK", choices=["Write OK", "Write error"], read_only=True
    )
    dropped = number_pv("HDF1:DroppedArrays_RBV", 0, read_only=True)
    hdf_array_counter = number_pv("HDF1:ArrayCounter_RBV", 0, read_only=True)
    enable = enum_pv("HDF1:EnableCallbacks", "Enable", choices=["Disable", "Enable"])

    def __init__(
        self,
        prefix: str,
        *,
        engine: FrameEngine,
        beam_state: Callable[[], BeamState],
        faults: Callable[[], dict],
        consume_drop: Callable[[], Any],
        consume_timeout: Callable[[], Any],
        with_fine: Callable[[BeamState, float, float], BeamState] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, **kwargs)
        self.with_fine = with_fine or (lambda state, x, y: state)
        self.consume_timeout = consume_timeout
        self.engine = engine
        self.beam_state = beam_state
        self.faults = faults
        self.consume_drop = consume_drop
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camera")
        self.file: FrameFile | None = None
        self._task: asyncio.Task | None = None
        self.last_frame: np.ndarray | None = None
        self._triggers: asyncio.Queue | None = None
        self._busy_until = 0.0

    # -- region (SizeX, SizeY, BinX, BinY) ----------------------------------------------------
    async def _geometry_write(self, instance, value: int) -> int:
        """Put of SizeX/SizeY/BinX/BinY: check, store, recompute the region."""
        value = int(value)
        if not 1 <= value <= 2048:
            raise ValueError(f"{instance.pvname} must be within 1..2048, got {value}")
        await instance.write(value, verify_value=False)
        await self._update_geometry()
        return value

    async def _update_geometry(self) -> None:
        """Centre the region on the sensor and publish the readbacks and array size."""
        size = int(self.size_x.value)
        binning = int(self.bin_x.value)
        size = min(size - size % binning, 2048)
        start = (2048 - size) // 2
        await self.size_x_rbv.write(size)
        await self.size_y_rbv.write(size)
        await self.bin_x_rbv.write(binning)
        await self.bin_y_rbv.write(binning)
        await self.min_x_rbv.write(start)
        await self.min_y_rbv.write(start)
        await self.array_size_x.write(size // binning)
        await self.array_size_y.write(size // binning)
        await self.data_type.write("UInt16" if binning == 1 else "UInt32")
        await self.readout_time.write(readout_time_s(size))

    @stats_total.startup
    async def stats_total(self, instance, async_lib) -> None:  # noqa: F811
        await self._update_geometry()
        await self.file_name_rbv.write("")
        # Render the sample and probe of the start-up state while nobody waits for a frame.
        n, binning = self.frame_shape()
        state = replace(self.beam_state(), shutter_open=True, flux_ph_s=1.0)
        geom = self.engine.geometry(n, binning, state.energy_ev)
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self.pool, self.engine.expected_photons, state, geom, 1e-3)

    def frame_shape(self) -> tuple[int, int]:
        """(frame width in binned pixels, binning) of the current region."""
        binning = int(self.bin_x_rbv.value)
        return int(self.size_x_rbv.value) // binning, binning

    # -- HDF5 writer ----------------------------------------------------------------------
    @file_path.putter
    async def file_path(self, instance, value: str) -> str:  # noqa: F811
        path = str(value)
        if path and not path.endswith("/"):
            path += "/"
        try:
            os.makedirs(path, exist_ok=True)
            exists = os.access(path, os.W_OK)
        except OSError:
            exists = False
        await self.file_path_rbv.write(path)
        await self.file_path_exists.write(int(exists))
        return path

    @next_record.putter
    async def next_record(self, instance, value: int) -> int:  # noqa: F811
        if self.file is None:
            raise ValueError("HDF1:NextRecord: no file is open")
        self.file.rewind(int(value))
        await self.num_captured.write(self.file.count)
        return int(value)

    @capture.putter
    async def capture(self, instance, value: str) -> str:  # noqa: F811
        start = value in ("Capture", 1)
        if start and self.file is None:
            await self._open_file()
            return "Capture" if self.file is not None else "Done"
        if not start and self.file is not None:
            await self._close_file()
        return "Capture" if start and self.file is not None else "Done"

    async def _open_file(self) -> None:
        template = str(self.file_template.value) or "%s%s_%6.6d.h5"
        path = template % (
            str(self.file_path_rbv.value),
            str(self.file_name.value),
            int(self.file_number.value),
        )
        n, binning = self.frame_shape()
        dtype = np.dtype(np.uint16 if binning == 1 else np.uint32)
        loop = asyncio.get_running_loop()
        try:
            self.file = await loop.run_in_executor(self.pool, FrameFile, path, n, dtype)
        except (OSError, ValueError) as err:
            self.file = None
            await self.write_status.write("Write error")
            await self.write_message.write(f"cannot open {path}: {err}"[:255])
            return
        await self.write_status.write("Write OK")
        await self.write_message.write("")
        await self.num_captured.write(0)
        await self.next_record.write(0, verify_value=False)
        await self.full_file_name.write(path)
        await self.capture_rbv.write("Capture")

    async def _close_file(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            await asyncio.get_running_loop().run_in_executor(self.pool, file.close)
        if int(self.auto_increment.value):
            number = int(self.file_number.value) + 1
            await self.file_number.write(number, verify_value=False)
            await self.file_number_rbv.write(number)
        await self.capture.write("Done", verify_value=False)
        await self.capture_rbv.write("Done")

    # -- acquisition ----------------------------------------------------------------------
    @acquire.putter
    async def acquire(self, instance, value: str) -> str:  # noqa: F811
        start = value in ("Acquire", 1)
        running = self._task is not None and not self._task.done()
        if start and not running:
            await self.acquire_rbv.write("Acquire")
            await self.detector_state.write("Acquire")
            self._task = asyncio.get_running_loop().create_task(self._series())
        elif not start and running:
            self._task.cancel()
            await self._finish("Aborted")
        return "Acquire" if start else "Done"
