"""Ptychographic reconstruction algorithms: AP, DM and ML, chainable as ``"AP**150,ML**50"``.

* **AP**, alternating projections: the Fourier (modulus) projection of every frame followed
  by a regularised least-squares update of the object and the probe modes from all frames at
  once (Marchesini et al., *Inverse Problems* 32, 044003 (2016),
  doi:10.1088/0266-5611/32/4/044003). Stable for weak scatterers.
* **DM**, difference map (Thibault et al., *Ultramicroscopy* 109, 338 (2009),
  doi:10.1016/j.ultramic.2008.12.011), iterated in Fourier space so that one iteration costs
  two stack FFTs, with a guard that detects divergence (NaN, or the log-likelihood staying
  above ``factor`` times its best value for ``patience`` iterations), restores the best
  object and probe and continues with AP.
* **ML**, Poisson maximum likelihood by preconditioned nonlinear conjugate gradient
  (Polak-Ribiere) with a quadratic smoothness penalty on the object (Thibault &
  Guizar-Sicairos, *New J. Phys.* 14, 063004 (2012), doi:10.1088/1367-2630/14/6/063004).
  The step length comes from a Newton step on the Poisson likelihood along the search
  direction (second-order expansion, as in that paper).

Also: incoherent probe modes orthogonalised by eigen-decomposition of their Gram matrix
(Thibault & Menzel, *Nature* 494, 68 (2013), doi:10.1038/nature11806), gradient-based position
refinement (Guizar-Sicairos & Fienup, *Opt. Express* 16, 7264 (2008),
doi:10.1364/OE.16.007264), incoherent background and per-frame scale ("floating intensities")
refinement, and a bad-pixel mask (masked pixels keep the model amplitude and are left out of
the likelihood).

The log-likelihood recorded per iteration is the Poisson deviance of the model, normalised per
unmasked pixel: ``2 sum [I ln(I/M) - (I - M)] / N_pixels`` (about 1 at convergence on
Poisson-noisy data, 0 for a perfect fit of noise-free data). To keep its logarithms cheap it
is evaluated on a fixed, evenly spread subset of at least ``EngineOptions.llk_frames`` frames
(all frames of small scans); :func:`recon.metrics.poisson_llk` gives it over all frames.

Sub-pixel positions: each frame's patch corner is split into an integer part and a remainder
quantised to ``1/EngineOptions.subpixel`` pixel; the probe is Fourier-shifted once per
distinct remainder ("bin") per probe update, so an iteration costs two FFTs of the frame stack
plus two of ``subpixel**2`` probes at most. The probe update is written in residual form,
``P += sum_b S_b^H (num_b - D_b S_b P) / (sum_b D_b + reg)``, whose fixed point is exact even
though the preconditioner ignores the sub-pixel shifts of ``D_b = sum_{j in b} |O_j|^2``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from recon import kernels
from recon.backend import fft2c, get_xp, ifft2c, to_numpy
from recon.kernels import PatchGeometry
from recon.operators import quantize_positions, shift_probes, shift_ramp, unshift_sum

log = logging.getLogger(__name__)

ALGORITHMS = ("AP", "DM", "ML")
_STEP = re.compile(r"^\s*(AP|DM|ML)\s*(?:\*\*\s*(\d+))?\s*$", re.IGNORECASE)


def parse_algorithm(text: str) -> list[tuple[str, int]]:
    """Parse a chain such as ``"AP**150,ML**50"`` into ``[("AP", 150), ("ML", 50)]``.

    Steps run left to right (``,`` or ``;`` between them); ``"AP"`` alone means one
    iteration.

    Raises
    ------
    ValueError
        For an empty chain, an unknown algorithm or a zero count.
    """
    parts = [p for p in re.split(r"[,;]", text or "") if p.strip()]
    if not parts:
        raise ValueError(f"empty algorithm string {text!r}: use e.g. 'AP**150,ML**50'")
    steps = []
    for part in parts:
        m = _STEP.match(part)
        if not m:
            raise ValueError(
                f"bad algorithm step {part.strip()!r} in {text!r}: use AP**n, DM**n or ML**n"
            )
        n = int(m.group(2)) if m.group(2) is not None else 1
        if n < 1:
            raise ValueError(f"iteration count must be >= 1 in {part.strip()!r}")
        steps.append((m.group(1).upper(), n))
    return steps


@dataclass
class EngineOptions:
    """Tuning of the engines (defaults suit most data).

    Attributes
    ----------
    subpixel : sub-pixel shift steps per pixel (positions are quantised to 1/subpixel; the
        probe update costs two FFTs of ``subpixel**2`` probes per iteration)
    chunk_bytes : largest wave stack processed at once (bytes); frames are chunked above it
    probe_update_start : first iteration (counted over the whole run) that updates the probe
    object_reg, probe_reg : relative regularisation of the least-squares denominators
    update_background : refine an incoherent background (multiplicative update)
    refine_scale : refine a per-frame intensity scale (floating intensities, monitor)
    refine_positions : refine positions every ``position_every`` iterations (AP only)
    position_start : first iteration of position refinement
    position_max_step : largest position change per refinement (pixels)
    ml_smoothing : weight of the quadratic object smoothness penalty of ML (relative)
    dm_guard_factor, dm_guard_patience : DM divergence guard
    max_object_amplitude : clip |O| to this (None: no clip)
    llk_frames : the per-iteration log-likelihood is evaluated on every ``ceil(N /
        llk_frames)``-th frame (a fixed, evenly spread subset; all frames when N is small)
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
    llk_frames: int = 32


