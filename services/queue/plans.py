"""Ptychography plans that the bluesky queue server calls with plain JSON parameters.

The project's plans take the beamline and a validated parameter model
(:func:`plans.ptycho.defocused_raster` with :class:`plans.parameters.RasterParams`,
:func:`plans.ptycho.spectro_stack` with :class:`plans.parameters.StackParams`). The queue
server knows a plan by its signature: it lists the parameters, checks the types of the JSON
values when an item is added, and calls the plan with those values. :func:`make_queue_plans`
therefore wraps each plan in a generator function bound to the beamline whose keyword-only
parameters are the fields of its model (same names, types and defaults, the most used first)
plus ``md``. The model validates the values when the plan starts, before anything moves, so
an impossible scan fails its queue item with the model's one-line reason. A scan with a dose
budget that would take its sample (with the dose it has already received, read from the
dose ledger) over the budget fails the same way, before any message
(:func:`plans.dose_check.check_scan_dose`).

An operator queues, for example::

    qserver queue add plan '{"name": "ptycho_stack", "kwargs": {"energies": [706, 708],
        "polarizations": ["CL", "CR"], "spot_m": 1e-6, "overlap": 0.9, "area_m": 2e-6}}'
"""

# No ``from __future__ import annotations`` here: the queue server reads the annotations of
# the signatures as objects and rebuilds them from their repr.
import inspect
from collections.abc import Callable, Generator
from typing import Any

from pydantic import BaseModel

from plans.parameters import RasterParams, StackParams
from plans.ptycho import defocused_raster, spectro_stack

Plan = Generator[Any, Any, Any]

#: Queue plan name -> (project plan, parameter model, parameters listed first).
QUEUE_PLANS: dict[str, tuple[Callable[..., Plan], type[BaseModel], tuple[str, ...]]] = {
    "ptycho_raster": (
        defocused_raster,
        RasterParams,
        ("energy_ev", "polarization", "spot_m", "overlap", "area_m", "exposure_s", "n_dark"),
    ),
    "ptycho_stack": (
        spectro_stack,
        StackParams,
        ("energies", "polarizations", "spot_m", "overlap", "area_m", "exposure_s", "n_dark"),
    ),
}

#: The scan geometry and dark frames, the same in every plan's docstring.
_GEOMETRY_DOC = """spot_m : float
    Spot diameter on the sample (m), set by defocusing the zone plate (kept at every
    energy of a stack).
overlap : float
    Overlap O = 1 - d / (2 r) of neighbouring spots, 0 <= O < 1.
area_m : float
    Side of the square scanned area (m).
exposure_s : float
    Exposure per point (s).
n_dark : int
    Dark frames per dark series, taken with the shutter closed (0: none)."""

#: The acquisition parameters, the same in every plan's docstring.
_ACQUISITION_DOC = """mode : str
    ``fly`` (the default; hardware-timed: the piezo scan controller runs each ptychogram on
    its own clock and triggers the camera, ~10-12 ms overhead per point; ``plans.fly``) or
    ``step`` (the control system moves the stage and triggers the camera point by point,
    ~50-65 ms per point).
motion : str
    In fly mode, ``step`` (move, settle, expose still: sharp frames) or ``continuous``
    (constant speed through the points: each exposure smears the probe over about one
    step, which the reconstruction absorbs with probe modes; raster only). ``continuous``
    needs ``mode`` ``fly``."""

#: The sample and its dose, the same in every plan's docstring.
_DOSE_DOC = """sample : str
    The sample's name, its key in the dose ledger (``BN-1``); a name starting with a preset
    (``bn-bamboo``/``BN``, ``siemens-star``/``Au``, ``cnt-bundle``/``CNT``,
    ``permalloy-rods``/``permalloy``) sets material and thickness.
material : str
    Sample material for the dose (BN, C, Au, permalloy, ... or an xraydb material name).
thickness_m : float
    Sample thickness (m).
flux_ph_s : float
    Incident flux (photons/s); by default the beam monitor's I0 when the plan starts.
dose_budget_gray : float
    Refuse the scan, before anything moves, if any point of the sample would exceed this
    dose (Gy) counting what it has already received."""

