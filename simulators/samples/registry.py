"""The samples by name: ``make_sample`` and the energy each is usually imaged at."""

from __future__ import annotations

from simulators.samples.base import Sample
from simulators.samples.permalloy import PermalloyRods
from simulators.samples.siemens import SiemensStar
from simulators.samples.tubes import BNBamboo, CNTBundle

#: Energy (eV) at which each sample is usually imaged (its resonance).
EDGE_ENERGY_EV: dict[str, float] = {
    "siemens-star": 280.0,
    "bn-bamboo": 192.0,
    "cnt-bundle": 285.2,
    "permalloy-rods": 706.0,
}

SAMPLES: dict[str, type[Sample]] = {
    "siemens-star": SiemensStar,
    "bn-bamboo": BNBamboo,
    "cnt-bundle": CNTBundle,
    "permalloy-rods": PermalloyRods,
}


def make_sample(name: str, *, seed: int = 0, area_m: float = 2e-6, **params: object) -> Sample:
    """Build a sample by name.

    Parameters
    ----------
    name : one of ``SAMPLES``
    seed : random seed of the geometry
    area_m : side of the square region with structure (m)
    **params : sample-specific parameters (see each class)
    """
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}: use one of {', '.join(SAMPLES)}")
    try:
        return SAMPLES[name](seed=seed, area_m=area_m, **params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ValueError(f"bad parameter for sample {name!r}: {exc}") from exc
