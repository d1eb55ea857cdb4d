"""The acquisition side: a RunEngine that survives the beamline.

:func:`make_run_engine` builds the RunEngine every session of the project uses (console,
``sptycho scan``, the demo, the web page's controller, the queue server):

- suspenders on the ring current and on I0 (:class:`BeamSuspender`): the scan suspends when
  the beam goes, the shutter closes, and after the beam is back for ``settle_s`` the
  interrupted point is taken again; a beam loss longer than ``timeout_s`` ends the
  scan with the data kept;
- documents go to a local journal first and reach Tiled from a thread of their own
  (:class:`services.delivery.TiledDelivery`): the scan does not wait for, or depend on,
  Tiled being up;
- notices (``suspended: beam lost (ring 0.0 mA)``, ``paused: camera: ...``) are kept on
  ``RE.notices`` (:class:`NoticeBoard`) for the console and the web page;
- with a dose ledger, every run of a named sample adds what it exposed to the sample's
  dose map (:class:`services.dose_recorder.DoseRecorder`), and ``RE.dose_ledger`` is what
  the plans check a dose budget against.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bluesky import RunEngine
from bluesky.suspenders import SuspendFloor

from plans.guards import BeamGuard, notice, notice_log, signal_value, wait_for_beam

log = logging.getLogger("sptycho.acquisition")


class NoticeBoard(logging.Handler):
    """The current one-line notice of the acquisition and the ones before it.

    Attributes
    ----------
    current : the notice in force (``None`` when all is well)
    history : ``(time, text)`` of every notice, oldest first (at most ``keep``)
    """

    def __init__(self, keep: int = 200, echo: Callable[[str], None] | None = None) -> None:
        super().__init__(level=logging.INFO)
        self.current: str | None = None
        self.history: list[tuple[float, str]] = []
        self.keep = keep
        self.echo = echo
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if not hasattr(record, "notice"):
            return
        text = record.notice
        with self._lock:
            if text == self.current:
                return
            self.current = text
            if text is not None:
                self.history = [*self.history, (time.time(), text)][-self.keep :]
        if self.echo is not None:
            self.echo(text if text is not None else "resumed")


class BeamSuspender(SuspendFloor):
    """Suspend while ``signal`` is below ``threshold``; wait for the beam in the pre-plan.

    Parameters
    ----------
    signal : the ring current (mA) or I0 (ph/s) signal
    threshold : suspend below this value
    what : how the notice names the signal, e.g. ``"ring {:.1f} mA"``
    monitor : the beam monitor (``i0``, ``ring_current``) the pre-plan waits on
    shutter : closed while suspended
    guard : thresholds, settle time and timeout
    """

    def __init__(
        self,
        signal: Any,
        threshold: float,
        *,
        what: str,
        monitor: Any,
        shutter: Any,
        guard: BeamGuard,
    ) -> None:
        self._what = what
        self._value: float | None = None
        self._monitor = monitor
        self._shutter = shutter
        self._guard = guard
        super().__init__(
            signal,
            threshold,
            sleep=guard.settle_s,
            pre_plan=self._pre_plan_factory,
            post_plan=self._post_plan_factory,
        )

    def __repr__(self) -> str:  # bluesky prints it on resume; the default one recurses
        return f"BeamSuspender({self._sig.name} < {self._suspend_thresh:g})"

    def _should_suspend(self, value: Any) -> bool:
        self._value = float(value)
        return super()._should_suspend(value)

    def reason(self) -> str:
        """``beam lost (ring 0.0 mA)``: the ring current first when both are low."""
        ring = signal_value(self._monitor.ring_current)
        if ring is not None and ring < self._guard.ring_min_ma:
            return f"beam lost (ring {ring:.1f} mA)"
        value = self._value if self._value is not None else float("nan")
        return f"beam lost ({self._what.format(value)})"

    def _get_justification(self) -> str:
        return self.reason() if self.tripped else ""

    def _pre_plan_factory(self) -> Any:
        import bluesky.plan_stubs as bps

        def plan() -> Any:
            notice(f"suspended: {self.reason()}")
            yield from bps.abs_set(self._shutter, "close", wait=True)
            yield from wait_for_beam(self._monitor, self._guard)

        return plan()

    def _post_plan_factory(self) -> Any:
        def plan() -> Any:
            notice(None)
            yield from ()

        return plan()


def beam_guard_from_env() -> BeamGuard:
    """Beam thresholds from ``SPTYCHO_BEAM_*`` (defaults of :class:`BeamGuard` otherwise).

    Raises
    ------
    ValueError
        One line naming the variable, when a value is not a number in range.
    """
    from pydantic import ValidationError

    try:
        return BeamGuard()
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]).upper() if first.get("loc") else ""
        raise ValueError(f"SPTYCHO_BEAM_{field}: {first['msg']}") from None


def install_beam_suspenders(RE: RunEngine, beamline: Any, guard: BeamGuard) -> list:
    """Suspenders on the ring current and on I0 (thresholds from ``guard``)."""
    m = beamline.monitor
    watched = (
        (m.ring_current, guard.ring_min_ma, "ring {:.1f} mA"),
        (m.i0, guard.i0_min_ph_s, "I0 {:.3g} ph/s"),
    )
    suspenders = [
        BeamSuspender(
            signal, threshold, what=what, monitor=m, shutter=beamline.shutter, guard=guard
        )
        for signal, threshold, what in watched
    ]
    for s in suspenders:
        RE.install_suspender(s)
    return suspenders


class BeamlineRunEngine(RunEngine):
    """A RunEngine whose call returns once the run's documents are in Tiled.

    Delivery runs in its own thread; at the end of a plan the call waits up to
    ``delivery_wait_s`` for it (the documents stay safe on disk whatever happens), so code
    that reads Tiled right after ``RE(plan)`` sees the whole run.
    """

    delivery: Any = None
    delivery_wait_s: float = 120.0

    def _then_wait(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``, then wait for the delivery whatever it raised."""
        try:
            return call(*args, **kwargs)
        finally:
            self.wait_delivered()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._then_wait(super().__call__, *args, **kwargs)

    def resume(self) -> Any:
        return self._then_wait(super().resume)

    def abort(self, reason: str = "") -> Any:
        return self._then_wait(super().abort, reason)

    def stop(self) -> Any:
        return self._then_wait(super().stop)

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """True when every document so far is in Tiled (waits up to ``timeout``)."""
        if self.delivery is None:
            return True
        wait = self.delivery_wait_s if timeout is None else timeout
        if not self.delivery.wait_delivered(min(wait, 2.0)):
            waiting = self.delivery.status()["waiting"]
            log.warning("waiting for Tiled: %d documents kept on local disk meanwhile", waiting)
            return self.delivery.wait_delivered(max(wait - 2.0, 0.0))
        return True


