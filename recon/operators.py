"""Linear operators of far-field ptychography and their adjoints.

The exit wave of frame ``j`` and probe mode ``k`` is

    psi_jk(r) = P_k(r - f_j) O(c_j + r),      r in [0, n)^2,

with ``c_j`` the integer top-left corner of the frame's patch in the object and ``f_j`` in
[0, 1)^2 its sub-pixel remainder; the probe is shifted by ``f_j`` in Fourier space (exact for a
band-limited probe). The remainders are quantised to ``1/subpixel`` of a pixel so that only a
few shifted probes exist (:func:`quantize_positions`), which keeps the per-iteration cost at two
stack FFTs. The detector sees ``I_j = s_j sum_k |F psi_jk|^2 + B`` with the orthonormal FFT
``F`` (:func:`recon.backend.fft2c`), an optional per-frame scale ``s_j`` and background ``B``.

Every operator here has an adjoint; ``tests/recon/test_operators.py`` checks
``<A x, y> = <x, A^H y>`` for each (the dot-product test).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from recon import kernels
from recon.backend import fft2c, get_xp, ifft2c
from recon.kernels import PatchGeometry


def shift_ramp(shape: tuple[int, int], shifts: Any, xp: ModuleType = np) -> Any:
    """Fourier phase ramps ``exp(-2 i pi (ky dy + kx dx))`` for sub-pixel shifts.

    Parameters
    ----------
    shape : (ny, nx)
    shifts : (B, 2) float shifts (dy, dx) in pixels
    xp : array module

    Returns
    -------
    ramps : (B, ny, nx) complex64, unshifted FFT order.
    """
    ny, nx = shape
    shifts = xp.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    ky = xp.fft.fftfreq(ny)
    kx = xp.fft.fftfreq(nx)
    ry = xp.exp(-2j * np.pi * ky[None, :] * shifts[:, 0, None]).astype(np.complex64)
    rx = xp.exp(-2j * np.pi * kx[None, :] * shifts[:, 1, None]).astype(np.complex64)
    return ry[:, :, None] * rx[:, None, :]


def fourier_shift(a: Any, dy: Any, dx: Any) -> Any:
    """Shift images by sub-pixel amounts with the Fourier shift theorem (cyclic).

    ``out(r) = a(r - d)``: a positive shift moves the content down/right.

    Parameters
    ----------
    a : (..., ny, nx) real or complex array (NumPy or CuPy)
    dy, dx : float shifts in pixels, or arrays of the leading shape ``a.shape[:-2]`` (or
        broadcastable to it) for one shift per image

    Returns
    -------
    complex array of the shape of ``a``: complex128 for complex128 or float64 input,
    complex64 otherwise.
    """
    xp = get_xp(a)
    ctype = np.complex128 if a.dtype in (np.complex128, np.float64) else np.complex64
    dy, dx = xp.broadcast_arrays(xp.asarray(dy, dtype=np.float64), xp.asarray(dx, dtype=np.float64))
    ramp = shift_ramp(a.shape[-2:], xp.stack([dy.ravel(), dx.ravel()], axis=1), xp)
    ramp = ramp.reshape(*dy.shape, *a.shape[-2:])
    return ifft2c(fft2c(xp.asarray(a, dtype=ctype)) * ramp).astype(ctype, copy=False)


def quantize_positions(positions_px: Any, subpixel: int = 8) -> tuple[Any, Any, Any]:
    """Split patch positions into integer corners and quantised sub-pixel shift bins.

    Parameters
    ----------
    positions_px : (N, 2) float top-left corner of each frame's patch (row, col), pixels
    subpixel : number of shift steps per pixel (1 rounds positions to whole pixels)

    Returns
    -------
    corners : (N, 2) int64
    bins : (N,) int64 indices into ``shifts``
    shifts : (B, 2) float64 distinct sub-pixel shifts in [0, 1), (dy, dx)
    """
    xp = get_xp(positions_px)
    pos = xp.asarray(positions_px, dtype=np.float64)
    q = xp.rint(pos * subpixel).astype(np.int64)
    corners = xp.floor_divide(q, subpixel)
    frac = q - corners * subpixel
    code = frac[:, 0] * subpixel + frac[:, 1]
    uniq, bins = xp.unique(code, return_inverse=True)
    shifts = xp.stack([uniq // subpixel, uniq % subpixel], axis=1).astype(np.float64) / subpixel
    return corners, bins.ravel().astype(np.int64), shifts


def shift_probes(probe: Any, shifts: Any, ramps: Any = None) -> Any:
    """Probe modes shifted to each sub-pixel bin, ``S_b P_k``.

    Parameters
    ----------
    probe : (K, n, n) complex64
    shifts : (B, 2) float shifts (dy, dx)
    ramps : (B, n, n) complex64 precomputed :func:`shift_ramp` of ``shifts`` (optional)

    Returns
    -------
    (B, K, n, n) complex64
    """
    xp = get_xp(probe)
    if shifts.shape[0] == 1 and float(abs(shifts).max()) == 0.0:
        return probe[None].copy()
    if ramps is None:
        ramps = shift_ramp(probe.shape[-2:], shifts, xp)
    ft = fft2c(probe)
    return ifft2c(ft[None] * ramps[:, None], overwrite=True).astype(np.complex64, copy=False)


def unshift_sum(stack: Any, shifts: Any, unramps: Any = None) -> Any:
    """Adjoint of :func:`shift_probes`: ``sum_b S_b^H stack_b``.

    Parameters
    ----------
    stack : (B, K, n, n) complex64
    shifts : (B, 2) float
    unramps : (B, n, n) complex64 conjugate of :func:`shift_ramp` of ``shifts`` (optional)

    Returns
    -------
    (K, n, n) complex64
    """
    xp = get_xp(stack)
    if shifts.shape[0] == 1 and float(abs(shifts).max()) == 0.0:
        return stack[0].copy()
    if unramps is None:
        unramps = shift_ramp(stack.shape[-2:], shifts, xp).conj()
    ft = fft2c(stack)
    ft *= unramps[:, None]
    return ifft2c(ft.sum(axis=0), overwrite=True).astype(np.complex64, copy=False)


def extract_patches(obj: Any, corners: Any, shape: tuple[int, int]) -> Any:
    """Patches ``obj[c_j : c_j + n]`` (operator ``Q``).

    Parameters
    ----------
    obj : (H, W) array
    corners : (N, 2) int top-left corners
    shape : (ny, nx) patch shape

    Returns
    -------
    (N, ny, nx) array of the dtype of ``obj``
    """
    geom = PatchGeometry(corners, None, shape, obj.shape)
    rows, cols = geom.rows_cols()
    return obj[rows, cols]


def insert_patches(patches: Any, corners: Any, obj_shape: tuple[int, int]) -> Any:
    """Adjoint of :func:`extract_patches`: sum of the patches placed at their corners.

    Parameters
    ----------
    patches : (N, ny, nx) complex or real array
    corners : (N, 2) int
    obj_shape : (H, W)

    Returns
    -------
    (H, W) array of the dtype of ``patches``
    """
    xp = get_xp(patches)
    out = xp.zeros(obj_shape, dtype=patches.dtype)
    geom = PatchGeometry(corners, None, patches.shape[-2:], obj_shape)
    kernels._scatter_add(xp, out, geom.flat_index(), patches)
    return out


class PtychoOperator:
    """Forward model of one scan with fixed positions.

    Parameters
    ----------
    positions_px : (N, 2) float top-left patch corners in object pixels (row, col)
    frame_shape : (n, n)
    obj_shape : (H, W); every patch must lie inside
    subpixel : sub-pixel quantisation (steps per pixel)
    xp : array module
    """

    def __init__(
        self,
        positions_px: Any,
        frame_shape: tuple[int, int],
        obj_shape: tuple[int, int],
        subpixel: int = 8,
        xp: ModuleType = np,
    ) -> None:
        self.xp = xp
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self.obj_shape = (int(obj_shape[0]), int(obj_shape[1]))
        corners, bins, shifts = quantize_positions(xp.asarray(positions_px), subpixel)
        lo = corners.min(axis=0)
        hi = corners.max(axis=0) + xp.asarray(self.frame_shape)
        if int(lo.min()) < 0 or int(hi[0]) > obj_shape[0] or int(hi[1]) > obj_shape[1]:
            raise ValueError("a patch lies outside the object array")
        self.geom = PatchGeometry(corners, bins, self.frame_shape, self.obj_shape)
        self.shifts = shifts

    @property
    def n_frames(self) -> int:
        return int(self.geom.corners.shape[0])

    def exit_waves(self, obj: Any, probe: Any) -> Any:
        """(N, K, n, n) complex64 exit waves of object (H, W) and probe modes (K, n, n)."""
        probes = shift_probes(probe, self.shifts)
        out = self.xp.empty((self.n_frames, *probe.shape), dtype=np.complex64)
        return kernels.exit_waves(obj, probes, self.geom, out)

    def object_adjoint(self, waves: Any, probe: Any) -> Any:
        """Adjoint in the object of :meth:`exit_waves`: (H, W) complex64."""
        probes = shift_probes(probe, self.shifts)
        out = self.xp.zeros(self.obj_shape, dtype=np.complex64)
        return kernels.backproject_object(waves, probes, self.geom, out)

    def probe_adjoint(self, waves: Any, obj: Any) -> Any:
        """Adjoint in the probe of :meth:`exit_waves`: (K, n, n) complex64."""
        xp = self.xp
        num = xp.zeros((self.shifts.shape[0], *waves.shape[1:]), dtype=np.complex64)
        den = xp.zeros((self.shifts.shape[0], *self.frame_shape), dtype=np.float32)
        kernels.backproject_probe(waves, obj, self.geom, num, den)
        return unshift_sum(num, self.shifts)

    def propagate(self, waves: Any) -> Any:
        """Far-field propagation (orthonormal FFT, FFT order), ``F``."""
        return fft2c(waves)

    def backpropagate(self, waves: Any) -> Any:
        """Adjoint (= inverse) of :meth:`propagate`, ``F^H``."""
        return ifft2c(waves)

    def intensities(
        self, obj: Any, probe: Any, centred: bool = True, background: Any = None
    ) -> Any:
        """Model intensities ``sum_k |F psi_jk|^2 (+ B)``: (N, n, n) float32.

        With ``centred`` the zero frequency is in the middle of each frame (as detector
        frames); otherwise in FFT order.
        """
        xp = self.xp
        far = self.propagate(self.exit_waves(obj, probe))
        inten = (far.real**2 + far.imag**2).sum(axis=1).astype(np.float32)
        if background is not None:
            inten += background
        return xp.fft.fftshift(inten, axes=(-2, -1)) if centred else inten
