"""Refuse a scan that would take a sample over its dose budget, before anything moves.

The check adds the planned scan's dose to what the sample has already received (its map in
the dose ledger, :mod:`services.dose_ledger`, read through any object with a
``read(sample) -> recon.dose_map.DoseMap | None`` method) and refuses, in one line naming
the point, the dose it would reach, the budget and what it has already received, when the
most dosed point would exceed the budget::

    refused: point (0.5, -0.25) um of sample 'BN-1' would reach 3.2e+07 Gy
    (budget 2e+07 Gy; 1.1e+07 Gy already received)

The incident flux is the one given (``flux_ph_s``) or, when none is, the I0 diode's
photocurrent read now, turned into photons per second with the diode's efficiency at the
energy the monochromator has now (:class:`recon.flux_monitor.DiodeMonitor`): the same
current is 3.9 times fewer photons at 706 eV than at 192 eV.
Every ptychogram of a scan visits the same stage positions; the dose of one visit is the
single-exposure dose (:func:`recon.dose.single_exposure_dose_gray`) summed over the
ptychograms, each at its energy.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from plans.guards import signal_value
from plans.parameters import ScanParams, StackParams
from recon.dose import single_exposure_dose_gray
from recon.dose_map import DoseMap, default_pixel_m, empty_map, planned_peak
from recon.flux_monitor import DiodeMonitor

I0_DIODE = DiodeMonitor()  # the beamline's I0 monitor (the simulated IOC's PI0:current)


class DoseRefused(ValueError):
    """A scan refused for its dose (one line, the number in it)."""


class DoseReader(Protocol):
    """What the check reads of the dose ledger."""

    def read(self, sample: str) -> DoseMap | None:
        """The sample's accumulated dose map, None when it has none yet."""


def incident_flux(
    params: ScanParams, beamline: Any, diode: DiodeMonitor = I0_DIODE
) -> tuple[float, str]:
    """(photons/s, where from): ``params.flux_ph_s`` if given, else the I0 diode's flux now.

    Parameters
    ----------
    params : the scan; its ``flux_ph_s`` wins when given
    beamline : the devices: ``monitor.i0_current`` (A) and ``optics.mono.readback`` (eV)
    diode : the I0 diode that turns the photocurrent into photons at that energy

    Raises
    ------
    DoseRefused
        When no flux is given and the diode or the energy cannot be read, or the diode
        sees no beam.
    """
    if params.flux_ph_s is not None:
        return float(params.flux_ph_s), "given"
    monitor = getattr(beamline, "monitor", None)
    optics = getattr(beamline, "optics", None)
    current = signal_value(monitor.i0_current) if monitor is not None else None
    energy = signal_value(optics.mono.readback) if optics is not None else None
    seen = _diode_problem(current, energy)
    if seen is not None:
        raise DoseRefused(
            f"refused: the dose budget needs the incident flux and I0 {seen}: "
            "give the flux (flux_ph_s, --flux) or wait for the beam"
        )
    try:
        flux = diode.flux_ph_s(current, energy)
    except ValueError as err:
        raise DoseRefused(f"refused: the I0 diode cannot be read at {energy:g} eV: {err}") from None
    return flux, f"I0 diode at {energy:.1f} eV"


def _diode_problem(current: float | None, energy: float | None) -> str | None:
    """What keeps the I0 diode's reading from giving a flux (None: nothing)."""
    if current is None:
        return "cannot be read"
    if energy is None:
        return "has no energy to read it at"
    if not current > 0:  # no beam (or NaN)
        return f"reads {current:.3g} A"
    return None


def coarse_offset_um(beamline: Any) -> tuple[float, float]:
    """The coarse sample stage (x, y) in um: the motors' last readbacks, 0 where there is
    none (never waits for a disconnected motor)."""
    stage = getattr(beamline, "sample", None)

    def last(axis: str) -> float:
        try:
            return float(getattr(stage, axis).position or 0.0)
        except Exception:  # noqa: BLE001 - disconnected or absent: the origin
            return 0.0

    return last("cx"), last("cy")


def stage_positions_m(params: ScanParams, coarse_um: tuple[float, float]) -> np.ndarray:
    """(N, 2) planned spot centres (y, x) in stage coordinates (m): coarse plus fine."""
    pos = params.stage_positions_um().copy()
    pos[:, 0] += coarse_um[1]
    pos[:, 1] += coarse_um[0]
    return pos * 1e-6


def visit_dose_gray(params: StackParams, flux_ph_s: float) -> float:
    """Dose (Gy) of one visit of every position: one exposure per ptychogram."""
    photons = flux_ph_s * params.exposure_s
    return float(
        sum(
            single_exposure_dose_gray(
                params.material, params.thickness_m, photons, params.spot_m, energy
            )
            for _, energy, _ in params.ptychograms()
        )
    )


def check_scan_dose(
    params: StackParams, beamline: Any, ledger: DoseReader | None = None
) -> dict[str, Any] | None:
    """Refuse the scan if it would take any point of the sample over the budget.

    Parameters
    ----------
    params : the scan (every ptychogram at its energy and polarization)
    beamline : the devices (``monitor`` and ``optics`` for the I0 diode's flux at the
        energy now, ``sample`` for the coarse stage)
    ledger : the dose ledger; None counts the sample as fresh

    Returns
    -------
    dict or None
        None without a budget; else the start document's ``dose_check``: sample, flux and
        its source, the coarse stage, the peak it will reach and what it had received.

    Raises
    ------
    DoseRefused
        One line with the point, the dose it would reach, the budget and the dose received.
    """
    budget = params.dose_budget_gray
    if budget is None:
        return None
    flux, source = incident_flux(params, beamline)
    coarse = coarse_offset_um(beamline)
    received = None
    if ledger is not None and params.sample:
        try:
            received = ledger.read(params.sample)
        except Exception as err:  # noqa: BLE001 - Tiled away: the budget cannot be checked
            line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DoseRefused(
                f"refused: the dose sample '{params.sample}' has received cannot be read "
                f"from the dose ledger ({line})"
            ) from None
    received = received or empty_map(default_pixel_m(params.spot_m))
    positions = stage_positions_m(params, coarse)
    peak = planned_peak(received, positions, params.spot_m, visit_dose_gray(params, flux))
    name = params.sample or "(unnamed)"
    if peak.total_gray > budget:
        raise DoseRefused(
            f"refused: point ({peak.x_m * 1e6:.3g}, {peak.y_m * 1e6:.3g}) um of sample "
            f"'{name}' would reach {peak.total_gray:.2g} Gy (budget {budget:.2g} Gy; "
            f"{peak.received_gray:.2g} Gy already received)"
        )
    return {
        "sample": params.sample,
        "flux_ph_s": flux,
        "flux_source": source,
        "coarse_um": list(coarse),
        "budget_gray": budget,
        "peak_gray": peak.total_gray,
        "received_gray": peak.received_gray,
    }
