"""Known-answer tests of AP, DM and ML on small synthetic scans, and the engine options."""

import numpy as np
import pytest
from synthetic_data import make

from recon import kernels
from recon.algorithm_chain import DivergenceGuard, parse_algorithm, run_chain
from recon.algorithms import Engine
from recon.backend import gpu_available
from recon.engine_options import EngineOptions
from recon.metrics import phase_correlation
from recon.operators import fourier_shift
from recon.probe_modes import orthogonalize_modes


@pytest.fixture(scope="module")
def data():
    return make()


def _start_probe(s):
    """Initial probe: the true one, defocused a bit and 30 % too weak (not the answer)."""
    return (0.7 * fourier_shift(s.probe, 0.7, -0.4)).astype(np.complex64)[None]


def _corr(engine, s, fraction=0.3):
    ill = engine.illumination()
    return phase_correlation(engine.obj, s.obj, ill > fraction * ill.max())


def test_parse_algorithm():
    assert parse_algorithm("AP**150,ML**50") == [("AP", 150), ("ML", 50)]
    assert parse_algorithm("DM**100, AP**50") == [("DM", 100), ("AP", 50)]
    assert parse_algorithm("ap") == [("AP", 1)]
    for bad in ("", "XX**3", "AP**0", "AP**-1", "AP***2", "AP**2,,ML*"):
        with pytest.raises(ValueError):
            parse_algorithm(bad)


def test_ap_recovers_phase_and_deviance_decreases(data):
    e = Engine(data.intensities, data.positions, _start_probe(data), data.obj.shape)
    run_chain(e, parse_algorithm("AP**60"))
    dev = np.array(e.deviance)
    assert dev[-1] < 0.01 * dev[0]
    assert dev[-1] < 1.3  # Poisson noise floor is ~1
    assert np.all(np.diff(dev[5:]) < 0.05 * dev[5:-1])  # (nearly) monotonic after start
    assert _corr(e, data) >= 0.95


def test_ap_noise_free_converges_to_zero_deviance():
    s = make(poisson=False, n_side=6)
    opts = EngineOptions(subpixel=16)  # the simulation's sub-pixel grid: an exact model
    e = Engine(s.intensities, s.positions, s.probe[None], s.obj.shape, options=opts)
    run_chain(e, parse_algorithm("AP**80"))
    assert e.deviance[-1] < 0.02 * e.deviance[5]
    assert _corr(e, s) >= 0.98


def test_dm_recovers_phase(data):
    e = Engine(data.intensities, data.positions, _start_probe(data), data.obj.shape)
    run_chain(e, parse_algorithm("DM**40,AP**10"))
    assert e.algorithms[:3] == ["DM", "DM", "DM"]
    assert _corr(e, data) >= 0.9


def test_ml_after_ap_improves_likelihood(data):
    e = Engine(data.intensities, data.positions, _start_probe(data), data.obj.shape)
    run_chain(e, parse_algorithm("AP**20,ML**30"))
    ml = np.array(e.deviance[20:])
    assert e.algorithms[-1] == "ML"
    assert ml[-1] <= ml[0]
    assert _corr(e, data) >= 0.95


def test_ml_alone_converges(data):
    opts = EngineOptions(ml_smoothing=0.0)
    e = Engine(data.intensities, data.positions, _start_probe(data), data.obj.shape, options=opts)
    run_chain(e, parse_algorithm("ML**60"))
    dev = np.array(e.deviance)
    assert dev[-1] < 0.02 * dev[0]
    assert np.all(np.diff(dev) <= 1e-3 * dev[:-1] + 1e-6) or dev[-1] == dev.min()
    assert _corr(e, data) >= 0.9


def test_divergence_guard_logic():
    g = DivergenceGuard(factor=3, patience=3)
    assert not any(g.update(v) for v in [100, 10, 5, 4, 13, 14])
    assert g.update(15)  # third value in a row above 3 x best (4)
    assert DivergenceGuard().update(float("nan"))


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_dm_guard_falls_back_to_ap(data):
    bad = data.intensities.copy()
    bad[3, 5, 5] = np.inf  # pathological data: the DM iterate blows up to NaN
    e = Engine(bad, data.positions, _start_probe(data), data.obj.shape)
    msgs = run_chain(e, parse_algorithm("DM**10"))
    assert len(msgs) == 1 and "DM diverged" in msgs[0] and "falling back to AP" in msgs[0]
    first_ap = e.algorithms.index("AP")
    assert first_ap >= 1 and set(e.algorithms[:first_ap]) == {"DM"}
    assert set(e.algorithms[first_ap:]) == {"AP"}
    assert e.messages == msgs


