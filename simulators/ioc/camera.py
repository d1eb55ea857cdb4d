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
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import h5py
import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from simulators.ioc.physics import BeamState, FrameEngine

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
#: most beam states one blurred frame is integrated over.
MAX_BLUR_SAMPLES = 12


def readout_time_s(rows: int) -> float:
    """Rolling-shutter readout of ``rows`` sensor rows (s): 5 us per row plus 0.5 ms."""
    return 5e-6 * rows + 5e-4


ATTRIBUTES = (
    "energy_ev",
    "sample_x_m",
    "sample_y_m",
    "zp_z_m",
    "flux_ph_s",
    "shutter_open",
)


def _text(size: int = 256, value: str = "", **kwargs: Any) -> pvproperty:
    """A long-string PV (char waveform) as areaDetector uses for paths and messages."""
    return pvproperty(
        value=value,
        dtype=ChannelType.CHAR,
        max_length=size,
        report_as_string=False,
        **kwargs,
    )


class FrameFile:
    """One HDF5 file of an acquisition series, written in SWMR mode.

    Parameters
    ----------
    path : file to create
    n : frame width and height (pixels)
    dtype : frame dtype (uint16 or uint32)
    """

    def __init__(self, path: str, n: int, dtype: np.dtype) -> None:
        self.path = path
        self.h5 = h5py.File(path, "w", libver="latest")
        data = self.h5.require_group("entry/data")
        self.data = data.create_dataset(
            "data", shape=(0, n, n), maxshape=(None, n, n), chunks=(1, n, n), dtype=dtype
        )
        attrs = self.h5.require_group("entry/instrument/NDAttributes")
        self.attrs = {
            key: attrs.create_dataset(key, shape=(0,), maxshape=(None,), dtype="f8")
            for key in ATTRIBUTES
        }
        self.h5.swmr_mode = True
        self.count = 0

    def append(self, frame: np.ndarray, state: BeamState) -> None:
        """Write one frame and its beam state at record ``count``, then flush for readers.

        A record that exists already (the client rewound ``count``) is overwritten.
        """
        i = self.count
        if frame.shape != self.data.shape[1:]:
            raise ValueError(f"frame shape {frame.shape} differs from {self.data.shape[1:]}")
        if self.data.shape[0] < i + 1:
            self.data.resize(i + 1, axis=0)
            for dset in self.attrs.values():
                dset.resize(i + 1, axis=0)
        self.data[i] = frame
        for key, dset in self.attrs.items():
            dset[i] = float(getattr(state, key))
        self.h5.flush()
        self.count = i + 1

    def rewind(self, record: int) -> None:
        """Write the next frame at ``record`` (0 <= record <= count)."""
        if not 0 <= record <= self.count:
            raise ValueError(f"record {record} is outside 0..{self.count}")
        self.count = record

    def close(self) -> None:
        """Cut the datasets to ``count`` records (rejected frames go) and close the file."""
        if self.data.shape[0] > self.count:
            self.data.resize(self.count, axis=0)
            for dset in self.attrs.values():
                dset.resize(self.count, axis=0)
        self.h5.close()


