"""Gradient-based refinement of the frames' patch corners (Guizar-Sicairos & Fienup,
*Opt. Express* 16, 7264 (2008), doi:10.1364/OE.16.007264)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from recon import kernels
from recon.backend import fft2c, get_xp, ifft2c

if TYPE_CHECKING:  # pragma: no cover
    from recon.algorithms import Engine


def _frame_dot(xp: ModuleType, a: Any, b: Any) -> Any:
    """(M,) ``Re sum conj(a_j) b_j`` over modes and pixels of each frame."""
    return (a.real * b.real + a.imag * b.imag).sum(axis=(1, 2, 3))


def _central_gradient(xp: ModuleType, obj: Any) -> tuple[Any, Any]:
    """(H, W) central differences of ``obj`` along rows and columns (0 on the border)."""
    gy = xp.zeros_like(obj)
    gx = xp.zeros_like(obj)
    gy[1:-1] = 0.5 * (obj[2:] - obj[:-2])
    gx[:, 1:-1] = 0.5 * (obj[:, 2:] - obj[:, :-2])
    return gy, gx


def corner_shifts(engine: Engine) -> Any:
    """(N, 2) float least-squares shift (dy, dx) of every frame's patch corner (pixels).

    For each frame the shift ``delta`` minimising ``|psi' - psi - delta . P grad(O)|^2``
    (``psi'`` the Fourier-projected wave) is solved from its 2x2 normal equations; frames
    whose system is singular get a non-finite shift.
    """
    xp = engine.xp
    probes = engine.shifted_probes()
    gy, gx = _central_gradient(xp, engine.obj)
    deltas = []
    for sl, geom in engine.chunks:
        m = sl.stop - sl.start
        w = engine.buffer(m, 0)
        kernels.exit_waves(engine.obj, probes, geom, w)
        w = fft2c(w, overwrite=True)
        kernels.fourier_project(w, *engine.frame_data(sl))
        w = ifft2c(w, overwrite=True)
        phi = engine.buffer(m, 1)
        kernels.exit_waves(engine.obj, probes, geom, phi)
        w -= phi
        dy = kernels.exit_waves(gy, probes, geom, phi)
        a_yy = _frame_dot(xp, dy, dy)
        b_y = _frame_dot(xp, dy, w)
        dx = engine.buffer(m, 2)
        kernels.exit_waves(gx, probes, geom, dx)
        a_xx = _frame_dot(xp, dx, dx)
        a_xy = _frame_dot(xp, dy, dx)
        b_x = _frame_dot(xp, dx, w)
        det = a_yy * a_xx - a_xy**2
        det = xp.where(xp.abs(det) > 1e-12 * (a_yy * a_xx + 1e-30), det, xp.inf)
        deltas.append(
            xp.stack([(a_xx * b_y - a_xy * b_x), (a_yy * b_x - a_xy * b_y)], 1) / det[:, None]
        )
    return xp.concatenate(deltas)


def affine_part(positions: Any, delta: Any) -> Any:
    """(N, 2) least-squares fit ``A p + b`` of shifts ``delta`` over positions ``p``.

    Parameters
    ----------
    positions : (N, 2) float positions (pixels)
    delta : (N, 2) float shifts

    Returns
    -------
    (N, 2) the affine part of ``delta`` (its mean alone when there are fewer than 4 frames)
    """
    xp = get_xp(delta)
    if delta.shape[0] < 4:
        return xp.broadcast_to(delta.mean(axis=0), delta.shape)
    centred = positions - positions.mean(axis=0)
    design = xp.concatenate([centred, xp.ones((delta.shape[0], 1), delta.dtype)], axis=1)
    coef = xp.linalg.lstsq(design, delta, rcond=None)[0]
    return design @ coef


def refine_corners(engine: Engine) -> float:
    """One gradient-based update of all patch corners of ``engine``, in place.

    The shifts of :func:`corner_shifts` are clipped to ``position_max_step``; their affine
    part (mean, scale, rotation, shear: a least-squares fit ``delta ~ A p + b`` over the
    current positions ``p``) is removed, so that the object neither drifts nor stretches with
    a probe model of the wrong size, and the corners are kept inside the object.

    Returns
    -------
    rms shift applied (pixels)
    """
    xp = engine.xp
    step = engine.opts.position_max_step
    delta = xp.clip(xp.nan_to_num(corner_shifts(engine)), -step, step)
    delta -= affine_part(engine.corners_px, delta)
    ny, nx = engine.frame_shape
    new = engine.corners_px + delta
    new[:, 0] = xp.clip(new[:, 0], 0, engine.obj_shape[0] - ny - 1)
    new[:, 1] = xp.clip(new[:, 1], 0, engine.obj_shape[1] - nx - 1)
    engine.corners_px = new
    engine.set_geometry()
    return float(xp.sqrt((delta**2).sum(axis=1).mean()))
