"""sCMOS camera, areaDetector style: driver (``cam1:``), HDF5 file writer (``HDF1:``), stats.

Frames never travel inside events. ``stage()`` opens an HDF5 file through the writer plugin
(Stream mode, one file per staging) and emits a Resource document (spec ``AD_HDF5_SWMR``,
dataset ``/entry/data/data``); each ``trigger()`` exposes one frame and finishes when the
writer reports it written (``NumCaptured_RBV`` increments); ``read()`` then gives a datum id
for the image (a Datum document with the frame's ``point_number`` in the file is emitted by
:meth:`SCMOSCamera.collect_asset_docs`) plus scalars (frame counter, total counts).
A frame the writer drops, or one that never arrives, is taken again at once (``retries``
times); when every attempt fails the trigger fails with :class:`CameraFaultError`, one line
naming the camera. ``HDF1:NextRecord`` chooses the file record of the next frame (position
mode): plans write ``accepted`` (the frames of this file that became events) there before
each trigger, so a frame taken again replaces a refused or interrupted one and the file
keeps exactly one frame per event.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from event_model import compose_resource
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd.status import DeviceStatus
from ophyd.utils import InvalidState

log = logging.getLogger("sptycho.devices")


class FrameDroppedError(RuntimeError):
    """The HDF5 writer dropped a frame (it is not in the file)."""


class CameraFaultError(RuntimeError):
    """Every attempt at a frame failed (dropped, timed out, camera error)."""


def _finish(status: DeviceStatus, exc: Exception | None = None) -> None:
    """Finish ``status`` (with ``exc`` when given) unless it finished already."""
    try:
        if exc is None:
            status.set_finished()
        else:
            status.set_exception(exc)
    except InvalidState:
        pass


class CameraStatus(DeviceStatus):
    """DeviceStatus whose repr names the camera (it appears in timeout errors)."""

    def __repr__(self) -> str:
        return (
            f"CameraStatus(device={self.device.name}, done={self.done}, "
            f"success={self.success}, timeout={self.timeout})"
        )


def _rw(suffix: str, kind: str = "config", **kwargs: Any) -> Cpt:
    """areaDetector setting: write ``suffix``, read ``suffix_RBV``."""
    return Cpt(EpicsSignal, f"{suffix}_RBV", write_pv=suffix, kind=kind, **kwargs)


class CamDriver(Device):
    """ADBase-like driver PVs of the camera."""

    acquire = Cpt(EpicsSignal, "Acquire", kind="omitted")
    acquire_time = _rw("AcquireTime")
    acquire_period = _rw("AcquirePeriod")
    image_mode = _rw("ImageMode", string=True)
    num_images = _rw("NumImages")
    trigger_mode = Cpt(EpicsSignal, "TriggerMode", string=True, kind="config")
    readout_time = Cpt(EpicsSignalRO, "ReadoutTime_RBV", kind="config")
    missed_triggers = Cpt(EpicsSignalRO, "MissedTriggers_RBV", kind="omitted")
    detector_state = Cpt(EpicsSignalRO, "DetectorState_RBV", string=True, kind="omitted")
    status_message = Cpt(EpicsSignalRO, "StatusMessage_RBV", string=True, kind="omitted")
    array_counter = _rw("ArrayCounter", kind="normal")
    min_x = _rw("MinX")
    min_y = _rw("MinY")
    size_x = _rw("SizeX")
    size_y = _rw("SizeY")
    bin_x = _rw("BinX")
    bin_y = _rw("BinY")
    array_size_x = Cpt(EpicsSignalRO, "ArraySizeX_RBV", kind="config")
    array_size_y = Cpt(EpicsSignalRO, "ArraySizeY_RBV", kind="config")
    data_type = Cpt(EpicsSignalRO, "DataType_RBV", string=True, kind="config")
    pixel_size = Cpt(EpicsSignalRO, "PixelSize_RBV", kind="config")
    temperature = _rw("Temperature")


class HDF5Writer(Device):
    """NDFileHDF5-like file writer PVs."""

    enable = Cpt(EpicsSignal, "EnableCallbacks", string=True, kind="omitted")
    file_path = _rw("FilePath", string=True, kind="omitted")
    file_path_exists = Cpt(EpicsSignalRO, "FilePathExists_RBV", kind="omitted")
    file_name = _rw("FileName", string=True, kind="omitted")
    file_template = Cpt(EpicsSignal, "FileTemplate", string=True, kind="omitted")
    file_number = _rw("FileNumber", kind="omitted")
    auto_increment = Cpt(EpicsSignal, "AutoIncrement", kind="omitted")
    file_write_mode = Cpt(EpicsSignal, "FileWriteMode", string=True, kind="omitted")
    capture = _rw("Capture", string=True, kind="omitted")
    num_capture = Cpt(EpicsSignal, "NumCapture", kind="omitted")
    num_captured = Cpt(EpicsSignalRO, "NumCaptured_RBV", kind="omitted")
    full_file_name = Cpt(EpicsSignalRO, "FullFileName_RBV", string=True, kind="omitted")
    write_message = Cpt(EpicsSignalRO, "WriteMessage", string=True, kind="omitted")
    dropped_arrays = Cpt(EpicsSignalRO, "DroppedArrays_RBV", kind="omitted")
    next_record = Cpt(EpicsSignal, "NextRecord", kind="omitted")


class SCMOSCamera(Device):
    """The sCMOS camera as a bluesky-readable, triggerable device with external frames.

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    write_dir : directory the IOC writes HDF5 files into (as the IOC sees it)
    read_dir : the same directory as readers see it (``write_dir`` when None)
    frame_timeout_s : seconds a frame may take beyond its exposure before it is retried
    retries : how many times a dropped or timed-out frame is taken again at the same point
    **kwargs : ``Device`` arguments (``name``, ...)
    """

    cam = Cpt(CamDriver, "cam1:")
    hdf5 = Cpt(HDF5Writer, "HDF1:")
    stats_total = Cpt(EpicsSignalRO, "Stats1:Total_RBV", kind="normal")

    def __init__(
        self,
        prefix: str = "",
        *,
        write_dir: str = "/tmp/sptycho/frames",
        read_dir: str | None = None,
        frame_timeout_s: float = 3.0,
        retries: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(prefix, **kwargs)
        self.write_dir = str(write_dir)
        self.read_dir = str(read_dir or write_dir)
        self.frame_timeout_s = frame_timeout_s
        self.retries = retries
        self.retried = 0
        self.accepted = 0
        self._current: CameraStatus | None = None
        self._bundle: Any = None
        self._assets: deque = deque()
        self._datum_id: str | None = None
        self._datum_ts = 0.0
        self._lock = threading.Lock()
        self.file_name: str | None = None
        self._external = False

    @property
    def image_key(self) -> str:
        """Data key of the image in events."""
        return f"{self.name}_image"

    # -- staging -------------------------------------------------------------------------
    def stage(self) -> list:
        staged = super().stage()
        try:
            self._open_file()
        except Exception:
            super().unstage()
            raise
        return staged

    def _wait_value(self, signal: Any, want: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = signal.get(use_monitor=False)
            if value == want:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{signal.name} ({signal.pvname}) is {value!r}, expected {want!r} "
                    f"within {timeout} s"
                )
            time.sleep(0.01)

    def _open_file(self) -> None:
        h = self.hdf5
        if self.cam.acquire.get(use_monitor=False):  # armed for a fly scan, or stuck
            self.cam.acquire.put(0, wait=True)
        if h.capture.get(use_monitor=False) == "Capture":
            h.capture.put("Done", wait=True)
            self._wait_value(h.capture, "Done")
        write_dir = self.write_dir.rstrip("/") + "/"
        h.enable.put("Enable", wait=True)
        h.file_path.put(write_dir, wait=True)
        if not h.file_path_exists.get(use_monitor=False):
            raise OSError(f"{self.name}: the IOC cannot write to {write_dir}")
        name = f"{self.name}_{uuid.uuid4().hex[:12]}"
        h.file_name.put(name, wait=True)
        h.file_template.put("%s%s_%6.6d.h5", wait=True)
        h.auto_increment.put(1, wait=True)
        h.file_write_mode.put("Stream", wait=True)
        h.num_capture.put(0, wait=True)
        self.cam.image_mode.put("Single", wait=True)
        self.cam.num_images.put(1, wait=True)
        self.cam.trigger_mode.put("Internal", wait=True)
        self._external = False
        h.capture.put("Capture", wait=True)
        self._wait_value(h.capture, "Capture")
        full = str(h.full_file_name.get(use_monitor=False))
        if not full:
            raise OSError(f"{self.name}: the IOC opened no file: {h.write_message.get()}")
        self.file_name = full
        rel = PurePosixPath(full).relative_to(PurePosixPath(write_dir))
        self._bundle = compose_resource(
            spec="AD_HDF5_SWMR",
            root=self.read_dir,
            resource_path=str(rel),
            resource_kwargs={},  # one frame per point: events hold (ny, nx) images
        )
        self._assets.clear()
        self._assets.append(("resource", self._bundle.resource_doc))
        self._datum_id = None
        self.accepted = 0

    def unstage(self) -> list:
        try:
            h = self.hdf5
            if h.capture.get(use_monitor=False) == "Capture":
                h.capture.put("Done", wait=True)
                self._wait_value(h.capture, "Done")
        finally:
            self._bundle = None
        return super().unstage()

    # -- acquisition ----------------------------------------------------------------------
    def trigger(self) -> CameraStatus:
        """Expose one frame; the status finishes when the frame is in the HDF5 file.

        A frame the writer drops, a frame that does not arrive within ``exposure +
        frame_timeout_s`` and a camera error are retried at once (acquisition stopped, then
        triggered again), up to ``retries`` times; each retry is logged as a warning and
        counted in ``retried``. When every attempt failed the status fails with
        :class:`CameraFaultError`, whose message is one line naming the camera and what to do.
        """
        if self._bundle is None:
            raise RuntimeError(f"{self.name} is not staged: stage it before triggering")
        outer = CameraStatus(self)
        self._current = outer
        self._attempt(outer, 1)
        return outer

    def _attempt(self, outer: CameraStatus, attempt: int) -> None:
        """Start exposure number ``attempt`` of the frame that ``outer`` waits for."""
        h = self.hdf5
        captured0 = int(h.num_captured.get(use_monitor=False))
        dropped0 = int(h.dropped_arrays.get(use_monitor=False))
        exposure = float(self.cam.acquire_time.get())
        concluded = threading.Event()
        subs: list[tuple[Any, int]] = []
        timer = threading.Timer(
            exposure + self.frame_timeout_s,
            lambda: conclude(f"no frame within {exposure + self.frame_timeout_s:.3g} s"),
        )

        def conclude(problem: str | None) -> None:
            with self._lock:
                if concluded.is_set():
                    return
                concluded.set()
            timer.cancel()
            for signal, cid in subs:
                signal.unsubscribe(cid)
            if outer.done:
                return
            if problem is None:
                _finish(outer)
            elif self._current is not outer:
                _finish(outer, CameraFaultError(f"{self.name}: stopped"))
            elif attempt <= self.retries:
                self.retried += 1
                log.warning(
                    "%s: %s; retrying (%d of %d)", self.name, problem, attempt, self.retries
                )
                threading.Thread(target=self._retry, args=(outer, attempt), daemon=True).start()
            else:
                _finish(
                    outer,
                    CameraFaultError(
                        f"{self.name}: {problem} ({attempt} attempts); check the camera and "
                        "its HDF5 writer, then resume"
                    ),
                )

        def on_captured(value: Any = None, **_: Any) -> None:
            if value is not None and int(value) > captured0 and not concluded.is_set():
                with self._lock:
                    datum = self._bundle.compose_datum(
                        datum_kwargs={"point_number": int(value) - 1}
                    )
                    self._assets.append(("datum", datum))
                    self._datum_id = datum["datum_id"]
                    self._datum_ts = time.time()
                conclude(None)

        def on_dropped(value: Any = None, **_: Any) -> None:
            if value is not None and int(value) > dropped0:
                conclude("the HDF5 writer dropped the frame")

        def on_state(value: Any = None, **_: Any) -> None:
            if value == "Error":
                conclude(f"camera error: {self.cam.status_message.get()}")

        subs.append((h.num_captured, h.num_captured.subscribe(on_captured, run=False)))
        subs.append((h.dropped_arrays, h.dropped_arrays.subscribe(on_dropped, run=False)))
        subs.append(
            (self.cam.detector_state, self.cam.detector_state.subscribe(on_state, run=False))
        )
        timer.daemon = True
        timer.start()
        self.cam.acquire.put(1, wait=False)

    def _retry(self, outer: CameraStatus, attempt: int) -> None:
        """Stop what the camera is doing and expose again (runs in a thread of its own)."""
        try:
            self.cam.acquire.put(0, wait=True)
            self._wait_value(self.cam.acquire, 0, timeout=5.0)
            if not outer.done:
                self._attempt(outer, attempt + 1)
        except Exception as err:  # noqa: BLE001 - reported through the status
            _finish(outer, CameraFaultError(f"{self.name}: cannot re-trigger: {err}"))

    # -- triggered streaming (fly scans) -----------------------------------------------------
    def arm(self, frames: int) -> None:
        """Wait for ``frames`` external triggers; each frame goes to record ``accepted + k``.

        The camera is switched to external triggering (``TriggerMode External``,
        ``ImageMode Multiple``); :meth:`disarm` switches it back for step scans.
        """
        if self._bundle is None:
            raise RuntimeError(f"{self.name} is not staged: stage it before arming")
        self.cam.acquire.put(0, wait=True)
        self._wait_value(self.cam.acquire, 0)
        self.hdf5.next_record.put(self.accepted, wait=True)
        if not self._external:
            self.cam.trigger_mode.put("External", wait=True)
            self.cam.image_mode.put("Multiple", wait=True)
            self._external = True
        self.cam.num_images.put(int(frames), wait=True)
        self.cam.acquire.put(1, wait=True)
        self._wait_value(self.cam.detector_state, "Waiting")

    def disarm(self) -> None:
        """Stop waiting for triggers; back to one internally triggered frame per trigger()."""
        self.cam.acquire.put(0, wait=True)
        self.cam.trigger_mode.put("Internal", wait=True)
        self.cam.image_mode.put("Single", wait=True)
        self.cam.num_images.put(1, wait=True)
        self._external = False

    def captured(self) -> int:
        """Frames in the current file (the writer's ``NumCaptured_RBV``)."""
        return int(self.hdf5.num_captured.get(use_monitor=False))

    def dropped(self) -> int:
        """Frames the writer dropped since the IOC started."""
        return int(self.hdf5.dropped_arrays.get(use_monitor=False))

    def stream_resource(self) -> dict[str, Any]:
        """StreamResource fields of the current file (for flyers that emit StreamDatum)."""
        if self.file_name is None:
            raise RuntimeError(f"{self.name} is not staged")
        rel = PurePosixPath(self.file_name).relative_to(
            PurePosixPath(self.write_dir.rstrip("/") + "/")
        )
        path = PurePosixPath(self.read_dir) / rel
        return {
            "mimetype": "application/x-hdf5",
            "uri": f"file://localhost{path}",
            "data_key": self.image_key,
            "parameters": {"dataset": "/entry/data/data", "swmr": True},
        }

    def stop(self, *, success: bool = False) -> None:
        """Abort the exposure in progress (a pending retry gives up)."""
        self._current = None
        self.cam.acquire.put(0, wait=False)

    # -- documents ------------------------------------------------------------------------
    def read(self) -> dict[str, dict[str, Any]]:
        out = super().read()
        out[self.image_key] = {"value": self._datum_id, "timestamp": self._datum_ts}
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        out = super().describe()
        ny = int(self.cam.array_size_y.get())
        nx = int(self.cam.array_size_x.get())
        dtype = "<u2" if self.cam.data_type.get() == "UInt16" else "<u4"
        out[self.image_key] = {
            "source": f"PV:{self.hdf5.full_file_name.pvname}",
            "dtype": "array",
            "shape": [ny, nx],
            "dtype_numpy": dtype,
            "external": "FILESTORE:",
        }
        return out

    def collect_asset_docs(self) -> Iterator[tuple[str, dict]]:
        """Resource (once per staging) and Datum documents not yet handed out."""
        with self._lock:
            items = list(self._assets)
            self._assets.clear()
        yield from items
