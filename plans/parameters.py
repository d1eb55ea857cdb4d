"""Validated parameters of the ptychography plans.

Impossible requests (NaN or infinite numbers, overlap outside [0, 1), spot larger than the
area, energy outside 100-2000 eV, exposure <= 0, too many points, a dose over budget) are
refused here, before any plan message is produced and so before anything moves. Each field
is checked on its own (finite, in range) before the checks that derive anything from it
(binning, number of points, dose), so the message names the field that is wrong.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recon.dose import dose_report, material_properties, sample_preset
from recon.geometry import binning_for_zone_plate_cone
from recon.scan import scan_positions, step_from_overlap

Polarization = Literal["LH", "LV", "CL", "CR"]
FOCUS_FACTOR = 1.22  # Rayleigh spot = 1.22 dr
ENERGY_RANGE_EV = (100.0, 2000.0)
#: Most points per ptychogram the scan controller's trajectory holds (fly mode).
FLY_MAX_POINTS = 10_000
#: A sample name: its key in the dose ledger (a Tiled key), e.g. ``BN-1``.
SAMPLE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def check_energy(energy_ev: float) -> float:
    """``energy_ev`` if within :data:`ENERGY_RANGE_EV`, else a ValueError naming the range."""
    low, high = ENERGY_RANGE_EV
    if not low <= energy_ev <= high:
        raise ValueError(f"energy {energy_ev:g} eV is outside {low:g}-{high:g} eV")
    return energy_ev


class ScanParams(BaseModel):
    """Geometry, exposure and dose inputs shared by single ptychograms and stacks (SI units).

    Attributes
    ----------
    area_m : side of the square scanned area (m)
    spot_m : spot diameter on the sample (m)
    overlap : O = 1 - d / (2 r)
    exposure_s : exposure per point (s)
    pattern : ``raster`` or ``fermat``
    n_dark : dark frames per dark series (0: none)
    centre_um : sample stage (fine x, y) at the middle of the scan (um)
    max_points : refuse scans with more points per ptychogram
    zone_plate_diameter_m, zone_width_m, central_stop_m : zone plate optics
    distance_m, detector_pixel_m, sensor_pixels : detector geometry
    binning : detector binning; None chooses the smallest that holds the zone plate cone at
        the lowest energy (:func:`recon.geometry.binning_for_zone_plate_cone`)
    frame_size : frame width in binned pixels (a centred crop of the sensor)
    sample : the sample's name, its key in the dose ledger; a name that starts with a
        preset (``bn-bamboo``, ``BN-1``, ``permalloy-rods``; :func:`recon.dose.sample_preset`)
        sets ``material`` and ``thickness_m`` where they are not given
    material, thickness_m, flux_ph_s : optional sample and beam, for the dose estimate;
        without ``flux_ph_s`` the plan reads the beam monitor's I0 (:mod:`plans.dose_check`)
    dose_budget_gray : refuse a scan that would take any point of the sample (with the dose
        it has already received) over this (Gy)
    mode : ``fly`` (the default: the scan controller runs each ptychogram on its own clock,
        triggering the camera; see :mod:`plans.fly`) or ``step`` (the control system moves
        the stage and triggers the camera point by point: slower, needs no scan controller)
    motion : in fly mode, ``step`` (move, settle, expose still) or ``continuous`` (constant
        speed through the points: faster per line, but each exposure smears the probe over
        about one step, which the reconstruction absorbs with probe modes)
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    area_m: float = Field(2e-6, gt=0, le=200e-6)
    spot_m: float = Field(1e-6, gt=0, le=50e-6)
    overlap: float = Field(0.9, ge=0.0, lt=1.0)
    exposure_s: float = Field(0.1, gt=0, le=10.0)
    pattern: Literal["raster", "fermat"] = "raster"
    n_dark: int = Field(25, ge=0, le=500)
    centre_um: tuple[float, float] = (0.0, 0.0)
    max_points: int = Field(10_000, ge=1, le=100_000)
    zone_plate_diameter_m: float = Field(240e-6, gt=0)
    zone_width_m: float = Field(50e-9, gt=0)
    central_stop_m: float = Field(72e-6, ge=0)
    distance_m: float = Field(0.0513, gt=0)
    detector_pixel_m: float = Field(11e-6, gt=0)
    sensor_pixels: int = Field(2048, ge=16)
    binning: int | None = Field(None, ge=1, le=16)
    frame_size: int = Field(256, ge=16, le=2048)
    sample: str | None = Field(None, pattern=SAMPLE_NAME)
    material: str | None = None
    thickness_m: float | None = Field(None, gt=0)
    flux_ph_s: float | None = Field(None, gt=0)
    dose_budget_gray: float | None = Field(None, gt=0)
    mode: Literal["step", "fly"] = "fly"
    motion: Literal["step", "continuous"] = "step"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        """Material and thickness of the sample's preset, where not given."""
        if isinstance(data, dict) and isinstance(data.get("sample"), str):
            preset = sample_preset(data["sample"])
            if preset is not None:
                data = dict(data)
                if data.get("material") is None:
                    data["material"] = preset[0]
                if data.get("thickness_m") is None:
                    data["thickness_m"] = preset[1]
        return data

    @model_validator(mode="after")
    def _check_geometry(self) -> ScanParams:
        focus = FOCUS_FACTOR * self.zone_width_m
        if self.spot_m < focus * (1 - 1e-9):
            raise ValueError(
                f"spot {self.spot_m * 1e9:.0f} nm is smaller than the zone plate focus "
                f"{focus * 1e9:.0f} nm"
            )
        if self.spot_m > self.area_m:
            raise ValueError(
                f"spot {self.spot_m * 1e6:g} um is larger than the scanned area "
                f"{self.area_m * 1e6:g} um"
            )
        n = self.n_points
        if n > self.max_points:
            raise ValueError(
                f"{n} points per ptychogram (step {self.step_m * 1e9:.1f} nm) is more than "
                f"max_points={self.max_points}"
            )
        span = self.frame_size * self.detector_binning
        if span > self.sensor_pixels:
            raise ValueError(
                f"frame {self.frame_size} x binning {self.detector_binning} = {span} pixels "
                f"exceeds the {self.sensor_pixels}-pixel sensor"
            )
        if self.mode == "fly" and self.n_points > FLY_MAX_POINTS:
            raise ValueError(
                f"{self.n_points} points per ptychogram: the scan controller holds at most "
                f"{FLY_MAX_POINTS} in fly mode (use mode 'step' or a smaller scan)"
            )
        if self.motion == "continuous" and self.pattern != "raster":
            raise ValueError(
                "motion 'continuous' needs pattern 'raster' (consecutive spiral points are "
                "far apart: each exposure would smear over microns)"
            )
        if self.motion == "continuous" and self.mode != "fly":
            raise ValueError(
                "motion 'continuous' needs mode 'fly' (a step scan stops at every point)"
            )
        if self.material is not None:
            material_properties(self.material)  # one line naming the known ones
        return self

    @property
    def step_m(self) -> float:
        return step_from_overlap(self.spot_m, self.overlap)

    @property
    def lowest_energy_ev(self) -> float:
        return min(getattr(self, "energies", None) or [getattr(self, "energy_ev", 192.0)])

    @property
    def detector_binning(self) -> int:
        """The binning asked for, or the smallest that holds the zone plate cone."""
        if self.binning:
            return self.binning
        return binning_for_zone_plate_cone(
            self.lowest_energy_ev,
            self.distance_m,
            self.zone_width_m,
            self.frame_size,
            self.detector_pixel_m,
        )

    def camera_region(self) -> tuple[int, int]:
        """(start, size) in raw sensor pixels of the centred crop, the same for x and y."""
        span = self.frame_size * self.detector_binning
        return (self.sensor_pixels - span) // 2, span

    @property
    def n_points(self) -> int:
        if self.pattern == "raster":
            return (math.floor(self.area_m / self.step_m + 1e-9) + 1) ** 2
        return len(self.positions_m())

    def positions_m(self):
        """(N, 2) float64 probe positions (y, x) on the sample relative to the centre (m)."""
        return scan_positions(self.pattern, self.area_m, self.step_m)

    def stage_positions_um(self):
        """(N, 2) float64 fine stage targets (y, x) in um."""
        pos = self.positions_m() * 1e6
        pos[:, 0] += self.centre_um[1]
        pos[:, 1] += self.centre_um[0]
        return pos

    def dose_per_ptychogram(self, energy_ev: float) -> dict:
        """Overlap factor, exposure counts and (with material, thickness, flux) dose in Gy."""
        beam = {}
        if self.material and self.thickness_m and self.flux_ph_s:
            beam = dict(
                material=self.material,
                thickness_m=self.thickness_m,
                flux_ph_s=self.flux_ph_s,
                exposure_s=self.exposure_s,
                energy_ev=energy_ev,
            )
        r = dose_report(self.spot_m, self.step_m, self.area_m, **beam)
        return {
            "k": r.k,
            "max_exposures": r.max_exposures,
            "mean_exposures": r.mean_exposures,
            "dose_gray": r.dose_gray,
        }

    def zone_plate(self) -> dict:
        return {
            "outer_diameter": self.zone_plate_diameter_m,
            "outermost_zone_width": self.zone_width_m,
            "central_stop_diameter": self.central_stop_m,
        }


