"""Beam devices: the exit shutter and the beam monitors (I0 flux, ring current)."""

from __future__ import annotations

from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO
from ophyd.status import StatusBase, SubscriptionStatus

_OPEN = {"open": "Open", "close": "Close", "closed": "Close", 1: "Open", 0: "Close"}


class Shutter(Device):
    """Exit shutter with readback; ``set("open")`` / ``set("close")`` finish on the readback.

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    timeout_s : how long the readback may take to follow the command
    """

    control = Cpt(EpicsSignal, "shutter:control", string=True, kind="omitted")
    status = Cpt(EpicsSignalRO, "shutter:status_RBV", string=True, kind="normal")

    def __init__(self, prefix: str = "", *, timeout_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.timeout_s = timeout_s
        self._reopen = False

    # The RunEngine calls pause() on every device it has used when a plan pauses or suspends,
    # and resume() when it resumes: no dose is given while nobody is measuring.
    def pause(self) -> None:
        """Close the shutter (remembering whether it was open) while the scan is paused."""
        if self.is_open:
            self._reopen = True
            self.control.put("Close", wait=False)

    def resume(self) -> None:
        """Open the shutter again if :meth:`pause` closed it."""
        if self._reopen:
            self._reopen = False
            self.set("open").wait(self.timeout_s)

    @property
    def reopen_pending(self) -> bool:
        """True while a pause has closed the shutter that resume() will open again."""
        return self._reopen

    def set(self, value: str | int) -> StatusBase:
        """Open or close; the status finishes when ``status_RBV`` agrees.

        Parameters
        ----------
        value : ``"open"``/``"close"`` (any case), ``"Open"``/``"Close"`` or 1/0
        """
        key = value.lower() if isinstance(value, str) else value
        if key not in _OPEN:
            raise ValueError(f"{self.name}: shutter value must be 'open' or 'close', not {value!r}")
        command = _OPEN[key]
        want = "Open" if command == "Open" else "Closed"

        def arrived(*, value: Any, **_: Any) -> bool:
            return value == want

        self.control.put(command, wait=False)
        return SubscriptionStatus(self.status, arrived, timeout=self.timeout_s, run=True)

    def open(self) -> StatusBase:
        """Open the shutter."""
        return self.set("open")

    def close(self) -> StatusBase:
        """Close the shutter."""
        return self.set("close")

    @property
    def is_open(self) -> bool:
        """True when the readback says Open."""
        return self.status.get() == "Open"


class BeamMonitor(Device):
    """Incident flux ``i0`` (photons/s, 0 on a beam dump), the I0 diode's photocurrent
    ``i0_current`` (A; the flux at the energy now through the diode's efficiency, see
    ``recon.flux_monitor``) and storage ring current (mA)."""

    i0 = Cpt(EpicsSignalRO, "I0", kind="hinted")
    i0_current = Cpt(EpicsSignalRO, "I0:current", kind="omitted")
    ring_current = Cpt(EpicsSignalRO, "ring:current", kind="normal")
