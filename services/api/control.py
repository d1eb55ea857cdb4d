"""Start, pause, resume and abort scans from the web page, through the project's plans.

A :class:`ScanController` owns the RunEngine's thread: the RunEngine runs a plan in the
thread that called it, and after a pause it must be resumed or aborted from that same
thread, so every command after the start goes through a queue to it. Parameters are the
plans' own pydantic models (:mod:`plans.parameters`), so the page gets exactly the checks
the console gets.

The state carries the RunEngine's notice (``RE.notices.current``: one line such as
``"suspended: beam lost (ring 0.0 mA)"``, or None), read every ``notice_poll_s`` while a
scan runs; a change of notice or of the RunEngine's state is published like any other.
An abort asked for by an operator is not an error: bluesky's "Run aborted" record (logged
with a traceback) becomes one info line (:class:`QuietAbort`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

log = logging.getLogger("sptycho.api")


class QuietAbort(logging.Filter):
    """Turn bluesky's "Run aborted" error record of a *requested* abort or halt into one
    info line without traceback; a run that fails keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bluesky.utils import PlanHalt, RequestAbort

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RequestAbort | PlanHalt) and record.getMessage() == "Run aborted":
            record.msg, record.args = "run aborted on request (exit status abort)", None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_QUIET_ABORT = QuietAbort()


def quiet_requested_aborts() -> None:
    """Install :class:`QuietAbort` on the ``bluesky`` logger (once per process)."""
    bluesky_log = logging.getLogger("bluesky")
    if _QUIET_ABORT not in bluesky_log.filters:
        bluesky_log.addFilter(_QUIET_ABORT)


def current_notice(RE: Any) -> str | None:
    """The RunEngine's notice (``RE.notices.current``), or None when it has no notice board
    or nothing to say."""
    board = getattr(RE, "notices", None)
    text = getattr(board, "current", None) if board is not None else None
    return str(text) if text else None


class ScanRequest(BaseModel):
    """What the page sends to start a scan: the plan and its parameters.

    ``params`` are the fields of :class:`plans.parameters.RasterParams` (``kind: raster``) or
    :class:`plans.parameters.StackParams` (``kind: stack``).
    """

    kind: Literal["raster", "stack"] = "stack"
    params: dict[str, Any] = Field(default_factory=dict)


class ControllerBusy(RuntimeError):
    """A scan is already running or paused (or the queue server refused a command)."""


