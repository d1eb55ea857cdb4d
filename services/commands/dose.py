"""``sptycho dose``: overlap weight factor, exposure counts and dose of a raster scan."""

from __future__ import annotations

import json

import typer

from services.errors import fail
from services.validation import require_finite, require_positive

#: Photon energies (eV) the attenuation tables (xraydb, Chantler) cover.
ENERGY_RANGE_EV = (10.0, 900_000.0)

#: The sample and dose budget of ``sptycho scan raster|stack`` (fields of the plans'
#: parameter models: ``sample``, ``material``, ``thickness_m``, ``flux_ph_s``,
#: ``dose_budget_gray``).
SCAN_DOSE_OPTIONS = dict(
    sample=typer.Option(
        None,
        help="Sample name, its key in the dose ledger (BN-1). A name starting with a preset "
        "(bn-bamboo/BN, siemens-star/Au, cnt-bundle/CNT, permalloy-rods/permalloy) sets "
        "--material and --thickness.",
    ),
    material=typer.Option(None, help="Sample material (BN, C, Au, permalloy, kapton, ...)."),
    thickness=typer.Option(None, help="Sample thickness (m)."),
    flux=typer.Option(None, help="Incident flux (photons/s); default: the I0 monitor now."),
    dose_budget=typer.Option(
        None,
        "--dose-budget",
        help="Refuse the scan before anything moves if any point of the sample would "
        "exceed this dose (Gy), counting the dose it has already received.",
    ),
)


def scan_dose_fields(
    sample: str | None,
    material: str | None,
    thickness: float | None,
    flux: float | None,
    dose_budget: float | None,
) -> dict:
    """The parameter-model fields of the scan commands' dose options (None: not given)."""
    require_finite(thickness=thickness, flux=flux, dose_budget=dose_budget)
    fields = dict(
        sample=sample,
        material=material,
        thickness_m=thickness,
        flux_ph_s=flux,
        dose_budget_gray=dose_budget,
    )
    return {k: v for k, v in fields.items() if v is not None}


def dose(
    spot: float = typer.Option(..., help="Spot diameter 2R (m)."),
    step: float = typer.Option(None, help="Step between points d (m)."),
    overlap: float = typer.Option(None, help="Overlap O = 1 - d/2R instead of --step."),
    area: float = typer.Option(2e-6, help="Side of the square scan area (m)."),
    material: str = typer.Option(
        None, help="Sample material (BN, C, formvar, Si3N4, ... or an xraydb material name)."
    ),
    thickness: float = typer.Option(None, help="Sample thickness (m)."),
    flux: float = typer.Option(None, help="Incident flux (photons/s)."),
    exposure: float = typer.Option(None, help="Exposure per point (s)."),
    energy: float = typer.Option(None, help="Photon energy (eV)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    histogram: bool = typer.Option(False, help="Include the exposure histogram in the JSON."),
) -> None:
    """Weight factor k, exposure-count statistics and dose (Gy) of an overlapping scan.

    Eqs. 2-5 and Fig. 7 of Vijayakumar et al. 2023 (HERMES spectro-ptychography).

    Paper: J. Synchrotron Rad. 30 (2023), doi:10.1107/S1600577523000955.
    """
    from recon.dose import dose_report, material_properties

    require_finite(spot=spot, step=step, overlap=overlap, area=area)
    require_positive(thickness=thickness, flux=flux, exposure=exposure, energy=energy)
    if (step is None) == (overlap is None):
        fail("give exactly one of --step and --overlap")
    if overlap is not None:
        if not 0 <= overlap < 1:
            fail(f"overlap must be in [0, 1), got {overlap}")
        step = spot * (1 - overlap)
    if spot <= 0 or step <= 0 or area <= 0:
        fail("spot, step and area must be > 0")
    low, high = ENERGY_RANGE_EV
    if energy is not None and not low <= energy <= high:
        fail(f"--energy must be within {low:g}..{high:g} eV, got {energy:g}")
    if material is not None:
        try:
            material_properties(material)
        except ValueError as err:
            fail(str(err))
    try:
        report = dose_report(
            spot,
            step,
            area,
            material=material,
            thickness_m=thickness,
            flux_ph_s=flux,
            exposure_s=exposure,
            energy_ev=energy,
        )
    except ValueError as err:
        fail(str(err))
    out = report.as_dict()
    if not histogram:
        out.pop("histogram_counts")
        out.pop("histogram_exposures")
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"spot {spot * 1e9:.0f} nm, step {step * 1e9:.1f} nm, overlap {report.overlap:.0%}")
    typer.echo(f"points            {report.n_points}")
    typer.echo(f"k (far from edge) {report.k:.2f}")
    typer.echo(f"k (this scan)     {report.k_scan:.2f}")
    typer.echo(f"exposures max     {report.max_exposures}")
    typer.echo(f"exposures mean    {report.mean_exposures:.1f}")
    if report.dose_gray is not None:
        typer.echo(f"dose              {report.dose_gray:.3g} Gy (max {report.dose_gray_max:.3g})")


def register(app: typer.Typer) -> None:
    app.command("dose")(dose)
