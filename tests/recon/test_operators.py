"""Dot-product adjoint tests of the ptychography operators and kernel parity."""

import numpy as np
import pytest

from recon import kernels, ml_kernels
from recon.backend import fft2c, ifft2c
from recon.operators import (
    PtychoOperator,
    extract_patches,
    fourier_shift,
    insert_patches,
    quantize_positions,
    shift_probes,
    unshift_sum,
)


def _c(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _dot(a, b):
    return complex(np.vdot(a.astype(np.complex128), b.astype(np.complex128)))


def _assert_adjoint(ax_y, x_ahy, tol=1e-4):
    assert abs(ax_y - x_ahy) <= tol * max(abs(ax_y), 1.0), (ax_y, x_ahy)


@pytest.fixture(params=[True, False], ids=["numba", "generic"])
def kernel_path(request, monkeypatch):
    if request.param and not kernels._HAS_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setattr(kernels, "_HAS_NUMBA", request.param)
    return request.param


def _operator(rng, n=16, n_frames=12, shape=(40, 44), subpixel=8):
    pos = rng.uniform(0, [shape[0] - n - 1, shape[1] - n - 1], (n_frames, 2))
    return PtychoOperator(pos, (n, n), shape, subpixel=subpixel)


def test_patch_extraction_adjoint(kernel_path):
    rng = np.random.default_rng(1)
    corners = rng.integers(0, 20, (9, 2))
    x = _c(rng, 40, 40)
    y = _c(rng, 9, 16, 16)
    _assert_adjoint(
        _dot(extract_patches(x, corners, (16, 16)), y), _dot(x, insert_patches(y, corners, x.shape))
    )


def test_propagator_adjoint():
    rng = np.random.default_rng(2)
    x, y = _c(rng, 3, 16, 16), _c(rng, 3, 16, 16)
    _assert_adjoint(_dot(fft2c(x), y), _dot(x, ifft2c(y)))
    np.testing.assert_allclose(np.linalg.norm(fft2c(x)), np.linalg.norm(x), rtol=1e-5)


def test_shift_adjoint():
    rng = np.random.default_rng(3)
    shifts = np.array([[0.0, 0.0], [0.25, 0.5], [0.875, 0.125]])
    x, y = _c(rng, 2, 16, 16), _c(rng, 3, 2, 16, 16)
    _assert_adjoint(_dot(shift_probes(x, shifts), y), _dot(x, unshift_sum(y, shifts)))


def test_object_operator_adjoint(kernel_path):
    rng = np.random.default_rng(4)
    op = _operator(rng)
    probe = _c(rng, 2, 16, 16)
    x = _c(rng, *op.obj_shape)
    y = _c(rng, op.n_frames, 2, 16, 16)
    _assert_adjoint(_dot(op.exit_waves(x, probe), y), _dot(x, op.object_adjoint(y, probe)))


def test_probe_operator_adjoint(kernel_path):
    rng = np.random.default_rng(5)
    op = _operator(rng)
    obj = _c(rng, *op.obj_shape)
    x = _c(rng, 2, 16, 16)
    y = _c(rng, op.n_frames, 2, 16, 16)
    _assert_adjoint(_dot(op.exit_waves(obj, x), y), _dot(x, op.probe_adjoint(y, obj)))


def test_full_forward_adjoint(kernel_path):
    """A = F Q_P: far field of the exit waves, adjoint = object adjoint of F^H."""
    rng = np.random.default_rng(6)
    op = _operator(rng)
    probe = _c(rng, 1, 16, 16)
    x = _c(rng, *op.obj_shape)
    y = _c(rng, op.n_frames, 1, 16, 16)
    ax = op.propagate(op.exit_waves(x, probe))
    ahy = op.object_adjoint(op.backpropagate(y), probe)
    _assert_adjoint(_dot(ax, y), _dot(x, ahy))


def test_numba_and_generic_kernels_agree(monkeypatch):
    if not kernels._HAS_NUMBA:
        pytest.skip("numba not installed")
    rng = np.random.default_rng(7)
    op = _operator(rng)
    probe = _c(rng, 2, 16, 16)
    obj = _c(rng, *op.obj_shape)
    inten = rng.poisson(5.0, (op.n_frames, 16, 16)).astype(np.float32)
    good = np.ones((16, 16), bool)
    good[3, 4] = False
    bg = np.full((16, 16), 0.1, np.float32)
    scale = rng.uniform(0.8, 1.2, op.n_frames).astype(np.float32)
    results = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        w = op.propagate(op.exit_waves(obj, probe))
        psi = w * np.float32(0.9)
        w_ap = w.copy()
        dev_ap = kernels.fourier_project(w_ap, inten, good, bg, scale)
        w_dm = w.copy()
        dev_dm = kernels.fourier_project(w_dm, inten, good, bg, scale, psi=psi)
        w_ml = w.copy()
        dev_ml = ml_kernels.ml_gradient(w_ml, inten, good, bg, scale, "poisson")
        coef = ml_kernels.ml_line_coefficients(w, w * 0.1j + 0.05)
        d = ml_kernels.ml_line_values(coef, 0.0, inten, good, bg, scale, "poisson")[1:3]
        ill = kernels.illumination(
            shift_probes(probe, op.shifts), op.geom, np.zeros(op.obj_shape, np.float32)
        )
        shifted = shift_probes(probe, op.shifts)
        num = np.zeros(op.obj_shape, np.complex64)
        ill2 = np.zeros(op.obj_shape, np.float32)
        kernels.backproject_object(w, shifted, op.geom, num, ill2)
        results.append((dev_ap, w_ap, dev_dm, psi, dev_ml, w_ml, d, ill, num, ill2))
    np.testing.assert_allclose(results[0][-1], results[0][7], rtol=1e-5)
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-4)


def test_subpixel_shift_accuracy():
    """A Fourier shift of a band-limited Gaussian matches the analytically shifted one."""
    n = 64
    y, x = np.mgrid[:n, :n].astype(float)

    def gauss(cy, cx):
        return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 3.0**2)).astype(np.complex64)

    shifted = fourier_shift(gauss(32, 32), 0.3, -0.45)
    np.testing.assert_allclose(shifted, gauss(32.3, 31.55), atol=2e-5)
    # Patch operator with sub-pixel positions = probe moved by the same fraction.
    op = PtychoOperator(np.array([[2.3, 3.55]]), (n, n), (n + 8, n + 8), subpixel=20)
    waves = op.exit_waves(np.ones((n + 8, n + 8), np.complex64), gauss(32, 32)[None])
    np.testing.assert_allclose(waves[0, 0], gauss(32.3, 32.55), atol=2e-5)


def test_quantize_positions():
    pos = np.array([[1.0, 2.5], [3.26, 4.0], [0.97, 5.5]])
    corners, bins, shifts = quantize_positions(pos, subpixel=4)
    np.testing.assert_array_equal(corners, [[1, 2], [3, 4], [1, 5]])
    np.testing.assert_allclose(shifts[bins], [[0, 0.5], [0.25, 0], [0, 0.5]])