class PointProgress:
    """Bluesky callback that reports ``(done, total)`` primary events of the current run
    (one per step-scan event, a line's worth per fly-scan event page)."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report
        self.total = 0
        self.done = 0
        self._primary: str | None = None

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            g = doc.get("geometry", {})
            self.total = int(g.get("points_per_ptychogram", 0)) * int(doc.get("n_ptychograms", 1))
            self.done = 0
            self._primary = None
        elif name == "descriptor" and doc.get("name") == "primary":
            self._primary = doc["uid"]
        elif name == "event" and doc.get("descriptor") == self._primary:
            self.done += 1
            self.report(self.done, self.total)
        elif name == "event_page" and doc.get("descriptor") == self._primary:
            self.done += len(doc.get("seq_num", ()))  # a fly scan's line
            self.report(self.done, self.total)


def make_run_engine(
    tiled_client: Any | None = None,
    *,
    delivery: Any | None = None,
    beamline: Any | None = None,
    guard: BeamGuard | None = None,
    progress: Callable[[int, int], None] | None = None,
    context_managers: list | None = None,
    echo: Callable[[str], None] | None = None,
    dose_ledger: Any | None = None,
) -> BeamlineRunEngine:
    """The project's RunEngine.

    Parameters
    ----------
    tiled_client : a writable ``tiled.client`` container; without ``delivery`` its documents
        are delivered through a journal in a temporary directory
    delivery : a :class:`services.delivery.TiledDelivery` (the session's, with its journal
        in the data directory); takes precedence over ``tiled_client``
    beamline : the devices; when given the beam suspenders are installed
    guard : beam thresholds (``SPTYCHO_BEAM_*`` or the defaults when None)
    progress : called with ``(done, total)`` after each point
    context_managers : RunEngine context managers; the default installs bluesky's SIGINT
        handling (Ctrl-C pauses; a second Ctrl-C aborts), pass ``[]`` in threads
    echo : called with each notice line (the console prints them)
    dose_ledger : a :class:`services.dose_ledger.DoseLedger`: the runs' exposures are added
        to it, and the plans read it (``RE.dose_ledger``) to refuse a scan over budget

    Returns
    -------
    BeamlineRunEngine
        with ``RE.notices`` (:class:`NoticeBoard`), ``RE.delivery``, ``RE.guard`` and
        ``RE.dose_ledger``
    """
    kwargs = {} if context_managers is None else {"context_managers": context_managers}
    RE = BeamlineRunEngine({}, **kwargs)
    guard = guard or beam_guard_from_env()
    if delivery is None and tiled_client is not None:
        import tempfile

        from services.delivery import TiledDelivery
        from services.journal import DocumentJournal

        journal = DocumentJournal(tempfile.mkdtemp(prefix="sptycho-journal-"))
        delivery = TiledDelivery(lambda: tiled_client, journal)
    if delivery is not None:
        RE.subscribe(delivery)
    if progress is not None:
        RE.subscribe(PointProgress(progress))
    if dose_ledger is not None:
        from services.dose_recorder import DoseRecorder

        RE.subscribe(DoseRecorder(dose_ledger))
    RE.dose_ledger = dose_ledger
    board = NoticeBoard(echo=echo)
    notice_log.addHandler(board)
    notice_log.setLevel(logging.INFO)
    RE.notices = board
    RE.delivery = delivery
    RE.guard = guard
    if beamline is not None:
        RE.suspenders_installed = install_beam_suspenders(RE, beamline, guard)
    return RE
