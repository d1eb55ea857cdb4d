"""The maximum-likelihood iteration: a line search that only accepts decreases, the noise
models, the clip and mode orthogonalisation, and convergence from a flat object on simulated
weak (BN, 192 eV) and strong (permalloy, 706 eV) data with a probe model 15 % out of focus."""

import math

import numpy as np
import pytest
from synthetic_data import make
from test_acceptance import _truth_on_recon_grid  # tests/recon is on sys.path

from recon import kernels, maximum_likelihood, ml_kernels
from recon.algorithm_chain import parse_algorithm, run_chain
from recon.algorithms import Engine
from recon.backend import fft2c
from recon.deviance import poisson_deviance
from recon.engine_options import EngineOptions
from recon.metrics import phase_correlation
from recon.ml_line_search import SearchLine, line_minimum
from recon.operators import fourier_shift
from recon.reconstruction import Reconstruction

BN = {"sample": "bn-bamboo", "energy_ev": 192, "spot_m": 1e-6, "overlap": 0.9, "area_m": 1e-6}
PERMALLOY = {"sample": "permalloy-rods", "energy_ev": 706, "spot_m": 0.07e-6, "overlap": 0.5}
ALL_FRAMES = 10**6  # deviance_frames: the recorded deviance covers every frame


@pytest.fixture(scope="module")
def data():
    return make(n_side=6)


def _engine(s, modes=1, **options):
    """Engine on ``s`` from a flat object and a probe that is not the answer."""
    probe = (0.7 * fourier_shift(s.probe, 0.7, -0.4)).astype(np.complex64)
    probe = np.stack([probe] + [0.3 * np.roll(probe, 5 * k, axis=1) for k in range(1, modes)])
    return Engine(s.intensities, s.positions, probe, s.obj.shape, options=EngineOptions(**options))


def _iterate(e, n):
    """Run ``n`` ML iterations; the objective (data + penalty) at each one's start."""
    objective = []
    for _ in range(n):
        e.iterate("ML")
        objective.append(e.ml_state["objective"])
    return np.array(objective)


def _corr(e, s):
    ill = e.illumination()
    return phase_correlation(e.obj, s.obj, ill > 0.3 * ill.max())


# ------------------------------------------------------------------------- line search
def test_line_minimum_never_accepts_an_increase():
    rng = np.random.default_rng(0)
    for _ in range(300):
        # rugged 1-D functions: a log barrier, a quartic and a ripple, with any first step
        a, b, c = rng.uniform(0.1, 10, 3)
        k = rng.uniform(0, 50)

        def f(g, a=a, b=b, c=c, k=k):
            m = 1 + a * g + b * g**2 - c * g**3 + g**4
            return m - 5 * math.log(m) + 0.1 * math.sin(k * g) if m > 0 else math.inf

        def evaluate(g, f=f):
            h = 1e-6 * max(g, 1e-3)
            return f(g), (f(g + h) - f(g - h)) / (2 * h), (f(g + h) - 2 * f(g) + f(g - h)) / h**2

        phi0, slope, _ = evaluate(0.0)
        if slope >= 0:
            continue
        g, v = line_minimum(evaluate, phi0, slope, 10 ** rng.uniform(-8, 4))
        assert g == 0 or (v == f(g) and v < phi0)
    # a slope that lies (the function only rises) and a first step into a pole
    assert line_minimum(lambda g: (g, 1.0, 0.0), 0.0, -1.0, 1.0) == (0.0, 0.0)
    g, v = line_minimum(lambda g: (-g, -1.0, 0.0) if g < 1e-3 else (math.nan,) * 3, 0, -1, 5)
    assert 0 < g < 1e-3 and v == -g
    assert line_minimum(lambda g: (-g, -1.0, 0.0), 0.0, 0.0, 1.0) == (0.0, 0.0)


