"""Hardware-timed ptychography: the scan controller triggers the camera, one segment at a time.

:class:`FlyScan` is a bluesky flyer (``kickoff`` / ``complete`` / ``collect``) over the piezo
scan controller (:class:`devices.scanner.PiezoScanner`) and the camera in triggered streaming
mode (:meth:`devices.camera.SCMOSCamera.arm`). A plan loads the trajectory once per
ptychogram (:meth:`FlyScan.load`), then flies it in segments (raster lines):

1. :meth:`FlyScan.segment` names the points of the next segment;
2. ``kickoff`` arms the camera for that many frames (written from file record
   ``camera.accepted`` on) and starts the controller;
3. ``complete`` finishes when the controller is done and every frame is in the file; it
   fails with :class:`devices.scanner.ScannerStoppedError` when the controller stopped,
   :class:`devices.camera.FrameDroppedError` when frames are missing (dropped by the writer,
   missed triggers, a hung camera); ``kickoff`` fails with
   :class:`devices.camera.CameraFaultError` when the camera cannot be armed;
4. the plan checks the recorded beam (:attr:`FlyScan.line`) and either ``collect`` s the
   segment (one event per frame: the measured mid-exposure positions, their spread, the
   per-frame I0, ring current and shutter, plus the values of ``static`` read at the end of
   the segment; the frames as StreamResource / StreamDatum) or :meth:`FlyScan.discard` s
   it and flies it again; frames of a segment flown again overwrite the earlier attempt's.

The RunEngine calls :meth:`FlyScan.pause` on a pause or suspension: the controller stops,
the camera stops acquiring (``Acquire = 0``) and statuses in flight are abandoned (never
finished, so a replay from the checkpoint starts the segment cleanly). A segment already
collected is never flown or collected twice, even when a replay repeats its messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from event_model import compose_stream_resource
from event_model.documents.stream_datum import StreamRange
from ophyd.status import Status

from devices.camera import CameraFaultError, FrameDroppedError, SCMOSCamera, _finish
from devices.scanner import PiezoScanner

log = logging.getLogger("sptycho.devices")


@dataclass(frozen=True)
class FlyKeys:
    """Data keys of the events a fly scan emits (the step scan's names, so readers agree).

    Attributes
    ----------
    x, y : measured fine stage position (um), e.g. ``sample_fx``, ``sample_fy``
    i0, ring : incident flux (ph/s) and ring current (mA) per frame
    shutter : shutter state per frame (``Open`` / ``Closed``)
    point : point index within the ptychogram (acquisition order)
    """

    x: str = "sample_fx"
    y: str = "sample_fy"
    i0: str = "beam_i0"
    ring: str = "beam_ring_current"
    shutter: str = "shutter_status"
    point: str = "point"


@dataclass(frozen=True)
class Trajectory:
    """A ptychogram's trajectory for :meth:`FlyScan.prepare`.

    Attributes
    ----------
    xy_um : (N, 2) float64 fine stage targets (x, y) in um, in acquisition order
    motion : ``Step`` or ``Continuous``
    period_s : trigger spacing (s)
    gate_s : exposure (s)
    """

    xy_um: np.ndarray
    motion: str
    period_s: float
    gate_s: float


@dataclass
class Segment:
    """The points of one kickoff: trajectory indices ``first .. first + count - 1``."""

    key: tuple
    first: int
    count: int
    points: np.ndarray  # (count,) int64 point indices within the ptychogram


@dataclass
class Line:
    """What one flown segment recorded (``count`` rows each)."""

    segment: Segment
    records: dict[str, np.ndarray]
    static: dict[str, Any]
    record0: int  # file record of its first frame


def _dtype(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool | np.bool_ | int | np.integer):
        return "integer"
    return "number"


class FlyScan:
    """Flyer of hardware-timed segments (see the module docstring).

    Parameters
    ----------
    camera : the camera (staged by the plan)
    scanner : the piezo scan controller
    static : data key -> getter, read once per segment (energy, polarization, index)
    keys : data key names of the per-frame values
    name : the flyer's name
    frame_wait_s : seconds the frames may lag behind the end of the controller's segment
        (the camera's ``frame_timeout_s`` when None)
    """

    def __init__(
        self,
        camera: SCMOSCamera,
        scanner: PiezoScanner,
        *,
        static: dict[str, Callable[[], Any]],
        keys: FlyKeys | None = None,
        name: str = "fly",
        frame_wait_s: float | None = None,
    ) -> None:
        self.camera = camera
        self.scanner = scanner
        self.static = static
        self.keys = keys or FlyKeys()
        self.name = name
        self.parent = None
        self._frame_wait_s = frame_wait_s
        self.period_s = 0.1
        self.line: Line | None = None
        self._segment: Segment | None = None
        self._collected: set[tuple] = set()
        self._to_collect: list[Line] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._sres: Any = None
        self._sres_file: str | None = None

    @property
    def frame_wait_s(self) -> float:
        if self._frame_wait_s is not None:
            return self._frame_wait_s
        return float(getattr(self.camera, "frame_timeout_s", 3.0))

    # -- set-up ---------------------------------------------------------------------------
    def prepare(self, value: Trajectory) -> Status:
        """Load a ptychogram's trajectory into the controller (``bps.prepare``)."""
        status = Status(obj=self, timeout=30)

        def load() -> None:
            try:
                self.scanner.load(
                    value.xy_um, motion=value.motion, period=value.period_s, gate=value.gate_s
                )
                self.period_s = float(value.period_s)
                _finish(status)
            except Exception as err:  # noqa: BLE001 - reported through the status
                _finish(status, err)

        threading.Thread(target=load, name=f"{self.name}-prepare", daemon=True).start()
        return status

    def segment(self, key: tuple, first: int, count: int, points: np.ndarray) -> None:
        """The segment the next ``kickoff`` flies; ``key`` identifies it within the run."""
        self._segment = Segment(key, int(first), int(count), np.asarray(points, np.int64))
        self.line = None

    # -- flyer interface ------------------------------------------------------------------
    def kickoff(self) -> Status:
        """Arm the camera and start the controller on the current segment."""
        seg = self._segment
        if seg is None:
            raise RuntimeError(f"{self.name}: no segment: call segment() before kickoff")
        # No timeout: a status abandoned by pause() must never fail later (the RunEngine
        # would throw that failure into whatever plan runs then).
        status = Status(obj=self)
        if seg.key in self._collected:
            _finish(status)  # a replay of a segment already collected
            return status
        with self._lock:
            self._generation += 1
            generation = self._generation
        self.line = None

        def start() -> None:
            try:
                self.scanner.halt()
                self.camera.arm(seg.count)
                timeout = seg.count * self.period_s + 30.0
                self._running = self.scanner.run_segment(seg.first, seg.count, timeout=timeout)
                self._record0 = self.camera.accepted
                self._dropped0 = self.camera.dropped()
                if generation == self._generation:
                    _finish(status)
            except Exception as err:  # noqa: BLE001 - reported through the status
                if generation == self._generation:
                    _finish(status, CameraFaultError(f"{self.name}: cannot start: {err}"))

        threading.Thread(target=start, name=f"{self.name}-kickoff", daemon=True).start()
        return status

    def complete(self) -> Status:
        """Finishes when the segment is flown and all its frames are in the file."""
        seg = self._segment
        status = Status(obj=self)
        if seg is None or seg.key in self._collected:
            _finish(status)
            return status
        generation = self._generation

        def wait() -> None:
            try:
                line = self._wait_line(seg, generation)
            except _Abandoned:
                return
            except Exception as err:  # noqa: BLE001 - reported through the status
                if generation == self._generation:
                    try:
                        self._stop_hardware()
                    except Exception:  # noqa: BLE001 - the status must still fail
                        log.exception("%s: cannot stop the scan controller or camera", self.name)
                    finally:
                        _finish(status, err)
                return
            if generation == self._generation:
                self.line = line
                _finish(status)

        threading.Thread(target=wait, name=f"{self.name}-complete", daemon=True).start()
        return status

    def _wait_line(self, seg: Segment, generation: int) -> Line:
        running = self._running
        while not running.done:
            if generation != self._generation:
                raise _Abandoned
            time.sleep(0.002)
        if not running.success:
            raise running.exception()
        want = self._record0 + seg.count
        deadline = time.monotonic() + self.frame_wait_s
        while True:
            if generation != self._generation:
                raise _Abandoned
            have = self.camera.captured()
            if have >= want:
                break
            dropped = self.camera.dropped() - self._dropped0
            if dropped and have + dropped >= want:
                raise FrameDroppedError(
                    f"{self.camera.name}: the HDF5 writer dropped {dropped} frame(s) of points "
                    f"{seg.points[0]}..{seg.points[-1]}"
                )
            if time.monotonic() > deadline:
                missed = int(self.camera.cam.missed_triggers.get(use_monitor=False))
                raise FrameDroppedError(
                    f"{self.camera.name}: {want - have} of {seg.count} frame(s) of points "
                    f"{seg.points[0]}..{seg.points[-1]} did not arrive within "
                    f"{self.frame_wait_s:g} s ({missed} missed trigger(s) so far)"
                )
            time.sleep(0.003)
        records = self.scanner.records(seg.count)
        static = {key: get() for key, get in self.static.items()}
        return Line(seg, records, static, self._record0)

    def _stop_hardware(self) -> None:
        try:
            self.scanner.halt()
        finally:
            self.camera.cam.acquire.put(0, wait=True)

    def discard(self) -> None:
        """Forget the segment just flown (it is flown again; its frames get overwritten)."""
        self.line = None

    def pause(self) -> None:
        """The RunEngine pauses or suspends: stop, and abandon what is in flight."""
        with self._lock:
            self._generation += 1
        self.line = None
        try:
            self._stop_hardware()
        except Exception:  # noqa: BLE001 - a pause must not fail on an unreachable IOC
            log.exception("%s: cannot stop the scan controller or camera", self.name)

    def resume(self) -> None:
        """Nothing to do: the replay from the checkpoint kicks the segment off again."""

    def stop(self, *, success: bool = False) -> None:
        self.pause()

    # -- documents ------------------------------------------------------------------------
    def beam_rows(self) -> dict[str, np.ndarray]:
        """The flown segment's (count,) I0, ring current and shutter (1 open) records."""
        if self.line is None:
            raise RuntimeError(f"{self.name}: no segment flown")
        r = self.line.records
        return {"i0": r["i0"], "ring": r["ring"], "shutter": r["shutter"]}

    def describe_collect(self) -> dict[str, dict[str, Any]]:
        k = self.keys
        number = {"dtype": "number", "shape": [], "units": "um"}
        image = self.camera.describe()[self.camera.image_key]
        image = {**image, "external": "STREAM:"}
        out: dict[str, dict[str, Any]] = {self.camera.image_key: image}
        for key in (k.x, k.y):
            out[key] = {**number, "source": f"{self.scanner.name}:encoder mean over the gate"}
            out[f"{key}_spread"] = {
                **number,
                "source": f"{self.scanner.name}:encoder std over the gate",
            }
        out[k.i0] = {"dtype": "number", "shape": [], "source": "scan:i0", "units": "ph/s"}
        out[k.ring] = {"dtype": "number", "shape": [], "source": "scan:ring", "units": "mA"}
        out[k.shutter] = {"dtype": "string", "shape": [], "source": "scan:shutter"}
        out[k.point] = {"dtype": "integer", "shape": [], "source": "trajectory index"}
        out["frame_time"] = {"dtype": "number", "shape": [], "source": "scan:time"}
        for key, get in self.static.items():
            out[key] = {"dtype": _dtype(get()), "shape": [], "source": f"{self.name}:{key}"}
        return out

    def collect_asset_docs(self) -> Iterator[tuple[str, dict]]:
        """StreamResource (once per camera file) and one StreamDatum for the flown segment.

        Taking the segment here (the RunEngine asks for asset documents first, then
        events) makes it collected exactly once: the frames become accepted records of the
        file, and the events of :meth:`collect` follow.
        """
        line = self.line
        self.line = None
        if line is None or line.segment.key in self._collected:
            return
        self._collected.add(line.segment.key)
        self._to_collect.append(line)
        if self._sres is None or self._sres_file != self.camera.file_name:
            self._sres = compose_stream_resource(**self.camera.stream_resource())
            self._sres_file = self.camera.file_name
            yield "stream_resource", self._sres.stream_resource_doc
        start = line.record0
        stop = start + line.segment.count
        self.camera.accepted = stop
        yield "stream_datum", self._sres.compose_stream_datum(StreamRange(start=start, stop=stop))

    def collect(self) -> Iterator[dict[str, Any]]:
        """One partial event per frame of the segment taken by :meth:`collect_asset_docs`."""
        k = self.keys
        lines, self._to_collect = self._to_collect, []
        for line in lines:
            r = line.records
            for j in range(line.segment.count):
                t = float(r["time"][j]) if np.isfinite(r["time"][j]) else time.time()
                data = {
                    k.x: float(r["enc_x"][j]),
                    f"{k.x}_spread": float(r["enc_dx"][j]),
                    k.y: float(r["enc_y"][j]),
                    f"{k.y}_spread": float(r["enc_dy"][j]),
                    k.i0: float(r["i0"][j]),
                    k.ring: float(r["ring"][j]),
                    k.shutter: "Open" if r["shutter"][j] > 0.5 else "Closed",
                    k.point: int(line.segment.points[j]),
                    "frame_time": t,
                    **line.static,
                }
                yield {"data": data, "timestamps": {key: t for key in data}, "time": t}


class _Abandoned(Exception):
    """A status in flight when the RunEngine paused: it is left unfinished."""
