"""The ptychographic reconstruction engine: state and dispatch of every algorithm on one
array back-end (AP, DM, RAAR: :mod:`recon.projection_family`; ePIE, rPIE: :mod:`recon.pie`;
ML: :mod:`recon.maximum_likelihood`).

The engine holds the frames, the geometry (patch corners, sub-pixel bins, chunks), the
object, the probe modes, background and per-frame scale, the caches (shifted probes,
illumination, work stacks) and the least-squares object and probe updates the algorithms
share; each algorithm is its own module.

Also: orthogonal incoherent probe modes (:mod:`recon.probe_modes`), position refinement
(:mod:`recon.position_refinement`), background and per-frame scale refinement, and a bad-pixel
mask (masked pixels keep the model amplitude and are left out of the deviance). Chains such as
``"AP**150,ML**50"`` with the DM divergence fallback: :mod:`recon.algorithm_chain`.

``Engine.deviance`` holds one number per iteration: the Poisson deviance of the model
(:func:`recon.deviance.poisson_deviance`) divided by the number of unmasked pixels it is summed
over (about 1 at convergence on Poisson-noisy data, 0 for a perfect noise-free fit). To keep
its logarithms cheap it is summed over a fixed, evenly spread subset of at least
``EngineOptions.deviance_frames`` frames (all frames of small scans).

Sub-pixel positions: each patch corner is split into an integer part and a remainder quantised
to ``1/EngineOptions.subpixel`` pixel; the probe is Fourier-shifted once per distinct remainder
("bin") per probe update. The probe update is in residual form, ``P += sum_b S_b^H (num_b -
D_b S_b P) / (sum_b D_b + reg)``, whose fixed point is exact even though the preconditioner
ignores the sub-pixel shifts of ``D_b = sum_{j in b} |O_j|^2``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon import kernels, projection_family
from recon.backend import get_xp, to_numpy
from recon.engine_options import EngineOptions
from recon.kernels import PatchGeometry
from recon.maximum_likelihood import ml_iteration
from recon.operators import quantize_positions, shift_probes, shift_ramp, unshift_sum
from recon.pie import PIE_NAMES, pie_iteration
from recon.position_refinement import refine_corners
from recon.probe_modes import orthogonalize_modes

#: Every algorithm :meth:`Engine.iterate` runs.
ALGORITHMS = (*projection_family.NAMES, *PIE_NAMES, "ML")


class Engine:
    """State and iterations of a ptychographic reconstruction on one array back-end.

    Parameters
    ----------
    intensities : (N, n, n) float32 measured photons in FFT order (zero frequency at [0, 0]);
        its array module (NumPy or CuPy) is used for everything
    corners_px : (N, 2) float top-left corners (row, col) of the frames' patches in the
        object (pixels; probe centres are ``corners_px + n // 2``)
    probe : (K, n, n) complex64 initial probe modes (centred)
    obj_shape : (H, W) object shape; every patch must fit inside
    obj : (H, W) complex64 initial object (ones by default)
    mask : (n, n) bool in FFT order, True on bad pixels
    background : (n, n) float32 background photons in FFT order
    scale : (N,) float32 per-frame intensity scale (monitor)
    options : engine options
    """

    def __init__(
        self,
        intensities: Any,
        corners_px: Any,
        probe: Any,
        obj_shape: tuple[int, int],
        obj: Any = None,
        mask: Any = None,
        background: Any = None,
        scale: Any = None,
        options: EngineOptions | None = None,
    ) -> None:
        xp = get_xp(intensities)
        self.xp = xp
        self.opts = options or EngineOptions()
        self.inten = xp.ascontiguousarray(intensities, dtype=np.float32)
        n_frames = self.inten.shape[0]
        self.frame_shape = (int(self.inten.shape[1]), int(self.inten.shape[2]))
        self.corners_px = xp.asarray(corners_px, dtype=np.float64).reshape(n_frames, 2)
        probe = xp.asarray(probe, dtype=np.complex64)
        self.probe = xp.ascontiguousarray(probe[None] if probe.ndim == 2 else probe)
        self.obj_shape = (int(obj_shape[0]), int(obj_shape[1]))
        self.obj = (
            xp.ones(self.obj_shape, np.complex64)
            if obj is None
            else xp.ascontiguousarray(obj, dtype=np.complex64)
        )
        self.good = (
            xp.ones(self.frame_shape, bool) if mask is None else ~xp.asarray(mask, dtype=bool)
        )
        bg = xp.zeros(self.frame_shape) if background is None else xp.asarray(background)
        self.bg = bg.astype(np.float32)
        self.scale = self._frame_scale(scale)
        self.iteration = 0
        self.deviance: list[float] = []
        self.algorithms: list[str] = []
        self.messages: list[str] = []
        self._psi = None
        self.ml_state: dict[str, Any] | None = None
        self._work: dict[int, Any] = {}
        self.stage_state: dict[str, Any] = {}
        self._frame_buffer = None  # grown by append_frames
        self.set_geometry()

    # ------------------------------------------------------------------ geometry, caches
    @property
    def n_frames(self) -> int:
        return int(self.inten.shape[0])

    @property
    def n_modes(self) -> int:
        return int(self.probe.shape[0])

    @property
    def n_deviance_pixels(self) -> int:
        """Unmasked pixels of the frames the deviance is summed over (its normaliser)."""
        n_frames = -(-self.n_frames // self.deviance_every)
        return max(1, n_frames * int(self.good.sum()))

    def set_geometry(self) -> None:
        """Integer corners, sub-pixel bins and chunks from ``corners_px`` (after a change)."""
        xp = self.xp
        corners, bins, shifts = quantize_positions(self.corners_px, self.opts.subpixel)
        ny, nx = self.frame_shape
        far = (corners + xp.asarray([ny, nx])).max(axis=0)
        if (
            int(corners.min()) < 0
            or int(far[0]) > self.obj_shape[0]
            or int(far[1]) > self.obj_shape[1]
        ):
            raise ValueError("a frame's patch lies outside the object array")
        self.corners, self.bins, self.shifts = corners, bins, shifts
        self.ramps = shift_ramp(self.frame_shape, shifts, xp)
        self.unramps = self.ramps.conj()
        self.deviance_every = max(1, -(-self.n_frames // self.opts.deviance_frames))
        per_frame = self.n_modes * ny * nx * 8
        chunk = max(1, min(self.n_frames, self.opts.chunk_bytes // per_frame))
        self.chunks = []
        for start in range(0, self.n_frames, chunk):
            sl = slice(start, min(start + chunk, self.n_frames))
            geom = PatchGeometry(
                xp.ascontiguousarray(corners[sl]),
                xp.ascontiguousarray(bins[sl]),
                self.frame_shape,
                self.obj_shape,
            )
            self.chunks.append((sl, geom))
        self._chunk = chunk
        self.invalidate_probe()

    def invalidate_probe(self) -> None:
        self._probes = None
        self._illum = None

    def shifted_probes(self) -> Any:
        """(B, K, n, n) complex64 probe modes at each sub-pixel bin (cached)."""
        if self._probes is None:
            self._probes = self.shift_probe_modes(self.probe)
        return self._probes

    def shift_probe_modes(self, probe: Any) -> Any:
        """(B, K, n, n) complex64 C-contiguous copies of (K, n, n) ``probe`` at every bin."""
        return self.xp.ascontiguousarray(
            shift_probes(probe, self.shifts, self.ramps), dtype=np.complex64
        )

    def frame_data(self, sl: slice) -> tuple[Any, Any, Any, Any]:
        """``(inten[sl], good, bg, scale[sl])``: the measurement side of frames ``sl``."""
        return self.inten[sl], self.good, self.bg, self.scale[sl]

    def illumination(self) -> Any:
        """(H, W) float32 ``sum_j sum_k |P_jk|^2`` placed at the frames' patches (cached)."""
        if self._illum is None:
            out = self.xp.zeros(self.obj_shape, np.float32)
            probes = self.shifted_probes()
            for _, geom in self.chunks:
                kernels.illumination(probes, geom, out)
            self._illum = out
        return self._illum

    def buffer(self, m: int, slot: int = 0) -> Any:
        """(m, K, n, n) complex64 scratch wave stack number ``slot`` (reused, not zeroed)."""
        buf = self._work.get(slot)
        shape = (self._chunk, self.n_modes, *self.frame_shape)
        if buf is None or buf.shape != shape:
            buf = self.xp.empty(shape, np.complex64)
            self._work[slot] = buf
        return buf[:m]

    def record(self, name: str, deviance: float) -> float:
        """Append one iteration's normalised deviance (``deviance / n_deviance_pixels``)."""
        value = deviance / self.n_deviance_pixels
        self.deviance.append(value)
        self.algorithms.append(name)
        self.iteration += 1
        return value

    def update_probe_now(self) -> bool:
        return self.iteration >= self.opts.probe_update_start

    def object_from(self, num: Any) -> None:
        illum = self.illumination()
        lam = self.xp.float32(self.opts.object_reg * float(illum.max()) + 1e-12)
        self.obj = (num + lam * self.obj) / (illum + lam)
        amax = self.opts.max_object_amplitude
        if amax is not None:
            amp = self.xp.abs(self.obj)
            self.obj *= self.xp.minimum(1, amax / self.xp.maximum(amp, 1e-12)).astype(np.float32)

    def probe_denominator(self, den_b: Any) -> Any:
        """(n, n) ``sum_b |O|^2_b``: approximate diagonal of the probe normal operator.

        The sub-pixel shifts are left out (|O|^2 is smooth on that scale); the probe update
        is in residual form, so this preconditioner does not bias its fixed point.
        """
        return den_b.sum(axis=0)

    def probe_from(self, num_b: Any, den_b: Any) -> None:
        # Residual form P += M^-1 sum_b S_b^H (num_b - D_b S_b P): exact fixed point.
        resid = num_b - den_b[:, None] * self.shifted_probes()
        den = self.probe_denominator(den_b)
        lam = self.xp.float32(self.opts.probe_reg * float(den.max()) + 1e-12)
        step = unshift_sum(resid, self.shifts, self.unramps) / (den + lam)
        self.probe = (self.probe + step).astype(np.complex64)
        self.probe = self.xp.ascontiguousarray(orthogonalize_modes(self.probe))
        self.invalidate_probe()

    def ensure_background(self) -> None:
        if self.opts.update_background and float(self.bg.max()) <= 0:
            floor = float(self.xp.percentile(self.inten.mean(axis=0), 5))
            self.bg[...] = max(floor, 1e-3)

    def update_scale(self, model_totals: Any) -> None:
        """Per-frame scale from (N,) model photon totals (normalised to mean 1)."""
        xp = self.xp
        meas = xp.where(self.good, self.inten, 0).sum(axis=(1, 2))
        s = meas / xp.maximum(model_totals, 1e-12)
        self.scale = (s / s.mean()).astype(np.float32)

    # ------------------------------------------------------------------ iterations
    def refine_positions(self) -> float:
        """One gradient-based update of all patch corners (Guizar-Sicairos & Fienup 2008).

        Returns
        -------
        rms shift applied (pixels); see :func:`recon.position_refinement.refine_corners`
        """
        # ML keeps its search state: its line search re-checks descent on the new geometry
        return refine_corners(self)

    def positions_due(self) -> bool:
        """True when this iteration starts with a position refinement."""
        o = self.opts
        return (
            o.refine_positions
            and self.iteration >= o.position_start
            and (self.iteration - o.position_start) % o.position_every == 0
        )

    def iterate(self, name: str) -> float:
        """Run one iteration of algorithm ``name`` (see :data:`ALGORITHMS`), refining the
        positions first when due (:attr:`EngineOptions.refine_positions`).

        Returns
        -------
        the model's normalised Poisson deviance at the start of the iteration
        """
        name = name.upper()
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}: use one of {', '.join(ALGORITHMS)}")
        if self.positions_due():
            self.refine_positions()
        if name == "ML":
            self._psi = None
            return ml_iteration(self)
        self.ml_state = None
        if name in projection_family.NAMES:
            return projection_family.projection_iteration(self, name)
        self._psi = None
        return pie_iteration(self, name)

    def snapshot(self) -> tuple[Any, ...]:
        """Copies of (object, probe, background, patch corners, per-frame scale)."""
        return tuple(a.copy() for a in (self.obj, self.probe, self.bg, self.corners_px, self.scale))

    def restore(self, snap: tuple[Any, ...]) -> None:
        """Go back to a :meth:`snapshot` (the frames must be the same)."""
        self.obj, self.probe, self.bg, self.corners_px, self.scale = (a.copy() for a in snap)
        self._reset_iterates()
        self.set_geometry()

    def _reset_iterates(self) -> None:
        """Forget the DM iterate and the ML search history (after the state changed)."""
        self._psi = None
        self.ml_state = None

    def _frame_scale(self, scale: Any) -> Any:
        """(N,) float32 copy of the per-frame scale, ones when None."""
        if scale is None:
            return self.xp.ones(self.n_frames, np.float32)
        return self.xp.asarray(scale, dtype=np.float32).copy()

    def append_frames(self, intensities: Any, corners_px: Any, scale: Any = None) -> None:
        """Add frames (e.g. while streaming); keeps object, probe and the frames so far.

        Only the new frames are copied (onto the GPU with CuPy): the frame stack grows in
        place inside a buffer whose capacity doubles when full, so streaming N frames in
        batches copies O(N) bytes in all.

        Parameters
        ----------
        intensities : (M, n, n) float32 measured photons in FFT order
        corners_px : (M, 2) float top-left patch corners in the object (pixels)
        scale : (M,) float32 per-frame intensity scale of the new frames (ones by default)
        """
        xp = self.xp
        new = xp.asarray(intensities, dtype=np.float32).reshape(-1, *self.frame_shape)
        m, n_old = new.shape[0], self.n_frames
        buf = self._frame_buffer
        if buf is None or buf.shape[0] < n_old + m:
            capacity = max(n_old + m, 2 * (buf.shape[0] if buf is not None else n_old))
            grown = xp.empty((capacity, *self.frame_shape), np.float32)
            grown[:n_old] = self.inten
            buf = self._frame_buffer = grown
        buf[n_old : n_old + m] = new
        self.inten = buf[: n_old + m]
        corners = xp.asarray(corners_px, dtype=np.float64).reshape(m, 2)
        self.corners_px = xp.concatenate([self.corners_px, corners])
        add = xp.ones(m, np.float32) if scale is None else xp.asarray(scale, np.float32)
        self.scale = xp.concatenate([self.scale, add.reshape(m)])
        self._reset_iterates()
        self.set_geometry()

    def pad_object(self, before: tuple[int, int], after: tuple[int, int]) -> None:
        """Grow the object by ``before``/``after`` pixels (rows, cols), filling with the
        median transmission; the frames' patch corners move with it."""
        xp = self.xp
        fill = complex(to_numpy(xp.median(xp.abs(self.obj))))
        h = self.obj_shape[0] + before[0] + after[0]
        w = self.obj_shape[1] + before[1] + after[1]
        new = xp.full((h, w), fill, np.complex64)
        new[
            before[0] : before[0] + self.obj_shape[0], before[1] : before[1] + self.obj_shape[1]
        ] = self.obj
        self.obj = new
        self.obj_shape = (h, w)
        self.corners_px = self.corners_px + xp.asarray(before, dtype=np.float64)
        self._reset_iterates()
        self.set_geometry()