def test_every_accepted_step_lowers_the_objective(data):
    e = _engine(data, deviance_frames=ALL_FRAMES, ml_smoothing=0.0)
    objective = _iterate(e, 25)
    dev = np.array(e.deviance)
    assert np.all(np.diff(objective) < 0)
    assert np.all(np.diff(dev) < 0)  # Poisson, no penalty, all frames: the same objective
    assert dev[-1] < 0.02 * dev[0]
    smooth = _engine(data)  # default smoothing penalty: the objective still falls every time
    assert np.all(np.diff(_iterate(smooth, 15)) < 0)


def test_recorded_deviance_is_the_models_at_the_start(data, monkeypatch):
    # The stack's FFTs, as the expected value below: from the flat object most pixels with
    # photons have a model near 0, where I ln(I / M) turns the two FFT libraries' rounding
    # into 3e-4 of the first deviance (the in-cache path is checked against the stack
    # steps in test_numba_fast_paths and below)
    monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", False)
    e = _engine(data, deviance_frames=ALL_FRAMES)
    for _ in range(3):
        mod = []
        for sl, geom in e.chunks:
            w = kernels.exit_waves(e.obj, e.shifted_probes(), geom, e.buffer(sl.stop - sl.start))
            mod.append((np.abs(fft2c(w)) ** 2).sum(axis=1))
        expected = poisson_deviance(e.inten, np.concatenate(mod), ~e.good)
        assert e.iterate("ML") == pytest.approx(expected, rel=1e-4)


def test_a_bad_direction_or_step_is_never_taken(data, monkeypatch):
    e = _engine(data)
    _iterate(e, 3)
    snap = e.snapshot()
    with monkeypatch.context() as m:  # ascent directions only: nothing to accept
        m.setattr(maximum_likelihood, "_direction", lambda z_o, z_p, st, beta: (z_o, z_p))
        e.iterate("ML")
    assert e.ml_state["step"] == 0
    np.testing.assert_array_equal(e.obj, snap[0])
    np.testing.assert_array_equal(e.probe, snap[1])
    newton = SearchLine.newton_step
    with monkeypatch.context() as m:  # first trials a million times too long
        m.setattr(SearchLine, "newton_step", lambda self: 1e6 * newton(self))
        objective = _iterate(e, 8)
    assert np.all(np.diff(objective) < 0)


def test_line_expansion_includes_the_cross_term(data):
    """The quartic model of the line equals the model of the waves at the trial step."""
    e = _engine(data)
    _iterate(e, 3)
    rng = np.random.default_rng(1)
    d_o = (0.05 * rng.standard_normal(e.obj_shape)).astype(np.complex64)
    d_p = (0.1 * e.probe * rng.standard_normal(e.probe.shape)).astype(np.complex64)
    line = SearchLine(e, e.shifted_probes(), d_o, d_p, 0.0)
    for g in (0.3, 1.0, 2.0):
        obj = (e.obj + np.float32(g) * d_o).astype(np.complex64)
        probes = e.shift_probe_modes(e.probe + np.float32(g) * d_p)
        total = 0.0
        for sl, geom in e.chunks:
            w = fft2c(kernels.exit_waves(obj, probes, geom, e.buffer(sl.stop - sl.start)))
            total += ml_kernels.ml_line_values(
                ml_kernels.ml_line_coefficients(w), 0.0, *e.frame_data(sl)
            )[0]
        value, slope, curv = line.evaluate(g)
        assert value == pytest.approx(total, rel=1e-4)
        h = 1e-3 * g
        v1, v2 = line.evaluate(g + h)[0], line.evaluate(g - h)[0]
        assert slope == pytest.approx((v1 - v2) / (2 * h), rel=2e-2, abs=1e-3 * abs(value))
        assert curv == pytest.approx((v1 - 2 * value + v2) / h**2, rel=0.2)


# ------------------------------------------------------------------------- options
def test_gaussian_model_converges(data):
    s = make()
    e = _engine(s, noise_model="gaussian")
    objective = _iterate(e, 40)
    assert np.all(np.diff(objective) < 0)  # the amplitude least squares falls every time
    assert e.deviance[-1] < 0.02 * e.deviance[0]  # the recorded (Poisson) deviance too
    assert _corr(e, s) >= 0.95