class AreaDetector(PVGroup):
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
    acquire = pvproperty(
        value="Done", name="cam1:Acquire", dtype=ChannelType.ENUM, enum_strings=["Done", "Acquire"]
    )
    acquire_rbv = pvproperty(
        value="Done",
        name="cam1:Acquire_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=["Done", "Acquire"],
        read_only=True,
    )
    acquire_time = pvproperty(value=0.1, name="cam1:AcquireTime", precision=4)
    acquire_time_rbv = pvproperty(
        value=0.1, name="cam1:AcquireTime_RBV", precision=4, read_only=True
    )
    acquire_period = pvproperty(value=0.0, name="cam1:AcquirePeriod", precision=4)
    acquire_period_rbv = pvproperty(
        value=0.0, name="cam1:AcquirePeriod_RBV", precision=4, read_only=True
    )
    image_mode = pvproperty(
        value="Single", name="cam1:ImageMode", dtype=ChannelType.ENUM, enum_strings=IMAGE_MODES
    )
    image_mode_rbv = pvproperty(
        value="Single",
        name="cam1:ImageMode_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=IMAGE_MODES,
        read_only=True,
    )
    num_images = pvproperty(value=1, name="cam1:NumImages")
    num_images_rbv = pvproperty(value=1, name="cam1:NumImages_RBV", read_only=True)
    num_images_counter = pvproperty(value=0, name="cam1:NumImagesCounter_RBV", read_only=True)
    trigger_mode = pvproperty(
        value="Internal",
        name="cam1:TriggerMode",
        dtype=ChannelType.ENUM,
        enum_strings=["Internal", "External"],
    )
    readout_time = pvproperty(
        value=0.0025, name="cam1:ReadoutTime_RBV", precision=5, read_only=True
    )
    missed_triggers = pvproperty(value=0, name="cam1:MissedTriggers_RBV", read_only=True)
    detector_state = pvproperty(
        value="Idle",
        name="cam1:DetectorState_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=DETECTOR_STATES,
        read_only=True,
    )
    status_message = _text(name="cam1:StatusMessage_RBV", value="Idle", read_only=True)
    array_counter = pvproperty(value=0, name="cam1:ArrayCounter")
    array_counter_rbv = pvproperty(value=0, name="cam1:ArrayCounter_RBV", read_only=True)
    min_x = pvproperty(value=640, name="cam1:MinX")
    min_y = pvproperty(value=640, name="cam1:MinY")
    size_x = pvproperty(value=768, name="cam1:SizeX")
    size_y = pvproperty(value=768, name="cam1:SizeY")
    bin_x = pvproperty(value=3, name="cam1:BinX")
    bin_y = pvproperty(value=3, name="cam1:BinY")
    min_x_rbv = pvproperty(value=640, name="cam1:MinX_RBV", read_only=True)
    min_y_rbv = pvproperty(value=640, name="cam1:MinY_RBV", read_only=True)
    size_x_rbv = pvproperty(value=768, name="cam1:SizeX_RBV", read_only=True)
    size_y_rbv = pvproperty(value=768, name="cam1:SizeY_RBV", read_only=True)
    bin_x_rbv = pvproperty(value=3, name="cam1:BinX_RBV", read_only=True)
    bin_y_rbv = pvproperty(value=3, name="cam1:BinY_RBV", read_only=True)
    max_size_x = pvproperty(value=2048, name="cam1:MaxSizeX_RBV", read_only=True)
    max_size_y = pvproperty(value=2048, name="cam1:MaxSizeY_RBV", read_only=True)
    array_size_x = pvproperty(value=256, name="cam1:ArraySizeX_RBV", read_only=True)
    array_size_y = pvproperty(value=256, name="cam1:ArraySizeY_RBV", read_only=True)
    data_type = pvproperty(
        value="UInt32",
        name="cam1:DataType_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=["UInt16", "UInt32"],
        read_only=True,
    )
    pixel_size = pvproperty(value=11.0, name="cam1:PixelSize_RBV", precision=3, read_only=True)
    temperature = pvproperty(value=-20.0, name="cam1:Temperature", precision=2)
    temperature_rbv = pvproperty(
        value=-20.0, name="cam1:Temperature_RBV", precision=2, read_only=True
    )
    # -- stats --------------------------------------------------------------------------
    stats_total = pvproperty(value=0.0, name="Stats1:Total_RBV", read_only=True)
    stats_max = pvproperty(value=0.0, name="Stats1:MaxValue_RBV", read_only=True)
    # -- HDF5 writer --------------------------------------------------------------------
    file_path = _text(name="HDF1:FilePath")
    file_path_rbv = _text(name="HDF1:FilePath_RBV", read_only=True)
    file_path_exists = pvproperty(value=0, name="HDF1:FilePathExists_RBV", read_only=True)
    file_name = _text(name="HDF1:FileName")
    file_name_rbv = _text(name="HDF1:FileName_RBV", read_only=True)
    file_template = _text(name="HDF1:FileTemplate", value="%s%s_%6.6d.h5")
    file_number = pvproperty(value=0, name="HDF1:FileNumber")
    file_number_rbv = pvproperty(value=0, name="HDF1:FileNumber_RBV", read_only=True)
    auto_increment = pvproperty(value=1, name="HDF1:AutoIncrement")
    write_mode = pvproperty(
        value="Stream",
        name="HDF1:FileWriteMode",
        dtype=ChannelType.ENUM,
        enum_strings=["Single", "Capture", "Stream"],
    )
    capture = pvproperty(
        value="Done", name="HDF1:Capture", dtype=ChannelType.ENUM, enum_strings=["Done", "Capture"]
    )
    capture_rbv = pvproperty(
        value="Done",
        name="HDF1:Capture_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=["Done", "Capture"],
        read_only=True,
    )
    num_capture = pvproperty(value=0, name="HDF1:NumCapture")
    num_captured = pvproperty(value=0, name="HDF1:NumCaptured_RBV", read_only=True)
    next_record = pvproperty(value=0, name="HDF1:NextRecord")
    full_file_name = _text(name="HDF1:FullFileName_RBV", read_only=True)
    write_message = _text(name="HDF1:WriteMessage", read_only=True)
    write_status = pvproperty(
        value="Write OK",
        name="HDF1:WriteStatus",
        dtype=ChannelType.ENUM,
        enum_strings=["Write OK", "Write error"],
        read_only=True,
    )
    dropped = pvproperty(value=0, name="HDF1:DroppedArrays_RBV", read_only=True)
    hdf_array_counter = pvproperty(value=0, name="HDF1:ArrayCounter_RBV", read_only=True)
    enable = pvproperty(
        value="Enable",
        name="HDF1:EnableCallbacks",
        dtype=ChannelType.ENUM,
        enum_strings=["Disable", "Enable"],
    )

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

    # -- settings with readbacks -------------------------------------------------------------
    @acquire_time.putter
    async def acquire_time(self, instance, value: float) -> float:  # noqa: F811
        value = max(float(value), 1e-4)
        await self.acquire_time_rbv.write(value)
        return value

    @acquire_period.putter
    async def acquire_period(self, instance, value: float) -> float:  # noqa: F811
        value = max(float(value), 0.0)
        await self.acquire_period_rbv.write(value)
        return value

    @image_mode.putter
    async def image_mode(self, instance, value: str) -> str:  # noqa: F811
        await self.image_mode_rbv.write(value)
        return value

    @num_images.putter
    async def num_images(self, instance, value: int) -> int:  # noqa: F811
        value = max(int(value), 1)
        await self.num_images_rbv.write(value)
        return value

    @array_counter.putter
    async def array_counter(self, instance, value: int) -> int:  # noqa: F811
        await self.array_counter_rbv.write(int(value))
        return value

    @temperature.putter
    async def temperature(self, instance, value: float) -> float:  # noqa: F811
        await self.temperature_rbv.write(float(value))
        return value

    @size_x.putter
    async def size_x(self, instance, value: int) -> int:  # noqa: F811
        return await self._geometry_write(instance, value)

    @size_y.putter
    async def size_y(self, instance, value: int) -> int:  # noqa: F811
        return await self._geometry_write(instance, value)

    @bin_x.putter
    async def bin_x(self, instance, value: int) -> int:  # noqa: F811
        return await self._geometry_write(instance, value)

    @bin_y.putter
    async def bin_y(self, instance, value: int) -> int:  # noqa: F811
        return await self._geometry_write(instance, value)

    async def _geometry_write(self, instance, value: int) -> int:
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

    @file_name.putter
    async def file_name(self, instance, value: str) -> str:  # noqa: F811
        await self.file_name_rbv.write(str(value))
        return value

    @file_number.putter
    async def file_number(self, instance, value: int) -> int:  # noqa: F811
        await self.file_number_rbv.write(int(value))
        return value

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

    async def _finish(self, state: str = "Idle") -> None:
        await self.acquire.write("Done", verify_value=False)
        await self.acquire_rbv.write("Done")
        await self.detector_state.write(state)

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
            if self.faults().get("camera_timeout"):
                await self.consume_timeout()
                await self.status_message.write("Waiting for the camera (timeout fault)")
                while True:  # the camera hangs until Acquire = 0
                    await asyncio.sleep(3600)
            state = self.beam_state()
            n, binning = self.frame_shape()
            job = loop.run_in_executor(self.pool, self.engine.frame, state, n, binning, exposure)
            await asyncio.sleep(exposure)
            try:
                frame, _ = await job
            except ValueError as err:
                await self.status_message.write(str(err)[:255])
                await self._finish("Error")
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
                if self.faults().get("camera_timeout"):
                    await self.consume_timeout()
                    await self.status_message.write("Waiting for the camera (timeout fault)")
                    while True:  # the camera hangs until Acquire = 0
                        await asyncio.sleep(3600)
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
        try:
            frame, _ = await job
        except ValueError as err:
            await self.status_message.write(str(err)[:255])
            await self._finish("Error")
            return
        await self._publish(frame, state, index, previous)

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