_DOCS = {
    "ptycho_raster": """One defocused ptychogram: dark frames, spot, energy, polarization, raster.

Every parameter is a field of ``plans.parameters.RasterParams`` (SI units) with its default;
the values are validated when the plan starts, before anything moves.

Parameters
----------
energy_ev : float
    Photon energy (eV), 100-2000.
polarization : str
    Undulator polarization: LH, LV, CL or CR.
@GEOMETRY@
@ACQUISITION@
@DOSE@
md : dict
    Extra metadata for the run's start document.
""",
    "ptycho_stack": """Energies x polarizations of defocused ptychograms in one run.

Every parameter is a field of ``plans.parameters.StackParams`` (SI units) with its default;
the values are validated when the plan starts, before anything moves. The streaming worker
reconstructs each ptychogram as its frames arrive.

Parameters
----------
energies : list of float
    Photon energies (eV), 100-2000.
polarizations : list of str
    Undulator polarizations, each of LH, LV, CL, CR at most once.
@GEOMETRY@
@ACQUISITION@
order : str
    ``energy`` (all polarizations at each energy) or ``polarization`` (the whole energy
    list for each polarization in turn).
dark : str
    ``once`` per stack, ``per-energy`` or ``none``.
@DOSE@
md : dict
    Extra metadata for the run's start document.
""",
}


def model_signature(model: type[BaseModel], first: tuple[str, ...] = ()) -> inspect.Signature:
    """Keyword-only parameters named, typed and defaulted as the fields of ``model``, then ``md``.

    Parameters
    ----------
    model : a pydantic model whose fields are JSON values
    first : field names to list first, in this order (the rest follow in model order)

    Returns
    -------
    inspect.Signature
    """
    fields = model.model_fields
    names = [n for n in first if n in fields] + [n for n in fields if n not in first]
    params = []
    for name in names:
        field = fields[name]
        default = (
            inspect.Parameter.empty
            if field.is_required()
            else field.get_default(call_default_factory=True)
        )
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=field.annotation
            )
        )
    params.append(
        inspect.Parameter(
            "md", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=dict | None
        )
    )
    return inspect.Signature(params)


def make_queue_plan(
    name: str,
    plan: Callable[..., Plan],
    model: type[BaseModel],
    beamline: Any,
    *,
    first: tuple[str, ...] = (),
    doc: str | None = None,
    dose_ledger: Any = None,
) -> Callable[..., Plan]:
    """Wrap ``plan(beamline, model(**kwargs), md=md)`` as a plan with keyword parameters.

    Parameters
    ----------
    name : the plan's name in the queue server
    plan : a project plan taking ``(beamline, params, *, md)``
    model : its parameter model
    beamline : the :class:`devices.beamline.Beamline` the plan drives
    first : model fields listed first in the signature
    doc : the docstring (numpydoc; the queue server shows its parameter descriptions)
    dose_ledger : the samples' received dose, for the plan's budget check

    Returns
    -------
    callable
        A generator function whose signature is :func:`model_signature` of ``model``.
    """
    signature = model_signature(model, first)

    def queue_plan(**kwargs: Any) -> Plan:
        signature.bind(**kwargs)  # TypeError naming an unknown keyword
        md = kwargs.pop("md", None)
        params = model(**kwargs)  # ValidationError before any message, so before any motion
        return (yield from plan(beamline, params, md=md, dose_ledger=dose_ledger))

    queue_plan.__name__ = queue_plan.__qualname__ = name
    queue_plan.__doc__ = doc
    queue_plan.__signature__ = signature  # type: ignore[attr-defined]
    return queue_plan


def make_queue_plans(beamline: Any, dose_ledger: Any = None) -> dict[str, Callable[..., Plan]]:
    """The ptychography plans of :data:`QUEUE_PLANS`, bound to ``beamline``.

    Parameters
    ----------
    beamline : the :class:`devices.beamline.Beamline` the plans drive
    dose_ledger : the :class:`services.dose_ledger.DoseLedger` the plans check a dose
        budget against (None: every sample counts as fresh)

    Returns
    -------
    dict
        ``{"ptycho_raster": ..., "ptycho_stack": ...}``: generator functions taking
        keyword arguments only.

    Examples
    --------
    >>> plans = make_queue_plans(bl)                                  # doctest: +SKIP
    >>> RE(plans["ptycho_stack"](energies=[706, 708], polarizations=["CL", "CR"]))  # doctest: +SKIP
    """
    return {
        name: make_queue_plan(
            name,
            plan,
            model,
            beamline,
            first=first,
            doc=_DOCS[name]
            .replace("@GEOMETRY@", _GEOMETRY_DOC)
            .replace("@ACQUISITION@", _ACQUISITION_DOC)
            .replace("@DOSE@", _DOSE_DOC),
            dose_ledger=dose_ledger,
        )
        for name, (plan, model, first) in QUEUE_PLANS.items()
    }