class DivergenceGuard:
    """Detects a diverging iteration from its log-likelihood history.

    Divergence: a non-finite value, or ``patience`` consecutive values above ``factor``
    times the best value seen so far.
    """

    def __init__(self, factor: float = 3.0, patience: int = 5) -> None:
        self.factor = factor
        self.patience = patience
        self.best = math.inf
        self.bad = 0

    def update(self, llk: float) -> bool:
        """Record one value; True when the iteration is diverging."""
        if not math.isfinite(llk):
            return True
        if llk < self.best:
            self.best = llk
        self.bad = self.bad + 1 if llk > self.factor * self.best else 0
        return self.bad >= self.patience


def orthogonalize_modes(probe: Any) -> Any:
    """Orthogonal probe modes spanning the same incoherent sum, strongest first.

    Diagonalises the Gram matrix ``G_kl = <P_k, P_l>``; the new modes are ``V^T P`` with
    ``V`` its eigenvectors, so ``sum_k |P_k|^2`` is unchanged up to rounding.

    Parameters
    ----------
    probe : (K, n, n) complex64

    Returns
    -------
    (K, n, n) complex64 with ``<P_k, P_l> = 0`` for ``k != l``.
    """
    xp = get_xp(probe)
    k = probe.shape[0]
    if k == 1:
        return probe
    flat = probe.reshape(k, -1).astype(np.complex128)
    gram = to_numpy(flat.conj() @ flat.T)
    vals, vecs = np.linalg.eigh(gram)
    vecs = vecs[:, np.argsort(vals)[::-1]]
    out = xp.asarray(vecs.T) @ flat
    return out.reshape(probe.shape).astype(np.complex64)


def _grad_sq(xp: ModuleType, a: Any) -> tuple[Any, Any]:
    """Forward differences along rows and columns (non-periodic)."""
    return a[1:, :] - a[:-1, :], a[:, 1:] - a[:, :-1]


def _dtd(xp: ModuleType, a: Any) -> Any:
    """``D^T D a`` for the forward differences of :func:`_grad_sq` (minus the Laplacian)."""
    dy, dx = _grad_sq(xp, a)
    out = xp.zeros_like(a)
    out[1:, :] += dy
    out[:-1, :] -= dy
    out[:, 1:] += dx
    out[:, :-1] -= dx
    return out


