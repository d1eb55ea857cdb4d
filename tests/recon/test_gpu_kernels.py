"""The fused CUDA kernels of the projections agree with the generic code (GPU only), and the
subset deviance they are paired with agrees with the full one (everywhere)."""

import numpy as np
import pytest

from recon import kernels
from recon.backend import gpu_available


def _stack(seed=0, m=9, k=2, n=16):
    rng = np.random.default_rng(seed)
    wave = (rng.standard_normal((m, k, n, n)) + 1j * rng.standard_normal((m, k, n, n))).astype(
        np.complex64
    )
    inten = rng.poisson(3.0, (m, n, n)).astype(np.float32)
    good = rng.uniform(size=(n, n)) > 0.1
    bg = rng.uniform(0, 0.2, (n, n)).astype(np.float32)
    scale = rng.uniform(0.8, 1.2, m).astype(np.float32)
    return wave, inten, good, bg, scale


@pytest.mark.parametrize(("every", "j0"), [(1, 0), (3, 0), (3, 2), (20, 5)])
def test_subset_deviance_is_the_deviance_of_the_selected_frames(every, j0):
    wave, inten, good, bg, scale = _stack()
    _, full = kernels._model_and_deviance(wave, inten, good, bg, scale, every, j0)
    part = kernels._subset_deviance(wave, inten, good, bg, scale, every, j0)
    assert part == pytest.approx(full, rel=1e-5, abs=1e-6)
    assert (part > 0) == any((j + j0) % every == 0 for j in range(len(wave)))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
@pytest.mark.parametrize(
    "coefs", [None, (0.0, 0.0, 0.0, 1.0), (1.0, 1.0, -1.0, 1.0), (1.0, 0.75, -0.5, 0.75)]
)
def test_fused_gpu_projections_match_the_generic_code(coefs, monkeypatch):
    import cupy as cp

    from recon import cupy_kernels

    assert cupy_kernels.available()
    wave, inten, good, bg, scale = (cp.asarray(a) for a in _stack(1))
    psi = None if coefs is None else cp.asarray(_stack(2)[0])
    out = {}
    for fused in (True, False):
        monkeypatch.setattr(kernels, "_USE_FUSED_GPU", fused)
        w = wave.copy()
        q = None if psi is None else psi.copy()
        args = {} if coefs is None else {"coefs": coefs}
        dev = kernels.fourier_project(w, inten, good, bg, scale, q, None, 2, 1, **args)
        out[fused] = (cp.asnumpy(w), dev)
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-5, atol=1e-6)
    assert out[True][1] == pytest.approx(out[False][1], rel=1e-5)