class RasterParams(ScanParams):
    """One defocused ptychogram at one energy and polarization."""

    energy_ev: float = Field(192.0, ge=100.0, le=2000.0)
    polarization: Polarization = "LH"

    @model_validator(mode="after")
    def _check_dose(self) -> RasterParams:
        _check_budget(self, [self.energy_ev], 1)
        return self

    @property
    def energies(self) -> list[float]:
        return [self.energy_ev]

    @property
    def polarizations(self) -> list[str]:
        return [self.polarization]


class StackParams(ScanParams):
    """Energies x polarizations of ptychograms in one run.

    ``order="energy"`` scans all polarizations at each energy (the energy loop outside);
    ``order="polarization"`` scans the whole energy list for each polarization in turn, as
    Vijayakumar et al. did at HERMES (J. Synchrotron Rad. 30, 2023,
    doi:10.1107/S1600577523000955: an LH stack, then LV). ``dark`` is ``"once"`` per stack or
    ``"per-energy"`` (each time the energy changes).
    """

    energies: list[float] = Field(default_factory=lambda: [192.0], min_length=1, max_length=500)
    polarizations: list[Polarization] = Field(default_factory=lambda: ["LH"], min_length=1)
    order: Literal["energy", "polarization"] = "energy"
    dark: Literal["once", "per-energy", "none"] = "once"

    @field_validator("energies")
    @classmethod
    def _check_energies(cls, energies: list[float]) -> list[float]:
        return [check_energy(e) for e in energies]

    @model_validator(mode="after")
    def _check_stack(self) -> StackParams:
        if len(set(self.polarizations)) != len(self.polarizations):
            raise ValueError("polarizations repeat")
        _check_budget(self, self.energies, len(self.polarizations))
        return self

    def ptychograms(self) -> list[tuple[int, float, str]]:
        """(index, energy eV, polarization) in acquisition order."""
        if self.order == "energy":
            pairs = [(e, p) for e in self.energies for p in self.polarizations]
        else:
            pairs = [(e, p) for p in self.polarizations for e in self.energies]
        return [(i, e, p) for i, (e, p) in enumerate(pairs)]


def _check_budget(params: ScanParams, energies: list[float], n_pol: int) -> None:
    """The fresh-sample estimate against the budget, when the flux is given; the plan
    checks again at its start with the dose already received (:mod:`plans.dose_check`)."""
    if params.dose_budget_gray is None:
        return
    if not (params.material and params.thickness_m):
        raise ValueError(
            "a dose budget needs material and thickness_m (or a sample preset such as BN-1)"
        )
    if params.flux_ph_s is None:
        return  # the plan reads I0 at its start
    total = sum(params.dose_per_ptychogram(e)["dose_gray"] for e in energies) * n_pol
    if total > params.dose_budget_gray:
        raise ValueError(
            f"estimated dose {total:.3g} Gy exceeds the budget {params.dose_budget_gray:.3g} Gy"
        )


def total_dose_gray(params: ScanParams, energies: list[float], n_pol: int) -> float | None:
    """Estimated dose of all ptychograms (Gy), or None without material/thickness/flux."""
    doses = [params.dose_per_ptychogram(e)["dose_gray"] for e in energies]
    if any(d is None for d in doses):
        return None
    return float(sum(doses) * n_pol)
