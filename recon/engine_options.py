"""Tuning options of the reconstruction engine (:class:`recon.algorithms.Engine`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineOptions:
    """Tuning of the engines (defaults suit most data).

    Attributes
    ----------
    subpixel : sub-pixel shift steps per pixel (patch corners are quantised to 1/subpixel;
        the probe update costs two FFTs of ``subpixel**2`` probes per iteration)
    chunk_bytes : largest wave stack processed at once (bytes); frames are chunked above it
    probe_update_start : first iteration (counted over the whole run) that updates the probe
    object_reg, probe_reg : relative regularisation of the least-squares denominators
    update_background : refine an incoherent background (multiplicative update)
    refine_scale : refine a per-frame intensity scale (floating intensities, monitor)
    refine_positions : refine positions every ``position_every`` iterations (every algorithm)
    position_start : first iteration of position refinement
    position_max_step : largest position change per refinement (pixels)
    ml_smoothing : weight of the quadratic object smoothness penalty of ML (relative)
    dm_guard_factor, dm_guard_patience : divergence guard of DM and RAAR
    raar_beta : relaxation of RAAR (1 is the difference map; see
        :mod:`recon.projection_family`)
    pie_alpha : weight of the per-frame family's object step: rPIE divides by ``(1 - a)
        |P|^2 + a max |P|^2`` (Maiden et al. 2017); ePIE is ``a = 1``
    pie_probe_alpha : the same weight for rPIE's probe step (``|O|^2``); 1 (the ePIE
        step, as the rPIE authors' code uses by default) keeps the probe from running away
        where the object is weak
    pie_batch : frames updated together by ePIE/rPIE (1: one frame at a time)
    noise_model : ``poisson`` or ``gaussian`` (amplitude least squares) likelihood of ML
    ml_orthogonalize_every : ML orthogonalises the probe modes every this many iterations
    max_object_amplitude : clip |O| to this (None: no clip)
    deviance_frames : the per-iteration Poisson deviance is evaluated on every ``ceil(N /
        deviance_frames)``-th frame (a fixed, evenly spread subset; all frames when N is
        small)
    """

    subpixel: int = 4
    chunk_bytes: int = 2 * 2**30
    probe_update_start: int = 2
    object_reg: float = 1e-2
    probe_reg: float = 1e-2
    update_background: bool = False
    refine_scale: bool = False
    refine_positions: bool = False
    position_every: int = 5
    position_start: int = 10
    position_max_step: float = 0.5
    ml_smoothing: float = 0.01
    dm_guard_factor: float = 3.0
    dm_guard_patience: int = 5
    max_object_amplitude: float | None = None
    raar_beta: float = 0.75
    pie_alpha: float = 0.1
    pie_probe_alpha: float = 1.0
    pie_batch: int = 1
    noise_model: str = "poisson"
    ml_orthogonalize_every: int = 10
    deviance_frames: int = 32

    def __post_init__(self) -> None:
        if self.noise_model not in ("poisson", "gaussian"):
            raise ValueError(
                f"unknown noise_model {self.noise_model!r}: use 'poisson' or 'gaussian'"
            )
