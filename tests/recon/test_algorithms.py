"""Known-answer tests of the projection family (AP, DM, RAAR), the engine's refinements
(positions, per-frame scale, background, probe modes) and the DM divergence guard.

No test starts from the truth: the engine gets the ideal zone plate probe at a defocus 15 %
off (:data:`MISMATCH`) while the true probe is also astigmatic and comatic, the data carry
Poisson noise, and where a test is about positions or scales the given positions carry errors
of 10-30 nm (0.4-1.2 pixels) and the frames have random true scales. ML- and PIE-specific
behaviour is tested in their own files.
"""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from synthetic_data import make

from recon import kernels
from recon.algorithm_chain import DivergenceGuard, parse_algorithm, run_chain
from recon.algorithms import Engine
from recon.backend import gpu_available
from recon.engine_options import EngineOptions
from recon.metrics import phase_correlation
from recon.probe_modes import orthogonalize_modes

#: The probe model's defocus is 15 % off; the truth has astigmatism and coma besides.
MISMATCH = {"model_defocus_error": 0.15, "astigmatism": 1.0, "coma": 0.5}


@pytest.fixture(scope="module")
def data():
    return make(**MISMATCH)


def _corr(engine, s, fraction=0.3):
    ill = engine.illumination()
    return phase_correlation(engine.obj, s.obj, ill > fraction * ill.max())


def _engine(s, probe=None, **options):
    return Engine(
        s.intensities,
        s.given,
        s.model if probe is None else probe,
        s.obj.shape,
        options=EngineOptions(**options),
    )


def _position_error(corners, s):
    """rms distance (pixels) of corners from the truth, common shift removed."""
    d = np.asarray(corners) - s.positions
    return float(np.sqrt(((d - d.mean(0)) ** 2).sum(1).mean()))


def _gram(probe):
    flat = np.asarray(probe).reshape(probe.shape[0], -1).astype(np.complex128)
    return flat.conj() @ flat.T


def _with_weak_modes(model, modes, power=0.05, seed=1):
    """(modes, n, n) start: the model plus smooth random modes of ``power`` of its power."""
    rng = np.random.default_rng(seed)
    out = [model[0]]
    total = float(np.sum(np.abs(model[0]) ** 2))
    for _ in range(1, modes):
        field = gaussian_filter(rng.standard_normal(model.shape[1:]), 4) + 1j * gaussian_filter(
            rng.standard_normal(model.shape[1:]), 4
        )
        m = model[0] * field
        out.append(m * np.sqrt(power * total / np.sum(np.abs(m) ** 2)))
    return np.array(out, np.complex64)


def test_parse_algorithm():
    assert parse_algorithm("AP**150,ML**50") == [("AP", 150), ("ML", 50)]
    assert parse_algorithm("DM**100, AP**50") == [("DM", 100), ("AP", 50)]
    assert parse_algorithm("raar**7") == [("RAAR", 7)]
    assert parse_algorithm("ap") == [("AP", 1)]
    for bad in ("", "XX**3", "AP**0", "AP**-1", "AP***2", "AP**2,,ML*"):
        with pytest.raises(ValueError):
            parse_algorithm(bad)


def test_the_probe_model_is_not_the_truth(data):
    """Guards the other tests against an inverse crime."""
    a, b = data.model[0], data.probe
    overlap = abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))
    assert overlap < 0.8  # 0.73
    assert np.all(data.given == data.positions) and np.all(data.scales == 1)


def test_ap_recovers_phase_and_deviance_decreases(data):
    e = _engine(data)
    run_chain(e, parse_algorithm("AP**60"))
    dev = np.array(e.deviance)
    assert dev[-1] < 0.01 * dev[0]
    assert dev[-1] < 1.5  # Poisson noise floor is ~1 (1.25)
    assert np.all(np.diff(dev[5:]) < 0.05 * dev[5:-1])  # (nearly) monotonic after start
    assert _corr(e, data) >= 0.97  # 0.9986


def test_ap_noise_free_converges_to_zero_deviance():
    s = make(poisson=False, n_side=6, **MISMATCH)
    e = _engine(s, subpixel=16)  # the simulation's sub-pixel grid
    run_chain(e, parse_algorithm("AP**80"))
    assert e.deviance[-1] < 0.02 * e.deviance[5]  # 0.0068
    assert _corr(e, s) >= 0.98  # 0.998


