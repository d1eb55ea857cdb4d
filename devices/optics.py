"""Photon energy, polarization and focus: monochromator, APPLE II undulator, zone plate focus.

:class:`EnergyFocus` couples the monochromator energy and the zone plate z the way a STXM
does: its pseudo axes are ``energy`` (eV) and ``spot`` (um, the spot diameter on the
sample) and its real axes the monochromator and the zone plate z motor (the zone plate to
sample distance, um). Moving ``energy`` keeps the last requested spot, so z follows the
focal length ``f = D dr / lambda`` (zone plate diameter ``D``, outermost zone width ``dr``)
and the defocus that gives the spot: ``z = f + dz``, ``dz = f sqrt(s^2 - (1.22 dr)^2) / D``.
Limits of every real axis are checked before anything moves.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from ophyd import Component as Cpt
from ophyd import EpicsSignal, EpicsSignalRO, PseudoPositioner, PseudoSingle, PVPositioner
from ophyd.pseudopos import pseudo_position_argument, real_position_argument
from ophyd.status import MoveStatus
from ophyd.utils import InvalidState

from devices.motors import Motor, RaceFreeCompletion

#: h c in eV m (CODATA 2018); duplicated here because devices import nothing of the project.
HC_EV_M = 1.239841984e-6
POLARIZATIONS = ("LH", "LV", "CL", "CR")


@dataclass(frozen=True)
class ZonePlateOptics:
    """Zone plate focusing relations (SI units).

    Attributes
    ----------
    outer_diameter : zone plate diameter D (m)
    outermost_zone_width : outermost zone width dr (m)
    central_stop_diameter : central stop diameter (m)
    """

    outer_diameter: float = 240e-6
    outermost_zone_width: float = 50e-9
    central_stop_diameter: float = 72e-6

    def focal_length_m(self, energy_ev: float) -> float:
        """First-order focal length ``f = D dr / lambda`` (m)."""
        if energy_ev <= 0:
            raise ValueError(f"energy must be > 0 eV, got {energy_ev}")
        return self.outer_diameter * self.outermost_zone_width * energy_ev / HC_EV_M

    @property
    def focus_spot_m(self) -> float:
        """Rayleigh spot at focus, ``1.22 dr`` (m)."""
        return 1.22 * self.outermost_zone_width

    def defocus_m(self, spot_m: float, energy_ev: float) -> float:
        """Defocus (m, >= 0) giving a spot of diameter ``spot_m``.

        The spot is the geometric annulus ``D |dz| / f`` combined in quadrature with the
        focus spot.
        """
        if spot_m < self.focus_spot_m * (1 - 1e-9):
            raise ValueError(
                f"spot {spot_m * 1e9:.1f} nm is smaller than the focus spot "
                f"{self.focus_spot_m * 1e9:.1f} nm"
            )
        geometric = math.sqrt(max(spot_m**2 - self.focus_spot_m**2, 0.0))
        return geometric * self.focal_length_m(energy_ev) / self.outer_diameter

    def spot_m(self, defocus_m: float, energy_ev: float) -> float:
        """Spot diameter (m) at ``defocus_m`` from the focus."""
        geometric = self.outer_diameter * abs(defocus_m) / self.focal_length_m(energy_ev)
        return math.hypot(geometric, self.focus_spot_m)

    def zp_z_um(self, spot_um: float, energy_ev: float) -> float:
        """Zone plate to sample distance (um) for a spot of ``spot_um`` at ``energy_ev``."""
        f = self.focal_length_m(energy_ev)
        return (f + self.defocus_m(spot_um * 1e-6, energy_ev)) * 1e6

    def spot_um(self, zp_z_um: float, energy_ev: float) -> float:
        """Spot diameter (um) for a zone plate to sample distance ``zp_z_um``."""
        defocus = zp_z_um * 1e-6 - self.focal_length_m(energy_ev)
        return self.spot_m(defocus, energy_ev) * 1e6


class _DonePositioner(RaceFreeCompletion, PVPositioner):
    """PVPositioner with a default move timeout, so a stuck axis fails instead of hanging."""

    margin_s = 10.0

    def expected_move_s(self, position: Any) -> float:
        """Seconds the move to ``position`` should take (override in subclasses)."""
        return 0.0

    def move(
        self, position: Any, wait: bool = True, timeout: float | None = None, moved_cb: Any = None
    ) -> MoveStatus:
        if timeout is None:
            timeout = self._timeout or (2 * self.expected_move_s(position) + self.margin_s)
        return super().move(position, wait=wait, timeout=timeout, moved_cb=moved_cb)


class Monochromator(_DonePositioner):
    """Monochromator energy (eV); the undulator gap follows in the IOC.

    ``set(E)`` finishes when the IOC reports ``mono:done = 1``.
    """

    setpoint = Cpt(EpicsSignal, "mono:energy", kind="normal")
    readback = Cpt(EpicsSignalRO, "mono:energy_RBV", kind="hinted")
    done = Cpt(EpicsSignalRO, "mono:done", kind="omitted")
    stop_signal = Cpt(EpicsSignal, "mono:stop", kind="omitted")
    velocity = Cpt(EpicsSignal, "mono:velocity", kind="config")
    gap = Cpt(EpicsSignalRO, "und:gap_RBV", kind="normal")

    def __init__(
        self, prefix: str = "", *, limits: tuple[float, float] = (100.0, 2000.0), **kwargs: Any
    ) -> None:
        super().__init__(prefix, limits=limits, egu="eV", **kwargs)

    def check_value(self, pos: float) -> None:
        from ophyd.utils import LimitError

        low, high = self.limits
        if not low <= pos <= high:
            raise LimitError(f"{self.name}: {pos} eV is outside the limits [{low}, {high}] eV")

    def expected_move_s(self, position: Any) -> float:
        here = self.position if self.position is not None else position
        velocity = self.velocity.get() or 1.0
        return abs(float(position) - float(here)) / max(float(velocity), 1e-6)


class Polarization(_DonePositioner):
    """Undulator polarization: ``LH``, ``LV``, ``CL`` or ``CR``.

    A change takes ``und:pol_time`` seconds (the phase shift of the magnet rows); ``set``
    finishes when the IOC reports ``und:pol_done = 1``.
    """

    setpoint = Cpt(EpicsSignal, "und:polarization", string=True, kind="normal")
    readback = Cpt(EpicsSignalRO, "und:polarization_RBV", string=True, kind="hinted")
    done = Cpt(EpicsSignalRO, "und:pol_done", kind="omitted")
    change_time = Cpt(EpicsSignal, "und:pol_time", kind="config")

    def check_value(self, pos: str) -> None:
        if pos not in POLARIZATIONS:
            raise ValueError(
                f"{self.name}: polarization must be one of {POLARIZATIONS}, not {pos!r}"
            )

    def expected_move_s(self, position: Any) -> float:
        return float(self.change_time.get() or 0.0)


class _KeptAxis(PseudoSingle):
    """PseudoSingle whose kept target is restored when a move is refused."""

    def move(self, pos: float, **kwargs: Any) -> MoveStatus:
        previous = self._target
        try:
            return super().move(pos, **kwargs)
        except Exception:
            self._target = previous
            raise


class EnergyFocus(RaceFreeCompletion, PseudoPositioner):
    """Energy (eV) and spot size (um) moved together through the monochromator and zone plate z.

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    optics : zone plate parameters used for the focus relations

    Notes
    -----
    ``zp_z`` is the same motor as the zone plate stage's ``z`` (another ophyd object on the
    same PV). Moving ``energy`` keeps ``spot`` at its last commanded value; moving the
    zone plate by hand and then ``spot.sync()`` adopts the spot found there.
    """

    energy = Cpt(_KeptAxis, limits=(100.0, 2000.0), egu="eV")
    spot = Cpt(_KeptAxis, limits=(0.0, 50.0), egu="um")
    mono = Cpt(Monochromator, "")
    zp_z = Cpt(Motor, "zp:z")

    def __init__(
        self, prefix: str = "", *, optics: ZonePlateOptics | None = None, **kwargs: Any
    ) -> None:
        self.optics = optics or ZonePlateOptics()
        self._move_serial = 0
        super().__init__(prefix, **kwargs)

    @pseudo_position_argument
    def forward(self, pseudo_pos: Any) -> Any:
        """(energy eV, spot um) -> (monochromator eV, zone plate z um)."""
        return self.RealPosition(
            mono=pseudo_pos.energy,
            zp_z=self.optics.zp_z_um(pseudo_pos.spot, pseudo_pos.energy),
        )

    @real_position_argument
    def inverse(self, real_pos: Any) -> Any:
        """(monochromator eV, zone plate z um) -> (energy eV, spot um)."""
        return self.PseudoPosition(
            energy=real_pos.mono, spot=self.optics.spot_um(real_pos.zp_z, real_pos.mono)
        )

    def check_value(self, pseudo_pos: Any) -> None:
        pseudo_pos = self.PseudoPosition(*pseudo_pos)
        if pseudo_pos.spot * 1e-6 < self.optics.focus_spot_m * (1 - 1e-9):
            raise ValueError(
                f"{self.name}: spot {pseudo_pos.spot} um is smaller than the zone plate focus "
                f"{self.optics.focus_spot_m * 1e6:.3f} um"
            )
        super().check_value(pseudo_pos)

    @pseudo_position_argument
    def move(
        self,
        position: Any,
        wait: bool = True,
        timeout: float | None = None,
        moved_cb: Any = None,
    ) -> MoveStatus:
        """Move (energy, spot); a refused target leaves the kept targets untouched."""
        self.check_value(position)  # before ophyd records the new targets
        return super().move(position, wait=wait, timeout=timeout, moved_cb=moved_cb)

    def _setup_move(self, position: Any, status: MoveStatus) -> None:
        """Move the real axes together and finish ``status`` from their own statuses.

        ``status`` succeeds when every real axis of this move has succeeded, and fails with
        an error naming the axis as soon as one fails. Statuses of an earlier move (finished
        late, or failed because this move superseded them) are ignored, and nothing is
        reported twice.
        """
        real_pos = self.forward(position)
        with self._finished_lock:
            self._move_serial += 1
            serial = self._move_serial
            del self._real_waiting[:]
            self._real_waiting.extend(self._real)
            for real, value in zip(self._real, real_pos, strict=True):
                try:
                    real_status = real.move(value, wait=False)
                except Exception as exc:
                    del self._real_waiting[:]
                    error = RuntimeError(f"{self.name}: {real.name} refused the move: {exc}")
                    self._fail(status, error, cause=exc)
                    raise
                real_status.add_callback(
                    functools.partial(self._real_status_done, serial, real, status)
                )

    def _real_status_done(self, serial: int, real: Any, status: MoveStatus, st: Any) -> None:
        """One real axis of move ``serial`` finished (successfully or not)."""
        with self._finished_lock:
            if serial != self._move_serial or status.done or real not in self._real_waiting:
                return  # an earlier move's axis, or this move is already decided
            if not st.success:
                del self._real_waiting[:]
                exc = st.exception()
                if isinstance(exc, TimeoutError):  # ophyd reserves its own timeout classes
                    error: Exception = TimeoutError(f"{self.name}: {real.name}: {exc}")
                else:
                    error = RuntimeError(f"{self.name}: {real.name} failed: {exc}")
                self._fail(status, error, cause=exc)
                return
            self._real_waiting.remove(real)
            if not self._real_waiting:
                self._done_moving()

    def _fail(self, status: MoveStatus, error: Exception, cause: Any = None) -> None:
        error.__cause__ = cause
        self.log.error("%s", error)
        try:
            status.set_exception(error)
        except InvalidState:  # finished meanwhile (its own timeout)
            pass
