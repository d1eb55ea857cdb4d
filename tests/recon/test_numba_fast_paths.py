"""The numba fast paths against the generic code: bin-ordered probe back-projection, the
one-pass single-mode modulus projection with its deviance, and the vectorised logarithm."""

import numpy as np
import pytest

from recon import kernels, numba_backprojection, numba_kernels
from recon.deviance import poisson_deviance
from recon.operators import PtychoOperator, shift_probes

pytestmark = pytest.mark.skipif(not numba_kernels.AVAILABLE, reason="numba not installed")


def _c(rng, *shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("subpixel", [1, 2, 8])
@pytest.mark.parametrize("n_modes", [1, 2])
def test_probe_backprojection_by_bin_matches_generic_code(monkeypatch, subpixel, n_modes):
    """One bin (split in row bands), a few and many bins: the same sums as the generic code."""
    rng = np.random.default_rng(subpixel + 10 * n_modes)
    n, shape = 16, (48, 52)
    pos = rng.uniform(0, [shape[0] - n - 1, shape[1] - n - 1], (40, 2))
    op = PtychoOperator(pos, (n, n), shape, subpixel=subpixel)
    n_bins = op.shifts.shape[0]
    if subpixel == 1:
        assert n_bins == 1 and numba_backprojection.probe_bands(n_bins, n) > 1
    obj = _c(rng, *shape)
    wave = _c(rng, op.n_frames, n_modes, n, n)
    out = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        num = np.full((n_bins, n_modes, n, n), 1 + 1j, np.complex64)  # adds to what is there
        den = np.ones((n_bins, n, n), np.float32)
        kernels.backproject_probe(wave, obj, op.geom, num, den)
        out.append((num, den))
    for a, b in zip(*out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_bin_order_lists_every_frame_once_by_bin():
    bins = np.array([2, 0, 2, 1, 0, 2], np.int64)
    geom = kernels.PatchGeometry(np.zeros((6, 2), np.int64), bins, (4, 4), (8, 8))
    order, starts = geom.bin_order(4)
    assert starts.tolist() == [0, 2, 3, 6, 6]
    assert order.tolist() == [1, 4, 3, 0, 2, 5]


def _frames(rng, m, k, n):
    wave = _c(rng, m, k, n, n) * np.float32(3)
    bg = rng.uniform(0, 0.5, (n, n)).astype(np.float32)
    scale = rng.uniform(0.8, 1.2, m).astype(np.float32)
    model = scale[:, None, None] * (np.abs(wave) ** 2).sum(axis=1) + bg
    inten = rng.poisson(model).astype(np.float32)
    good = rng.uniform(size=(n, n)) > 0.1
    return wave, inten, good, bg, scale, model


@pytest.mark.parametrize("n_modes", [1, 3])
def test_modulus_projection_and_its_deviance_match_generic_code(monkeypatch, n_modes):
    """AP's projection (one-pass loop for one mode) and the deviance summed in its pass."""
    rng = np.random.default_rng(3)
    wave, inten, good, bg, scale, model = _frames(rng, 9, n_modes, 16)
    every, j0 = 4, 3  # frames 1 and 5 of this chunk
    out = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        w = wave.copy()
        dev = kernels.fourier_project(w, inten, good, bg, scale, deviance_every=every, j0=j0)
        out.append((w, dev))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-5, atol=1e-5)
    rows = (np.arange(9) + j0) % every == 0
    expected = poisson_deviance(inten[rows], model[rows], ~good, normalise=False)
    assert out[0][1] == pytest.approx(expected, rel=1e-5)
    assert out[1][1] == pytest.approx(expected, rel=1e-5)


def test_family_update_sums_the_deviance_of_the_model_waves():
    """DM's pass returns the deviance of ``wave`` (the model), not of the reflected waves."""
    rng = np.random.default_rng(4)
    wave, inten, good, bg, scale, model = _frames(rng, 6, 2, 8)
    psi = wave * np.float32(0.7)
    dev = kernels.fourier_project(wave.copy(), inten, good, bg, scale, psi=psi.copy())
    assert dev == pytest.approx(poisson_deviance(inten, model, ~good, normalise=False), rel=1e-5)


def test_vectorised_logarithm_is_within_two_ulp():
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            np.exp(rng.uniform(-80, 80, 20000)),
            rng.uniform(0.5, 2.0, 20000),
            [1.0, 2.0, 0.5, 0.70710677, 0.70710683, 1e-30, 3e38, 1.2e-38],
        ]
    ).astype(np.float32)
    r = x.copy()
    numba_kernels.log_into(r, np.empty(r.size, np.int32))
    exact = np.log(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(r - exact) <= 2 * ulp + 1e-12).all()