def test_probe_modes_orthogonal_after_update(data):
    rng = np.random.default_rng(3)
    probe = np.concatenate(
        [_start_probe(data), 0.2 * _start_probe(data) * rng.uniform(size=(1, 64, 64))]
    )
    probe = np.concatenate([probe, probe[1:] * np.exp(0.3j)]).astype(np.complex64)
    e = Engine(data.intensities, data.positions, probe, data.obj.shape)
    run_chain(e, parse_algorithm("AP**8"))
    p = e.probe.reshape(3, -1).astype(np.complex128)
    gram = p.conj() @ p.T
    power = np.real(np.diag(gram))
    off = np.abs(gram - np.diag(np.diag(gram)))
    assert off.max() < 1e-3 * power.max()
    assert np.all(np.diff(power) <= 0)  # strongest first
    # total intensity is unchanged by the orthogonalisation
    q = orthogonalize_modes(probe)
    np.testing.assert_allclose(
        (np.abs(q) ** 2).sum(0), (np.abs(probe) ** 2).sum(0), rtol=1e-3, atol=1e-3
    )


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
    e = Engine(bad, data.positions, _start_probe(data), data.obj.shape, mask=mask)
    run_chain(e, parse_algorithm("AP**40"))
    assert e.deviance[-1] < 1.5
    assert _corr(e, data) >= 0.95


def test_position_refinement_reduces_position_errors():
    s = make(n_side=7, poisson=False, jitter=0.0)
    rng = np.random.default_rng(5)
    wrong = s.positions + rng.uniform(-1.5, 1.5, s.positions.shape)
    opts = EngineOptions(refine_positions=True, position_start=10, position_every=2)
    e = Engine(s.intensities, wrong, s.probe[None], s.obj.shape, options=opts)
    run_chain(e, parse_algorithm("AP**80"))

    def err(p):
        d = p - s.positions
        return np.sqrt(((d - d.mean(0)) ** 2).sum(1).mean())

    assert err(e.corners_px) < 0.5 * err(wrong)


def test_background_and_scale_refinement_run(data):
    inten = data.intensities * np.float32(1.0)
    inten += np.random.default_rng(1).poisson(2.0, inten.shape).astype(np.float32)
    opts = EngineOptions(update_background=True, refine_scale=True)
    e = Engine(inten, data.positions, _start_probe(data), data.obj.shape, options=opts)
    run_chain(e, parse_algorithm("AP**40"))
    assert 1.0 < float(np.median(e.bg)) < 3.0
    assert abs(float(e.scale.mean()) - 1) < 1e-5
    assert _corr(e, data) >= 0.9


def test_numba_and_generic_engines_agree(data, monkeypatch):
    if not kernels._HAS_NUMBA:
        pytest.skip("numba not installed")
    runs = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        e = Engine(data.intensities, data.positions, _start_probe(data), data.obj.shape)
        run_chain(e, parse_algorithm("AP**3,DM**2,ML**2"))
        runs.append((np.array(e.deviance), e.obj))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=2e-3)
    np.testing.assert_allclose(runs[0][1], runs[1][1], atol=1e-2)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU with CuPy")
def test_numpy_and_cupy_agree(data):
    import cupy

    out = []
    for xp in (np, cupy):
        e = Engine(
            xp.asarray(data.intensities),
            xp.asarray(data.positions),
            xp.asarray(_start_probe(data)),
            data.obj.shape,
        )
        run_chain(e, parse_algorithm("AP**5,DM**3,ML**3"))
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
s = make(n_side=3)
e = Engine(s.intensities, s.positions, s.probe[None], s.obj.shape)
run_chain(e, parse_algorithm("AP**1,DM**1,ML**1"))
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