def test_ap_refines_wrong_positions():
    """Positions off by 10-30 nm (0.4-1.2 px): AP with position refinement gets the phase
    and brings the positions much closer to the truth."""
    s = make(position_error_m=(10e-9, 30e-9), **MISMATCH)
    before = _position_error(s.given, s)
    assert 0.4 < before < 1.2
    e = _engine(s, refine_positions=True, position_start=30, position_every=2)
    run_chain(e, parse_algorithm("AP**120"))
    assert _position_error(e.corners_px, s) < 0.5 * before  # 0.79 -> 0.27 px
    assert _corr(e, s) >= 0.97  # 0.995


def test_scale_refinement_recovers_random_frame_scales():
    """True per-frame scales uniform in 0.7..1.3: recovered (up to their mean) with
    ``refine_scale``; without it the model cannot fit the data."""
    s = make(scale_range=(0.7, 1.3), **MISMATCH)
    runs = {}
    for on in (True, False):
        e = _engine(s, refine_scale=on)
        run_chain(e, parse_algorithm("AP**60"))
        runs[on] = e
    scale = np.asarray(runs[True].scale, np.float64)
    assert np.corrcoef(scale, s.scales)[0, 1] >= 0.99  # 0.998
    rel = (scale / scale.mean()) / (s.scales / s.scales.mean())
    assert np.abs(rel - 1).max() < 0.05  # 0.017
    assert runs[True].deviance[-1] < 1.6  # 1.1
    assert runs[False].deviance[-1] > 3 * runs[True].deviance[-1]  # 8.7
    assert np.all(np.asarray(runs[False].scale) == 1)
    assert _corr(runs[True], s) >= 0.97


def test_background_refinement_finds_the_background(data):
    rng = np.random.default_rng(1)
    inten = data.intensities + rng.poisson(2.0, data.intensities.shape).astype(np.float32)
    runs = {}
    for on in (True, False):
        opts = EngineOptions(update_background=on)
        e = Engine(inten, data.given, data.model, data.obj.shape, options=opts)
        run_chain(e, parse_algorithm("AP**60"))
        runs[on] = e
    bg = np.fft.fftshift(np.asarray(runs[True].bg))
    y, x = np.indices(bg.shape) - 32
    outer = np.hypot(y, x) >= 24  # where the object scatters little
    assert abs(float(bg[outer].mean()) - 2.0) < 0.3  # 1.96
    assert runs[True].deviance[-1] < 0.8 * runs[False].deviance[-1]  # 1.48 vs 2.28
    assert _corr(runs[True], data) >= 0.97


def test_dm_converges_without_fallback(data):
    e = _engine(data)
    msgs = run_chain(e, parse_algorithm("DM**50"))
    dev = np.array(e.deviance)
    assert msgs == [] and e.messages == []
    assert set(e.algorithms) == {"DM"}
    assert dev[-1] < 0.005 * dev[0]
    assert dev[-1] < 5.0  # DM wanders a little on noisy data (best ~2)
    assert _corr(e, data) >= 0.97


def test_raar_recovers_phase(data):
    e = _engine(data, raar_beta=0.75)
    msgs = run_chain(e, parse_algorithm("RAAR**60"))
    assert msgs == [] and set(e.algorithms) == {"RAAR"}
    assert e.deviance[-1] < 1.5  # 1.17
    assert _corr(e, data) >= 0.98  # 0.9999


def test_raar_with_beta_one_is_dm_and_differs_otherwise(data):
    runs = {}
    for name, beta in (("DM", 0.75), ("RAAR", 1.0), ("RAAR", 0.75)):
        e = _engine(data, raar_beta=beta)
        run_chain(e, parse_algorithm(f"{name}**8"))
        runs[name, beta] = e
    dm, r1, r75 = runs["DM", 0.75], runs["RAAR", 1.0], runs["RAAR", 0.75]
    np.testing.assert_array_equal(dm.obj, r1.obj)
    np.testing.assert_array_equal(dm.probe, r1.probe)
    assert dm.deviance == r1.deviance
    assert np.abs(r75.obj - dm.obj).max() > 0.05
    assert r75.deviance[3:] != dm.deviance[3:]


def test_divergence_guard_logic():
    g = DivergenceGuard(factor=3, patience=3)
    assert not any(g.update(v) for v in [100, 10, 5, 4, 13, 14])
    assert g.update(15)  # third value in a row above 3 x best (4)
    assert DivergenceGuard().update(float("nan"))