def test_unknown_noise_model_is_refused(data):
    """Refused when the options are made (before anything runs), and by the kernels."""
    with pytest.raises(ValueError, match="noise_model 'laplace'.*poisson.*gaussian"):
        _engine(data, noise_model="laplace")
    e = _engine(data)
    e.opts.noise_model = "laplace"  # set after the check
    with pytest.raises(ValueError, match="noise_model 'laplace'.*poisson.*gaussian"):
        e.iterate("ML")


def test_object_amplitude_is_clipped(data):
    e = _engine(data, max_object_amplitude=0.95)
    _iterate(e, 10)
    assert float(np.abs(e.obj).max()) <= 0.95 * (1 + 1e-6)
    free = _engine(data)
    _iterate(free, 10)
    assert float(np.abs(free.obj).max()) > 0.96  # the clip did something


def test_probe_modes_orthogonalised_every_few_iterations(data):
    def overlap(e):
        flat = e.probe.reshape(2, -1)
        gram = np.abs(flat.conj() @ flat.T)
        return gram[0, 1] / np.sqrt(gram[0, 0] * gram[1, 1])

    e = _engine(data, modes=2, ml_orthogonalize_every=4, probe_update_start=0)
    _iterate(e, 4)
    assert overlap(e) < 1e-5
    assert "d_o" not in e.ml_state  # the conjugate directions restart
    _iterate(e, 1)
    assert "d_o" in e.ml_state
    never = _engine(data, modes=2, ml_orthogonalize_every=0, probe_update_start=0)
    _iterate(never, 4)
    assert overlap(never) > 1e-2


def test_ml_copes_with_a_state_without_directions(data):
    s = make(n_side=6, jitter=1.5, seed=2)
    e = _engine(s, refine_positions=True, position_start=3, position_every=3)
    start = e.corners_px.copy()
    run_chain(e, parse_algorithm("ML**13"))  # positions refined (state reset) at 3, 6, 9, 12
    assert np.abs(e.corners_px - start).max() > 0.05
    e.ml_state = {}  # not even the smoothing weight
    e.iterate("ML")
    assert e.ml_state["mu"] > 0 and e.ml_state["step"] > 0
    assert e.deviance[-1] < 0.05 * e.deviance[0]


# ------------------------------------------------------------------------- code paths
def _random_waves(rng, m=3, k=2, n=8):
    def c():
        return (rng.standard_normal((m, k, n, n)) + 1j * rng.standard_normal((m, k, n, n))) * 2

    inten = rng.poisson(6.0, (m, n, n)).astype(np.float32)
    good = np.ones((n, n), bool)
    good[2, 5] = False
    bg = np.full((n, n), 0.2, np.float32)
    scale = rng.uniform(0.8, 1.2, m).astype(np.float32)
    return [c().astype(np.complex64) for _ in range(3)], (inten, good, bg, scale)


@pytest.mark.skipif(not kernels._HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("noise_model", ["poisson", "gaussian"])
def test_numba_and_generic_ml_kernels_agree(monkeypatch, noise_model):
    (f0, f1, f2), frames = _random_waves(np.random.default_rng(3))
    results = []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        out = np.empty_like(f0)
        dev = ml_kernels.ml_gradient(f0, *frames, noise_model, 1, 0, out=out)
        inplace = f0.copy()
        ml_kernels.ml_gradient(inplace, *frames, noise_model)
        coefs = [
            ml_kernels.ml_line_coefficients(f0),
            ml_kernels.ml_line_coefficients(f0, f1),
            ml_kernels.ml_line_coefficients(f0, f1, f2),
        ]
        lines = [ml_kernels.ml_line_frames(c, 0.37, *frames, noise_model) for c in coefs]
        results.append((dev, out, inplace, *coefs, *lines))
    np.testing.assert_array_equal(results[0][1], results[0][2])
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-4)


def _ap_then_ml(e, n):
    """AP**4, then ``n`` ML iterations (the first steps from a flat object are so stiff that
    rounding differences between code paths grow); the deviances and the object."""
    run_chain(e, parse_algorithm("AP**4"))
    _iterate(e, n)
    return np.array(e.deviance), e.obj