def test_projection_kernels_use_the_shifted_probes_of_the_bins(monkeypatch):
    """Object back-projection with the illumination in its pass, both paths."""
    rng = np.random.default_rng(6)
    n, shape = 16, (40, 40)
    pos = rng.uniform(0, [shape[0] - n - 1, shape[1] - n - 1], (20, 2))
    op = PtychoOperator(pos, (n, n), shape, subpixel=4)
    probes = shift_probes(_c(rng, 2, n, n), op.shifts)
    wave = _c(rng, op.n_frames, 2, n, n)
    out = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        num = np.zeros(shape, np.complex64)
        ill = np.zeros(shape, np.float32)
        kernels.backproject_object(wave, probes, op.geom, num, ill)
        out.append((num, ill))
    for a, b in zip(*out, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, str(numba_kernels.SPIN_COUNT)),
        ({"GOMP_SPINCOUNT": "5"}, "5"),
        ({"OMP_WAIT_POLICY": "active"}, "unset"),
    ],
)
def test_idle_openmp_workers_spin_briefly_unless_the_user_chose(given, expected):
    """The spin count reaches libgomp: set before numba starts its threads, user's choice kept."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(given, PYTHONPATH=str(Path(__file__).parents[2]))
    code = "import os, recon.kernels; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == expected


@pytest.mark.skipif(not kernels.nbf.AVAILABLE, reason="rocket-fft not installed")
@pytest.mark.parametrize(("name", "n_modes"), [("AP", 1), ("AP", 2), ("DM", 1), ("RAAR", 2)])
def test_fourier_pass_frame_by_frame_matches_the_stack_steps(monkeypatch, name, n_modes):
    """Exit waves, FFT, projection and inverse FFT of each frame in cache (numba +
    rocket-fft) give the waves, the iterate and the deviance of the four steps done one after
    the other over the stack, on frames with sub-pixel bins, a mask, background and scales."""
    from recon.projection_family import coefficients

    rng = np.random.default_rng(7 + n_modes)
    n, shape, m = 16, (40, 44), 23
    pos = rng.uniform(0, [shape[0] - n - 1, shape[1] - n - 1], (m, 2))
    op = PtychoOperator(pos, (n, n), shape, subpixel=4)
    obj = _c(rng, *shape)
    probes = shift_probes(_c(rng, n_modes, n, n), op.shifts)
    _, inten, good, bg, scale, _ = _frames(rng, m, n_modes, n)
    coefs = coefficients(name)
    psi0 = _c(rng, m, n_modes, n, n) if name != "AP" else None
    out = []
    for fused in (True, False):
        monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", fused)
        w = np.empty((m, n_modes, n, n), np.complex64)
        psi = None if psi0 is None else psi0.copy()
        dev = kernels.fourier_pass(
            obj, probes, op.geom, w, inten, good, bg, scale, psi, None, 3, 1, coefs
        )
        out.append((w, psi, dev))
    (w1, psi1, dev1), (w2, psi2, dev2) = out
    assert np.abs(w2).max() > 0 and dev2 > 0
    np.testing.assert_allclose(w1, w2, rtol=1e-4, atol=1e-5 * np.abs(w2).max())
    if psi0 is not None:
        assert not np.allclose(psi2, psi0)  # the iterate was updated
        np.testing.assert_allclose(psi1, psi2, rtol=1e-4, atol=1e-5 * np.abs(psi2).max())
    assert dev1 == pytest.approx(dev2, rel=1e-5)


def _line_case(rng, n_modes, n=16, shape=(40, 44), m=23):
    pos = rng.uniform(0, [shape[0] - n - 1, shape[1] - n - 1], (m, 2))
    op = PtychoOperator(pos, (n, n), shape, subpixel=4)
    obj, d_o = _c(rng, *shape), np.float32(0.1) * _c(rng, *shape)
    probes = shift_probes(_c(rng, n_modes, n, n), op.shifts)
    d_probes = shift_probes(np.float32(0.1) * _c(rng, n_modes, n, n), op.shifts)
    return op, obj, d_o, probes, d_probes


@pytest.mark.skipif(not kernels.nbf.AVAILABLE, reason="rocket-fft not installed")
@pytest.mark.parametrize(
    ("noise_model", "n_modes"), [("poisson", 1), ("poisson", 2), ("gaussian", 2)]
)
@pytest.mark.parametrize("keep_f0", [True, False])
def test_ml_gradient_pass_in_cache_matches_the_stack_steps(
    monkeypatch, noise_model, n_modes, keep_f0
):
    """Exit waves, FFT, the gradient's Fourier factor (with the deviance of every third
    frame) and the inverse FFT per frame in cache give the stack steps' Fourier waves,
    gradient waves and deviance: sub-pixel bins, a mask, background and scales; the
    gradient in its own buffer (one chunk) or over the Fourier waves (several chunks)."""
    from recon.ml_kernels import ml_gradient_pass

    rng = np.random.default_rng(11 + n_modes)
    op, obj, _, probes, _ = _line_case(rng, n_modes)
    m, n = op.n_frames, 16
    _, inten, good, bg, scale, _ = _frames(rng, m, n_modes, n)
    out = []
    for fused in (True, False):
        monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", fused)
        f0 = np.empty((m, n_modes, n, n), np.complex64)
        grad = np.empty_like(f0) if keep_f0 else None
        dev, f, g = ml_gradient_pass(
            obj, probes, op.geom, f0, grad, inten, good, bg, scale, noise_model, 3, 1
        )
        out.append((None if grad is None else f.copy(), g.copy(), dev))
    (f1, g1, dev1), (f2, g2, dev2) = out
    assert np.abs(g2).max() > 0 and dev2 > 0
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5 * np.abs(g2).max())
    if keep_f0:
        np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5 * np.abs(f2).max())
    assert dev1 == pytest.approx(dev2, rel=1e-5)


@pytest.mark.skipif(not kernels.nbf.AVAILABLE, reason="rocket-fft not installed")
@pytest.mark.parametrize("with_probe", [True, False])
@pytest.mark.parametrize("given_f0", [True, False])
def test_ml_line_coefficients_in_cache_match_the_stack_ffts(with_probe, given_f0):
    """The quartic's coefficients along (P + g dP)(O + g dO), per frame in cache, are those
    of the stack's waves F(P O), F(P dO + dP O), F(dP dO) (two modes, sub-pixel bins)."""
    from recon.backend import fft2c
    from recon.ml_kernels import ml_coefficients_pass, ml_line_coefficients

    rng = np.random.default_rng(5 + with_probe)
    op, obj, d_o, probes, d_probes = _line_case(rng, 2)
    geom = op.geom
    shape = (op.n_frames, 2, 16, 16)
    f0 = fft2c(kernels.exit_waves(obj, probes, geom, np.empty(shape, np.complex64)))
    w1 = kernels.exit_waves(d_o, probes, geom, np.empty(shape, np.complex64))
    f2 = None
    if with_probe:
        kernels.exit_waves(obj, d_probes, geom, w1, accumulate=True)
        f2 = fft2c(kernels.exit_waves(d_o, d_probes, geom, np.empty(shape, np.complex64)))
    want = ml_line_coefficients(f0, fft2c(w1), f2)
    got = ml_coefficients_pass(
        obj, d_o, probes, d_probes if with_probe else None, geom, f0 if given_f0 else None
    )
    assert got.shape == want.shape == ((5 if with_probe else 3), *shape[:1], 16, 16)
    for t in range(len(want)):  # each power of g to its own size (sums of terms that cancel)
        top = float(np.abs(want[t]).max())
        assert top > 0
        np.testing.assert_allclose(got[t], want[t], rtol=1e-4, atol=1e-5 * top)