def test_dm_guard_falls_back_to_ap():
    """At 1e4 photons per frame DM wanders off (its deviance grows past 3 x its best for 5
    iterations); the guard restores its best state and AP goes on from there."""
    s = make(photons=1e4, **MISMATCH)
    e = _engine(s)
    msgs = run_chain(e, parse_algorithm("DM**40"))
    assert len(msgs) == 1 and "DM diverged" in msgs[0] and "falling back to AP" in msgs[0]
    assert e.messages == msgs
    first_ap = e.algorithms.index("AP")  # 21
    assert first_ap >= 6 and set(e.algorithms[:first_ap]) == {"DM"}
    assert set(e.algorithms[first_ap:]) == {"AP"}
    dev = np.array(e.deviance)
    best = dev[:first_ap].min()  # 1.40
    assert np.all(dev[first_ap - 5 : first_ap] > 3 * best)  # it did diverge
    assert dev[first_ap] == pytest.approx(best, rel=1e-4)  # the best state was restored
    assert dev[-1] < best  # and AP improved on it (0.52)
    assert _corr(e, s) >= 0.9  # 0.97


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_dm_guard_stops_dm_on_non_finite_deviance(data):
    bad = data.intensities.copy()
    bad[3, 5, 5] = np.inf  # pathological data: the DM iterate blows up to NaN
    e = Engine(bad, data.given, data.model, data.obj.shape)
    msgs = run_chain(e, parse_algorithm("DM**10"))
    assert len(msgs) == 1 and "DM diverged" in msgs[0] and "deviance nan" in msgs[0]
    assert e.algorithms[:2] == ["DM", "DM"] and set(e.algorithms[2:]) == {"AP"}


def test_orthogonalize_modes_of_non_orthogonal_modes():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((3, 16, 16)) + 1j * rng.standard_normal((3, 16, 16))
    mix = np.array([[0.3, 0, 0], [0.8, 0.3, 0], [0.5j, 0.4, 1.0]])  # weak first, correlated
    probe = np.einsum("kl,lij->kij", mix, base).astype(np.complex64)
    g_in = _gram(probe)
    assert np.abs(g_in[0, 1]) > 0.3 * np.sqrt(g_in[0, 0].real * g_in[1, 1].real)
    q = orthogonalize_modes(probe)
    assert q.shape == probe.shape and q.dtype == np.complex64
    # the incoherent sum is the same pixel by pixel
    np.testing.assert_allclose(
        (np.abs(q) ** 2).sum(0), (np.abs(probe) ** 2).sum(0), rtol=1e-4, atol=1e-5
    )
    g = _gram(q)
    power = np.real(np.diag(g))
    assert np.abs(g - np.diag(np.diag(g))).max() < 1e-5 * power.max()
    assert np.all(np.diff(power) < 0)  # strongest first
    # the powers are the eigenvalues of the input's Gram matrix, and the span is the same
    np.testing.assert_allclose(power, np.sort(np.linalg.eigvalsh(g_in))[::-1], rtol=1e-4)
    flat_in, flat_q = probe.reshape(3, -1).T, q.reshape(3, -1).T
    coef = np.linalg.lstsq(flat_in, flat_q, rcond=None)[0]
    assert np.abs(flat_in @ coef - flat_q).max() < 1e-4 * np.abs(flat_q).max()
    one = probe[:1]
    np.testing.assert_array_equal(orthogonalize_modes(one), one)


def test_two_probe_modes_fit_partially_coherent_data():
    """Data of a two-mode (partially coherent) true probe: two modes fit much better than
    one, and come out orthogonal, strongest first."""
    s = make(second_mode=0.3, mode_shift=2.0, **MISMATCH)
    runs = {}
    for k in (1, 2):
        e = _engine(s, _with_weak_modes(s.model, k))
        run_chain(e, parse_algorithm("AP**60"))
        runs[k] = e
    assert runs[2].deviance[-1] < 0.85 * runs[1].deviance[-1]  # 2.43 vs 3.32
    g = _gram(runs[2].probe)
    power = np.real(np.diag(g))
    assert np.abs(g[0, 1]) < 1e-3 * power[0]
    assert power[0] > power[1] > 0.03 * power.sum()  # 0.06 (truth: 0.29)
    assert _corr(runs[2], s) >= 0.97


def test_masked_pixels_keep_model_amplitude_and_leave_deviance():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal((2, 1, 8, 8)) + 1j * rng.standard_normal((2, 1, 8, 8))).astype(
        np.complex64
    )
    inten = rng.uniform(1, 5, (2, 8, 8)).astype(np.float32)
    good = np.ones((8, 8), bool)
    good[2, 3] = False
    bg, scale = np.zeros((8, 8), np.float32), np.ones(2, np.float32)
    before = wave.copy()
    dev_masked = kernels.fourier_project(wave, inten, good, bg, scale)
    np.testing.assert_array_equal(wave[:, :, 2, 3], before[:, :, 2, 3])
    np.testing.assert_allclose(np.abs(wave[:, 0, 0, 0]) ** 2, inten[:, 0, 0], rtol=1e-5)
    inten2 = inten.copy()
    inten2[:, 2, 3] = 1e6  # garbage on the masked pixel changes nothing
    w2 = before.copy()
    assert kernels.fourier_project(w2, inten2, good, bg, scale) == pytest.approx(dev_masked)