class ScanControl(Protocol):
    """What the page needs of a scan controller: :class:`ScanController` (in-process
    RunEngine) or :class:`services.api.queue_control.QueueController` (the queue server)."""

    backend: str
    on_change: Callable[[dict[str, Any]], None] | None

    def state(self) -> dict[str, Any]: ...
    def start(self, request: ScanRequest) -> dict[str, Any]: ...
    def pause(self) -> dict[str, Any]: ...
    def resume(self) -> dict[str, Any]: ...
    def abort(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class ScanController:
    """Run one plan at a time on ``beamline`` with ``RE`` in a thread of its own.

    Parameters
    ----------
    beamline : the devices (:func:`devices.beamline.make_beamline`)
    RE : a RunEngine made for threads (``context_managers=[]``), writing to Tiled; its
        ``notices`` attribute (optional) holds the current notice in ``.current``
    on_change : called with :meth:`state` whenever it changes (the app publishes it)
    notice_poll_s : how often the notice and the RunEngine's state are read while busy
    """

    backend = "in-process"

    def __init__(
        self,
        beamline: Any,
        RE: Any,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        notice_poll_s: float = 0.5,
    ) -> None:
        self.beamline = beamline
        self.RE = RE
        self.on_change = on_change
        self.notice_poll_s = notice_poll_s
        quiet_requested_aborts()
        self.current: dict[str, Any] | None = None
        self.last_uid: str | None = None
        self.last_error: str | None = None
        self.last_exit: str | None = None
        self._commands: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._published: tuple[str, str | None] | None = None

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def state(self) -> dict[str, Any]:
        """``{"state": idle|running|paused (the RunEngine's while a scan is on), "plan",
        "notice" (one line or None), "last_uid", "last_exit", "last_error", "queue" (always
        empty: one scan at a time), "backend" ("in-process")}``."""
        return {
            "state": str(self.RE.state) if self.busy else "idle",
            "plan": self.current,
            "notice": current_notice(self.RE),
            "last_uid": self.last_uid,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
            "queue": [],
            "backend": self.backend,
        }

    def _changed(self) -> None:
        state = self.state()
        self._published = (state["state"], state["notice"])
        if self.on_change is not None:
            try:
                self.on_change(state)
            except Exception:  # noqa: BLE001 - a listener's failure is not the scan's
                log.exception("scan state listener failed")

    def _watch(self, thread: threading.Thread) -> None:
        """While ``thread`` (the scan) lives, publish when the notice or state changes."""
        while True:
            thread.join(self.notice_poll_s)
            if not thread.is_alive():
                return  # the end of the scan is published by _after_end
            now = (str(self.RE.state), current_notice(self.RE))
            if now != self._published:
                self._changed()

    # ------------------------------------------------------------------ commands
    def build_plan(self, request: ScanRequest) -> Any:
        """The plan generator for ``request``; raises pydantic's ValidationError on bad
        parameters and :class:`plans.dose_check.DoseRefused` (a ValueError: the app's 422)
        on a scan over its sample's dose budget, both before anything moves."""
        from plans.dose_check import check_scan_dose
        from plans.parameters import RasterParams, StackParams
        from plans.ptycho import defocused_raster, raster_as_stack, spectro_stack

        ledger = getattr(self.RE, "dose_ledger", None)
        if request.kind == "raster":
            raster = RasterParams(**request.params)
            check_scan_dose(raster_as_stack(raster), self.beamline, ledger)
            return defocused_raster(self.beamline, raster, dose_ledger=ledger)
        stack = StackParams(**request.params)
        check_scan_dose(stack, self.beamline, ledger)
        return spectro_stack(self.beamline, stack, dose_ledger=ledger)

    def start(self, request: ScanRequest) -> dict[str, Any]:
        """Validate and start a scan in the controller's thread.

        Raises
        ------
        ControllerBusy
            When a scan is running or paused.
        pydantic.ValidationError
            When the parameters are refused.
        """
        with self._lock:
            if self.busy:
                raise ControllerBusy(f"a scan is {self.RE.state}: pause, resume or abort it first")
            plan = self.build_plan(request)
            while not self._commands.empty():
                self._commands.get_nowait()
            self.current = {"kind": request.kind, "params": request.params, "started": time.time()}
            self.last_error = None
            self._thread = threading.Thread(target=self._run, args=(plan,), name="sptycho-scan")
            self._thread.start()
            threading.Thread(
                target=self._watch, args=(self._thread,), name="sptycho-scan-notice", daemon=True
            ).start()
        deadline = time.monotonic() + 5.0
        while self.RE.state == "idle" and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._changed()
        return self.state()

    def pause(self) -> dict[str, Any]:
        """Ask the running plan to pause at its next checkpoint (every point has one)."""
        if not self.busy or self.RE.state != "running":
            raise ControllerBusy(f"nothing running to pause (state {self.state()['state']})")
        self.RE.request_pause(defer=False)
        # "pausing" is the RunEngine on its way: answer with where it arrived
        self._wait_for(lambda: self.RE.state not in ("running", "pausing"))
        self._changed()
        return self.state()

    def resume(self) -> dict[str, Any]:
        if not self.busy or self.RE.state != "paused":
            raise ControllerBusy(f"nothing paused to resume (state {self.state()['state']})")
        self._commands.put("resume")
        self._wait_for(lambda: self.RE.state != "paused")
        self._changed()
        return self.state()

    def abort(self) -> dict[str, Any]:
        """Abort the scan (running or paused): the shutter closes, recorded data stay."""
        if not self.busy:
            raise ControllerBusy("no scan to abort")
        self._commands.put("abort")
        if self.RE.state == "running":
            self.RE.request_pause(defer=False)
        self._wait_for(lambda: not self.busy, timeout=30.0)
        self._changed()
        return self.state()

    def close(self, timeout: float = 30.0) -> None:
        """Abort what runs and wait for the thread."""
        if self.busy:
            try:
                self.abort()
            except ControllerBusy:
                pass
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ thread
    @staticmethod
    def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    def _run(self, plan: Any) -> None:
        from bluesky.utils import RunEngineInterrupted

        try:
            try:
                uids = self.RE(plan)
                self._finished(uids, "success")
                return
            except RunEngineInterrupted:
                pass
            self._changed()  # paused
            while True:
                command = self._commands.get()
                if command == "abort":
                    uids = self.RE.abort("aborted from the web page")
                    self._finished(uids, "abort")
                    return
                try:
                    uids = self.RE.resume()
                    self._finished(uids, "success")
                    return
                except RunEngineInterrupted:
                    self._changed()  # paused again
        except Exception as err:  # noqa: BLE001 - reported on the page, the thread ends
            self.last_error = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.last_exit = "fail"
            log.error("scan failed: %s", self.last_error)
        finally:
            self.current = None
            threading.Thread(target=self._after_end, daemon=True).start()

    def _finished(self, uids: Any, exit_status: str) -> None:
        uids = list(uids or [])
        if uids:
            self.last_uid = uids[-1]
        self.last_exit = exit_status

    def _after_end(self) -> None:
        if self._thread is not None:
            self._thread.join(5.0)
        self._changed()