def _random_line_after_ap(data, seed, **engine):
    """An engine after AP**4 and a random search direction (dO over the lit object, dP
    relative to the probe) from it."""
    e = _engine(data, **engine)
    run_chain(e, parse_algorithm("AP**4"))
    rng = np.random.default_rng(seed)
    d_o = (0.01 * rng.standard_normal(e.obj_shape) * (e.illumination() > 0)).astype(np.complex64)
    d_p = (0.01 * e.probe * rng.standard_normal(e.probe.shape)).astype(np.complex64)
    return e, d_o, d_p


@pytest.mark.skipif(not kernels._HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("noise_model", ["poisson", "gaussian"])
def test_numba_and_generic_ml_iterations_agree(data, monkeypatch, noise_model):
    """The same line to 1e-5; two iterations alike to 1 %.

    Over more iterations the two paths part: fastmath sums round differently (even between
    a numba kernel compiled now and the same kernel loaded from numba's cache, 1e-7 on the
    deviance), the Wolfe search of a later line then tries another step, and after three
    iterations the deviances were 0.7 % (cached) and 3.7 % (freshly compiled) apart."""
    monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", False)  # the same FFTs in the AP start
    e, d_o, d_p = _random_line_after_ap(data, 4, noise_model=noise_model)
    lines, runs = [], []
    for flag in (True, False):
        monkeypatch.setattr(kernels, "_HAS_NUMBA", flag)
        line = SearchLine(e, e.shifted_probes(), d_o, d_p, 1.0)
        lines.append([line.phi0, line.slope, line.curvature, *line.evaluate(0.7)])
        flat = _engine(data, noise_model=noise_model)
        _iterate(flat, 2)
        runs.append((np.array(flat.deviance), *_ap_then_ml(_engine(data), 2)))
    np.testing.assert_allclose(lines[0], lines[1], rtol=1e-5)
    (flat1, dev1, obj1), (flat2, dev2, obj2) = runs
    np.testing.assert_allclose(flat1, flat2, rtol=1e-4)
    np.testing.assert_allclose(dev1, dev2, rtol=1e-2)
    ill = e.illumination()
    lit = ill > 0.3 * ill.max()
    assert np.linalg.norm((obj1 - obj2)[lit]) <= 5e-2 * np.linalg.norm(obj1[lit])


@pytest.mark.skipif(not kernels.fourier_in_cache(np), reason="numba or rocket-fft missing")
def test_ml_in_cache_and_on_the_stack_agree(data, monkeypatch):
    """The gradient and line coefficients per frame in cache (numba + rocket-fft) against
    the stack steps: the same line to 1e-5, and ML after the same AP start (Poisson and
    Gaussian) alike to 1e-4 over three iterations (1e-7 here). (From the flat object itself
    most pixels with photons have a model near 0, where the two FFT libraries' rounding
    parts the paths by 1.5 % in two iterations.)"""
    monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", False)
    e, d_o, d_p = _random_line_after_ap(data, 8, modes=2, probe_update_start=0)
    lines, runs = [], []
    for fused in (True, False):
        monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", fused)
        for probe_step in (d_p, None):
            line = SearchLine(e, e.shifted_probes(), d_o, probe_step, 1.0)
            lines.append([line.phi0, line.slope, line.curvature, *line.evaluate(0.7)])
        for noise_model in ("poisson", "gaussian"):
            start = _engine(data, modes=2, noise_model=noise_model, probe_update_start=0)
            monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", False)
            run_chain(start, parse_algorithm("AP**4"))
            monkeypatch.setattr(kernels, "_HAS_FUSED_FFT", fused)
            _iterate(start, 3)
            runs.append(np.array(start.deviance[4:]))
    np.testing.assert_allclose(lines[:2], lines[2:], rtol=1e-5)
    np.testing.assert_allclose(runs[:2], runs[2:], rtol=1e-4)
    assert all(r[-1] < r[0] for r in runs)


@pytest.mark.parametrize("kept", [True, False])
def test_one_chunk_and_many_give_the_same_ml_steps(data, kept):
    frame_bytes = 2 * 64 * 64 * 8
    many = 4 * frame_bytes if not kept else 30 * frame_bytes  # coefficients kept if they fit
    runs = []
    for chunk_bytes in (2**31, many):
        e = _engine(data, modes=2, chunk_bytes=chunk_bytes, probe_update_start=1)
        runs.append((e, *_ap_then_ml(e, 3)))
    (one, dev1, obj1), (chunked, devn, objn) = runs
    assert len(chunked.chunks) > 1
    np.testing.assert_allclose(devn, dev1, rtol=1e-4)
    assert np.linalg.norm(objn - obj1) <= 1e-4 * np.linalg.norm(obj1)


# ------------------------------------------------------------------------- simulated data
def _ml_from_flat_object(iterations, **sample):
    """ML alone from a flat object and a zone plate probe model 15 % out of focus."""
    from simulators.dataset import simulate_ptychogram

    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=128, seed=1, **sample)
    p.zone_plate = {**p.zone_plate, "defocus": 1.15 * p.zone_plate["defocus"]}
    opts = EngineOptions(deviance_frames=ALL_FRAMES)
    rec = Reconstruction(p, algorithm=f"ML**{iterations}", backend="numpy", options=opts)
    assert rec.data.report["probe_source"] == "zone_plate"
    np.testing.assert_array_equal(rec.engine.obj, 1)
    res = rec.run()
    lit = res.illumination > 0.1 * res.illumination.max()
    return np.array(res.llk), phase_correlation(
        res.object, _truth_on_recon_grid(p, rec, rec.data.corners_px), lit
    )