def test_mask_protects_reconstruction_from_bad_pixels(data):
    bad = data.intensities.copy()
    mask = np.zeros((64, 64), bool)
    mask[[1, 5, 9, 40], [3, 7, 50, 2]] = True
    bad[:, mask] = 5e5  # hot pixels
    e = Engine(bad, data.given, data.model, data.obj.shape, mask=mask)
    run_chain(e, parse_algorithm("AP**40"))
    assert e.deviance[-1] < 4.0  # 2.6 (AP not yet converged)
    assert _corr(e, data) >= 0.97  # 0.993


# ML as a step of a chain; ML itself is tested in its own file.
def test_ml_after_ap_improves_likelihood(data):
    e = _engine(data)
    run_chain(e, parse_algorithm("AP**20,ML**30"))
    ml = np.array(e.deviance[20:])
    assert e.algorithms[-1] == "ML"
    assert ml[-1] <= ml[0]
    assert _corr(e, data) >= 0.95


def test_numba_and_generic_engines_agree(data, monkeypatch):
    """The projection family on both kernel sets, with the same stack FFTs (ML's own file
    compares ML)."""
    if not kernels._HAS_NUMBA:
        pytest.skip("numba not installed")
    monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", False)
    runs = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        e = _engine(data)
        run_chain(e, parse_algorithm("AP**3,DM**2,RAAR**2"))
        runs.append((np.array(e.deviance), e.obj))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=2e-3)
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-2)


def test_fourier_pass_in_cache_reconstructs_as_well_as_the_stack_steps(data, monkeypatch):
    """AP, DM and RAAR with their Fourier side frame by frame in cache (numba + rocket-fft)
    against the stack FFTs, from the mismatched probe model. The two FFT libraries round
    differently, and the modulus projection turns that into different phases where the
    model is near zero (the first deviances already differ by ~1e-3), so the runs are
    compared by what they reach, not value by value."""
    if not kernels.nbf.AVAILABLE:
        pytest.skip("numba or rocket-fft not installed")
    runs = []
    for fused in (True, False):
        monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", fused)
        e = _engine(data)
        run_chain(e, parse_algorithm("AP**20,DM**10,RAAR**10"))
        runs.append((np.array(e.deviance), _corr(e, data)))
    (dev_fused, corr_fused), (dev_stack, corr_stack) = runs
    assert dev_fused[-1] < 0.01 * dev_fused[0]  # it converged
    np.testing.assert_allclose(dev_fused[::5], dev_stack[::5], rtol=0.1)  # the same path
    assert dev_fused[-1] == pytest.approx(dev_stack[-1], rel=0.01)
    assert corr_fused >= 0.99 and corr_fused == pytest.approx(corr_stack, abs=0.005)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_numpy_and_cupy_agree(data):
    """The projection family on both array back-ends (ML's own file compares ML)."""
    import cupy

    out = []
    for xp in (np, cupy):
        e = Engine(
            xp.asarray(data.intensities),
            xp.asarray(data.given),
            xp.asarray(data.model),
            data.obj.shape,
        )
        run_chain(e, parse_algorithm("AP**5,DM**3,RAAR**3"))
        out.append((np.array(e.deviance), cupy.asnumpy(e.obj) if xp is cupy else e.obj))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=2e-3)
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-2)


_SHORT_RUN = """
import warnings
from numba.core.errors import NumbaPerformanceWarning
warnings.simplefilter("error", NumbaPerformanceWarning)
from synthetic_data import make
from recon.algorithm_chain import parse_algorithm, run_chain
from recon.algorithms import Engine
s = make(n_side=3, model_defocus_error=0.15)
e = Engine(s.intensities, s.given, s.model, s.obj.shape)
run_chain(e, parse_algorithm("AP**1,DM**1,RAAR**1,ML**1"))
"""


def test_numba_kernels_compile_without_performance_warnings(tmp_path):
    """Compiled afresh (empty numba cache), no kernel warns that it has no parallel loop."""
    if not kernels._HAS_NUMBA:
        pytest.skip("numba not installed")
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(here), str(here.parents[1])]),
    }
    run = subprocess.run(
        [sys.executable, "-c", _SHORT_RUN], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NumbaPerformanceWarning" not in run.stderr
