"""The I0 monitor: a silicon photodiode's photocurrent as incident flux, at the beam's energy.

A photon of energy ``E`` absorbed in the diode's active silicon makes ``E / w`` electron-hole
pairs (``w`` = 3.66 eV in silicon); it is absorbed there with the diode's efficiency at that
energy: it crosses the SiO2 dead layer on the front, then is photo-absorbed in the active
layer,

    efficiency(E) = exp(-mu_SiO2(E) d_dead) (1 - exp(-tau_Si(E) d_active)),

with xraydb's coefficients (the Elam tables: total attenuation ``mu``, photo-absorption
``tau``; off any edge fine structure). The tables start at 100 eV: lower energies are
refused. A flux ``N`` (photons/s) thus gives the photocurrent

    I = N q (E / w) efficiency(E)        (A; q the elementary charge),

and the flux is read back from the current at the energy the beam has now. The energy factor
is what matters most across the soft X-ray range: the same current is 3.9 times fewer photons
at 706 eV than at 192 eV. The simulated IOC publishes the current of this model
(``PI0:current``), so the flux read back is the simulator's flux.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

ELEMENTARY_CHARGE_C = 1.602176634e-19
SILICON_PAIR_EV = 3.66  # mean energy per electron-hole pair in silicon (eV)
_DENSITY_G_CM3 = {"Si": 2.329, "SiO2": 2.2}


@lru_cache(maxsize=256)
def _mu_per_m(formula: str, energy_ev: float, kind: str = "total") -> float:
    """Linear attenuation (``kind="total"``) or photo-absorption (``"photo"``) coefficient
    (1/m) of silicon or its oxide at ``energy_ev`` (eV)."""
    import xraydb

    density = _DENSITY_G_CM3[formula]
    return float(xraydb.material_mu(formula, energy_ev, density=density, kind=kind)) * 100.0


@dataclass(frozen=True)
class DiodeMonitor:
    """A silicon photodiode I0 monitor (an AXUV-type diode by default).

    Parameters
    ----------
    dead_layer_m : SiO2 dead layer on the front (m)
    active_m : depleted silicon that collects the charge (m)
    fraction : the part of the beam the diode sees (1: the whole focused beam, a diode
        calibrated to the flux at the sample)
    """

    dead_layer_m: float = 7e-9
    active_m: float = 10e-6
    fraction: float = 1.0

    def __post_init__(self) -> None:
        for name in ("dead_layer_m", "active_m", "fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not (self.active_m > 0 and 0 < self.fraction <= 1):
            raise ValueError("active_m must be > 0 and fraction in (0, 1]")

    def efficiency(self, energy_ev: float) -> float:
        """Fraction (0-1) of the photons reaching the diode that are absorbed in its active
        silicon at ``energy_ev`` (eV)."""
        _check_energy(energy_ev)
        window = math.exp(-_mu_per_m("SiO2", energy_ev) * self.dead_layer_m)
        return window * -math.expm1(-_mu_per_m("Si", energy_ev, "photo") * self.active_m)

    def amps_per_photon_s(self, energy_ev: float) -> float:
        """Photocurrent (A) of one photon per second of the beam at ``energy_ev`` (eV)."""
        pairs = energy_ev / SILICON_PAIR_EV * self.efficiency(energy_ev)
        return ELEMENTARY_CHARGE_C * pairs * self.fraction

    def current_a(self, flux_ph_s: float, energy_ev: float) -> float:
        """Photocurrent (A) of a beam of ``flux_ph_s`` photons/s at ``energy_ev``."""
        return flux_ph_s * self.amps_per_photon_s(energy_ev)

    def flux_ph_s(self, current_a: float, energy_ev: float) -> float:
        """Photons per second in the beam that gives the photocurrent ``current_a`` (A)."""
        return current_a / self.amps_per_photon_s(energy_ev)


def _check_energy(energy_ev: float) -> None:
    if not (math.isfinite(energy_ev) and 100.0 <= energy_ev <= 1e5):
        raise ValueError(f"the I0 diode's energy must be 100 eV - 100 keV, not {energy_ev!r}")