def test_ml_from_flat_object_weak_bn_192ev():
    llk, corr = _ml_from_flat_object(100, **BN)  # ML**100 used to reach 0.63
    assert np.all(np.diff(llk) < 0)
    assert llk[-1] < 0.01 * llk[0]
    assert corr >= 0.95  # 0.997 when written


def test_ml_from_flat_object_strong_permalloy_706ev():
    llk, corr = _ml_from_flat_object(50, area_m=0.3e-6, **PERMALLOY)
    assert np.all(np.diff(llk) < 0)
    assert llk[-1] < 0.01 * llk[0]
    assert corr >= 0.95  # 0.98 when written


@pytest.mark.skipif(not kernels._HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("step", [1e-7, 1e-3, 0.08, 0.12, 0.6])
def test_line_terms_keep_float32_precision(relative, step):
    """The Poisson terms of the line search with the vectorised logarithms (series of
    ln(1 + z) below |z| = 0.1, the logarithm above) against float64, for steps from tiny
    (where ln(1 + z) must keep its relative precision) to large; pixels with I = 0 and I < 0
    too."""
    from recon import numba_ml

    rng = np.random.default_rng(int(step * 1e7) + relative)
    p = 4096
    m0 = rng.uniform(0.05, 80.0, p).astype(np.float32)
    delta = (m0 * rng.uniform(-0.9, 1.0, p) * step).astype(np.float32)
    mm = m0 + delta
    inten = rng.poisson(m0).astype(np.float32)
    inten[:40] = -1.5  # background-subtracted data: no logarithm term, as the scalar code
    assert (inten == 0).any()
    v = np.zeros(p, np.float32)
    numba_ml._poisson_terms(inten, m0.copy(), mm, delta.copy(), relative, v)
    m0d, dd, mmd, i = (a.astype(np.float64) for a in (m0, delta, mm, inten))
    pos = np.where(i > 0, i, 0.0)
    if relative:
        want = dd - pos * np.log1p(dd / m0d)
    else:
        want = mmd - i + pos * np.log(np.where(i > 0, i, 1.0) / mmd)
    scale = np.abs(want).max()
    assert np.abs(v - want).max() <= 2e-6 * scale
    assert abs(v.sum(dtype=np.float64) - want.sum()) <= 1e-5 * np.abs(want).sum()