class Engine:
    """State and iterations of a ptychographic reconstruction on one array back-end.

    Parameters
    ----------
    intensities : (N, n, n) float32 measured photons in FFT order (zero frequency at [0, 0]);
        its array module (NumPy or CuPy) is used for everything
    positions_px : (N, 2) float top-left corners of the frames' patches in the object (pixels)
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
        positions_px: Any,
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
        self.positions = xp.asarray(positions_px, dtype=np.float64).reshape(n_frames, 2)
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
        self.bg = (
            xp.zeros(self.frame_shape, np.float32)
            if background is None
            else xp.asarray(background, dtype=np.float32).copy()
        )
        self.scale = (
            xp.ones(n_frames, np.float32)
            if scale is None
            else xp.asarray(scale, dtype=np.float32).copy()
        )
        self.iteration = 0
        self.llk: list[float] = []
        self.algorithms: list[str] = []
        self.messages: list[str] = []
        self._psi = None
        self._ml = None
        self._work: dict[int, Any] = {}
        self.stage_state: dict[str, Any] = {}
        self._set_geometry()

    # ------------------------------------------------------------------ geometry, caches
    @property
    def n_frames(self) -> int:
        return int(self.inten.shape[0])

    @property
    def n_modes(self) -> int:
        return int(self.probe.shape[0])

    @property
    def n_pixels(self) -> int:
        """Number of unmasked pixels in the frames used for the log-likelihood."""
        n_llk = -(-self.n_frames // self.llk_every)
        return max(1, n_llk * int(self.good.sum()))

    def _set_geometry(self) -> None:
        xp = self.xp
        corners, bins, shifts = quantize_positions(self.positions, self.opts.subpixel)
        ny, nx = self.frame_shape
        lo = int(corners.min())
        if lo < 0 or int((corners[:, 0] + ny).max()) > self.obj_shape[0]:
            raise ValueError("a frame's patch lies outside the object array")
        if int((corners[:, 1] + nx).max()) > self.obj_shape[1]:
            raise ValueError("a frame's patch lies outside the object array")
        self.corners, self.bins, self.shifts = corners, bins, shifts
        self.ramps = shift_ramp(self.frame_shape, shifts, xp)
        self.unramps = self.ramps.conj()
        self.llk_every = max(1, -(-self.n_frames // self.opts.llk_frames))
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
        self._invalidate_probe()

    def _invalidate_probe(self) -> None:
        self._probes = None
        self._illum = None

    def shifted_probes(self) -> Any:
        """(B, K, n, n) complex64 probe modes at each sub-pixel bin (cached)."""
        if self._probes is None:
            self._probes = xp_contig(self.xp, shift_probes(self.probe, self.shifts, self.ramps))
        return self._probes

    def illumination(self) -> Any:
        """(H, W) float32 ``sum_j sum_k |P_jk|^2`` placed at the frame positions (cached)."""
        if self._illum is None:
            out = self.xp.zeros(self.obj_shape, np.float32)
            probes = self.shifted_probes()
            for _, geom in self.chunks:
                kernels.illumination(probes, geom, out)
            self._illum = out
        return self._illum

    def _buffer(self, m: int, slot: int = 0) -> Any:
        key = slot
        buf = self._work.get(key)
        shape = (self._chunk, self.n_modes, *self.frame_shape)
        if buf is None or buf.shape != shape:
            buf = self.xp.empty(shape, np.complex64)
            self._work[key] = buf
        return buf[:m]

    # ------------------------------------------------------------------ common updates
    def _record(self, name: str, deviance: float) -> float:
        value = deviance / self.n_pixels
        self.llk.append(value)
        self.algorithms.append(name)
        self.iteration += 1
        return value

    def _update_probe_now(self) -> bool:
        return self.iteration >= self.opts.probe_update_start

    def _object_from(self, num: Any) -> None:
        illum = self.illumination()
        lam = self.xp.float32(self.opts.object_reg * float(illum.max()) + 1e-12)
        self.obj = (num + lam * self.obj) / (illum + lam)
        amax = self.opts.max_object_amplitude
        if amax is not None:
            amp = self.xp.abs(self.obj)
            self.obj *= self.xp.minimum(1, amax / self.xp.maximum(amp, 1e-12)).astype(np.float32)

    def _probe_denominator(self, den_b: Any) -> Any:
        """(n, n) ``sum_b |O|^2_b``: approximate diagonal of the probe normal operator.

        The sub-pixel shifts are left out (|O|^2 is smooth on that scale); the probe update
        is in residual form, so this preconditioner does not bias its fixed point.
        """
        return den_b.sum(axis=0)

    def _probe_from(self, num_b: Any, den_b: Any) -> None:
        # Residual form P += M^-1 sum_b S_b^H (num_b - D_b S_b P): exact fixed point.
        resid = num_b - den_b[:, None] * self.shifted_probes()
        den = self._probe_denominator(den_b)
        lam = self.xp.float32(self.opts.probe_reg * float(den.max()) + 1e-12)
        step = unshift_sum(resid, self.shifts, self.unramps) / (den + lam)
        self.probe = (self.probe + step).astype(np.complex64)
        self.probe = self.xp.ascontiguousarray(orthogonalize_modes(self.probe))
        self._invalidate_probe()

    def _ensure_background(self) -> None:
        if self.opts.update_background and float(self.bg.max()) <= 0:
            floor = float(self.xp.percentile(self.inten.mean(axis=0), 5))
            self.bg[...] = max(floor, 1e-3)

    # ------------------------------------------------------------------ AP and DM
    def _projection_iteration(self, name: str) -> float:
        """One AP or DM iteration; returns the normalised deviance of the model."""
        xp = self.xp
        dm = name == "DM"
        if dm and self._psi is None:
            self._psi = xp.empty((self.n_frames, self.n_modes, *self.frame_shape), np.complex64)
            probes = self.shifted_probes()
            for sl, geom in self.chunks:
                kernels.exit_waves(self.obj, probes, geom, self._psi[sl])
                self._psi[sl] = fft2c(self._psi[sl], overwrite=True)
        self._ensure_background()
        update_probe = self._update_probe_now()
        probes = self.shifted_probes()
        num_o = xp.zeros(self.obj_shape, np.complex64)
        if update_probe:
            num_p = xp.zeros(probes.shape, np.complex64)
            den_p = xp.zeros((probes.shape[0], *self.frame_shape), np.float32)
        ratio = xp.zeros(self.frame_shape, np.float32) if self.opts.update_background else None
        totals = [] if self.opts.refine_scale else None
        single = len(self.chunks) == 1
        fresh_illum = None
        if self._illum is None:
            fresh_illum = xp.zeros(self.obj_shape, np.float32)
        deviance = 0.0
        for sl, geom in self.chunks:
            w = self._buffer(sl.stop - sl.start)
            kernels.exit_waves(self.obj, probes, geom, w)
            w = fft2c(w, overwrite=True)
            if totals is not None:
                totals.append((w.real**2 + w.imag**2).sum(axis=(1, 2, 3)))
            psi = self._psi[sl] if dm else None
            deviance += kernels.fourier_project(
                w,
                self.inten[sl],
                self.good,
                self.bg,
                self.scale[sl],
                psi=psi,
                ratio=ratio,
                llk_every=self.llk_every,
                j0=sl.start,
            )
            w = ifft2c(w, overwrite=True)
            kernels.backproject_object(w, probes, geom, num_o, fresh_illum)
        if fresh_illum is not None:
            self._illum = fresh_illum
        self._object_from(num_o)
        if update_probe:
            # Probe from the same waves and the *updated* object: alternating least squares
            # (a simultaneous update of both would overshoot their common scale by 2x).
            for sl, geom in self.chunks:
                if not single:
                    w = self._buffer(sl.stop - sl.start)
                    if dm:
                        w[...] = self._psi[sl]
                    else:
                        kernels.exit_waves(self.obj, probes, geom, w)
                        w = fft2c(w, overwrite=True)
                        kernels.fourier_project(
                            w, self.inten[sl], self.good, self.bg, self.scale[sl]
                        )
                    w = ifft2c(w, overwrite=True)
                kernels.backproject_probe(w, self.obj, geom, num_p, den_p)
            self._probe_from(num_p, den_p)
        if ratio is not None:
            self.bg *= xp.where(self.good, ratio / self.n_frames, 1).astype(np.float32)
        if totals is not None:
            self._update_scale(xp.concatenate(totals))
        return self._record(name, deviance)

    def _update_scale(self, model_totals: Any) -> None:
        xp = self.xp
        meas = xp.where(self.good, self.inten, 0).sum(axis=(1, 2))
        s = meas / xp.maximum(model_totals, 1e-12)
        self.scale = (s / s.mean()).astype(np.float32)

    def ap_iteration(self) -> float:
        """One alternating-projections iteration (Marchesini et al. 2016)."""
        self._psi = None
        self._ml = None
        if (
            self.opts.refine_positions
            and self.iteration >= self.opts.position_start
            and self.iteration % self.opts.position_every == 0
        ):
            self.refine_positions()
        return self._projection_iteration("AP")

    def dm_iteration(self) -> float:
        """One difference-map iteration (Thibault et al. 2009), in Fourier space."""
        self._ml = None
        return self._projection_iteration("DM")

    # ------------------------------------------------------------------ ML
    def ml_iteration(self) -> float:
        """One Poisson maximum-likelihood conjugate-gradient iteration (Thibault 2012)."""
        xp = self.xp
        self._psi = None
        update_probe = self._update_probe_now()
        probes = self.shifted_probes()
        g_o = xp.zeros(self.obj_shape, np.complex64)
        g_pb = xp.zeros(probes.shape, np.complex64)
        den_p = xp.zeros((probes.shape[0], *self.frame_shape), np.float32)
        deviance = 0.0
        for sl, geom in self.chunks:
            w = self._buffer(sl.stop - sl.start)
            kernels.exit_waves(self.obj, probes, geom, w)
            w = fft2c(w, overwrite=True)
            deviance += kernels.ml_gradient_fourier(
                w, self.inten[sl], self.good, self.bg, self.scale[sl], self.llk_every, sl.start
            )
            w = ifft2c(w, overwrite=True)
            kernels.backproject_object(w, probes, geom, g_o)
            kernels.backproject_probe(w, self.obj, geom, g_pb, den_p)
        illum = self.illumination()
        if self._ml is None:
            lit = illum > 0.1 * illum.max()
            mu = self.opts.ml_smoothing * float(xp.median(illum[lit])) if bool(lit.any()) else 0
            self._ml = {"mu": mu}
        st = self._ml
        mu = st["mu"]
        if mu > 0:
            g_o += np.float32(mu) * _dtd(xp, self.obj)
        lam_o = np.float32(1e-3 * float(illum.max()) + 1e-12)
        z_o = g_o / (illum + lam_o)
        if update_probe:
            g_p = unshift_sum(g_pb, self.shifts, self.unramps)
            den = self._probe_denominator(den_p)
            lam_p = np.float32(1e-3 * float(den.max()) + 1e-12)
            z_p = g_p / (den + lam_p)
        else:
            g_p = xp.zeros_like(self.probe)
            z_p = g_p
        gz = _rdot(xp, g_o, z_o) + _rdot(xp, g_p, z_p)
        if "d_o" in st and st["gz"] > 0:
            beta = (gz - _rdot(xp, g_o, st["z_o"]) - _rdot(xp, g_p, st["z_p"])) / st["gz"]
            beta = max(0.0, beta)
        else:
            beta = 0.0
        d_o = -z_o + np.float32(beta) * st["d_o"] if beta else -z_o
        d_p = -z_p + np.float32(beta) * st["d_p"] if beta else -z_p
        st.update(z_o=z_o, z_p=z_p, gz=gz, d_o=d_o, d_p=d_p)
        # Newton step on L(gamma) = L(O + gamma dO, P + gamma dP), linearised waves.
        d_probes = xp_contig(xp, shift_probes(d_p, self.shifts, self.ramps))
        d1 = d2 = 0.0
        for sl, geom in self.chunks:
            m = sl.stop - sl.start
            w0 = self._buffer(m, 0)
            dw = self._buffer(m, 1)
            kernels.exit_waves(self.obj, probes, geom, w0)
            kernels.exit_waves(self.obj, d_probes, geom, dw)
            kernels.exit_waves(d_o, probes, geom, dw, accumulate=True)
            w0 = fft2c(w0, overwrite=True)
            dw = fft2c(dw, overwrite=True)
            a, b = kernels.ml_line_sums(w0, dw, self.inten[sl], self.good, self.bg, self.scale[sl])
            d1 += a
            d2 += b
        if mu > 0:
            gy, gx = _grad_sq(xp, self.obj)
            hy, hx = _grad_sq(xp, d_o)
            d1 += 2 * mu * (_rdot(xp, gy, hy) + _rdot(xp, gx, hx))
            d2 += 2 * mu * (_rdot(xp, hy, hy) + _rdot(xp, hx, hx))
        if d2 > 0 and d1 < 0:
            gamma = -d1 / d2
        else:  # not a descent direction: restart along the steepest descent next time
            gamma = 0.0
            st.pop("d_o", None)
        self.obj = (self.obj + np.float32(gamma) * d_o).astype(np.complex64)
        if update_probe and gamma:
            self.probe = (self.probe + np.float32(gamma) * d_p).astype(np.complex64)
            self._invalidate_probe()
        return self._record("ML", deviance)

    # ------------------------------------------------------------------ positions
    def refine_positions(self) -> float:
        """One gradient-based update of all positions (Guizar-Sicairos & Fienup 2008).

        For each frame the shift ``delta`` minimising ``|psi' - psi - delta . P grad(O)|^2``
        (``psi'`` the Fourier-projected wave) is applied, clipped to ``position_max_step``;
        the mean shift is removed so the object does not drift.

        Returns
        -------
        rms shift applied (pixels)
        """
        xp = self.xp
        probes = self.shifted_probes()
        gy = xp.zeros_like(self.obj)
        gx = xp.zeros_like(self.obj)
        gy[1:-1] = 0.5 * (self.obj[2:] - self.obj[:-2])
        gx[:, 1:-1] = 0.5 * (self.obj[:, 2:] - self.obj[:, :-2])
        deltas = []
        for sl, geom in self.chunks:
            m = sl.stop - sl.start
            w = self._buffer(m, 0)
            kernels.exit_waves(self.obj, probes, geom, w)
            w = fft2c(w, overwrite=True)
            kernels.fourier_project(w, self.inten[sl], self.good, self.bg, self.scale[sl])
            w = ifft2c(w, overwrite=True)
            phi = self._buffer(m, 1)
            kernels.exit_waves(self.obj, probes, geom, phi)
            w -= phi
            dy = kernels.exit_waves(gy, probes, geom, phi)
            a_yy = _frame_dot(xp, dy, dy)
            b_y = _frame_dot(xp, dy, w)
            dx = self._buffer(m, 2)
            kernels.exit_waves(gx, probes, geom, dx)
            a_xx = _frame_dot(xp, dx, dx)
            a_xy = _frame_dot(xp, dy, dx)
            b_x = _frame_dot(xp, dx, w)
            det = a_yy * a_xx - a_xy**2
            det = xp.where(xp.abs(det) > 1e-12 * (a_yy * a_xx + 1e-30), det, xp.inf)
            deltas.append(
                xp.stack([(a_xx * b_y - a_xy * b_x), (a_yy * b_x - a_xy * b_y)], 1) / det[:, None]
            )
        delta = xp.concatenate(deltas)
        step = self.opts.position_max_step
        delta = xp.clip(xp.nan_to_num(delta), -step, step)
        delta -= delta.mean(axis=0)
        ny, nx = self.frame_shape
        new = self.positions + delta
        new[:, 0] = xp.clip(new[:, 0], 0, self.obj_shape[0] - ny - 1)
        new[:, 1] = xp.clip(new[:, 1], 0, self.obj_shape[1] - nx - 1)
        self.positions = new
        self._set_geometry()
        return float(xp.sqrt((delta**2).sum(axis=1).mean()))

    # ------------------------------------------------------------------ driver
    def iterate(self, name: str) -> float:
        """Run one iteration of algorithm ``name`` (AP, DM or ML); returns its llk."""
        name = name.upper()
        if name == "AP":
            return self.ap_iteration()
        if name == "DM":
            return self.dm_iteration()
        if name == "ML":
            return self.ml_iteration()
        raise ValueError(f"unknown algorithm {name!r}: use AP, DM or ML")

    def snapshot(self) -> tuple[Any, Any, Any]:
        """Copies of (object, probe, background)."""
        return self.obj.copy(), self.probe.copy(), self.bg.copy()

    def restore(self, snap: tuple[Any, Any, Any]) -> None:
        """Go back to a :meth:`snapshot`."""
        self.obj, self.probe, self.bg = (a.copy() for a in snap)
        self._psi = None
        self._ml = None
        self._invalidate_probe()

    def set_frames(self, intensities: Any, positions_px: Any, scale: Any = None) -> None:
        """Replace the frames (e.g. with more of them while streaming); keeps object/probe."""
        xp = self.xp
        self.inten = xp.ascontiguousarray(xp.asarray(intensities, dtype=np.float32))
        self.positions = xp.asarray(positions_px, dtype=np.float64).reshape(-1, 2)
        self.scale = (
            xp.ones(self.n_frames, np.float32)
            if scale is None
            else xp.asarray(scale, dtype=np.float32)
        )
        self._psi = None
        self._ml = None
        self._set_geometry()

    def pad_object(self, before: tuple[int, int], after: tuple[int, int]) -> None:
        """Grow the object by ``before``/``after`` pixels (rows, cols), filling with the
        median transmission; frame positions move with it."""
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
        self.positions = self.positions + xp.asarray(before, dtype=np.float64)
        self._psi = None
        self._ml = None
        self._set_geometry()


def _rdot(xp: ModuleType, a: Any, b: Any) -> float:
    """Real part of the inner product ``<a, b>``."""
    return float(xp.vdot(a.ravel(), b.ravel()).real)


def _frame_dot(xp: ModuleType, a: Any, b: Any) -> Any:
    """(M,) ``Re sum conj(a_j) b_j`` over modes and pixels of each frame."""
    return (a.real * b.real + a.imag * b.imag).sum(axis=(1, 2, 3))


def xp_contig(xp: ModuleType, a: Any) -> Any:
    """C-contiguous complex64 copy-or-view of ``a``."""
    return xp.ascontiguousarray(a, dtype=np.complex64)


def run_chain(
    engine: Engine,
    steps: list[tuple[str, int]],
    callback: Any = None,
) -> list[str]:
    """Run a parsed algorithm chain on ``engine``; DM falls back to AP when it diverges.

    Parameters
    ----------
    engine : the engine
    steps : output of :func:`parse_algorithm`
    callback : called as ``callback(engine)`` after every iteration

    Returns
    -------
    messages : what happened that a user should know (e.g. the DM fallback)
    """
    messages = []
    for name, count in steps:
        for msg in run_stage(engine, name, count, callback):
            messages.append(msg)
    return messages


def run_stage(
    engine: Engine, name: str, count: int, callback: Any = None, new_stage: bool = True
) -> list[str]:
    """Run ``count`` iterations of one algorithm (see :func:`run_chain`).

    ``new_stage=False`` continues a stage started by an earlier call (the DM guard keeps its
    history, and a stage that fell back to AP stays on AP).
    """
    name = name.upper()
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}: use AP, DM or ML")
    messages = []
    if new_stage or engine.stage_state.get("name") != name:
        engine.stage_state = {
            "name": name,
            "guard": DivergenceGuard(engine.opts.dm_guard_factor, engine.opts.dm_guard_patience),
            "best": None,
            "current": name,
        }
    st = engine.stage_state
    guard = st["guard"]
    for _ in range(count):
        value = engine.iterate(st["current"])
        if st["current"] == "DM":
            if math.isfinite(value) and value <= guard.best:
                st["best"] = engine.snapshot()
            if guard.update(value):
                msg = (
                    f"DM diverged at iteration {engine.iteration} (llk {value:.4g}, best "
                    f"{guard.best:.4g}); restored the best DM state and falling back to AP "
                    "for the rest of this DM stage"
                )
                log.info(msg)
                messages.append(msg)
                engine.messages.append(msg)
                if st["best"] is not None:
                    engine.restore(st["best"])
                st["current"] = "AP"
        if callback is not None:
            callback(engine)
    return messages
