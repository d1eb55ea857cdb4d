"""``--algorithm auto``: the chain is chosen from the data, reported, and it reaches a good
reconstruction from a probe model that differs from the truth and positions with errors."""

import copy

import numpy as np
import pytest
from test_acceptance import _truth_on_recon_grid  # tests/recon is on sys.path

from recon.algorithm_chain import check_algorithm, parse_algorithm
from recon.auto_chain import DataMeasures, choose_chain, measure, scattering_strength
from recon.metrics import phase_correlation
from recon.reconstruction import Reconstruction

WEAK = dict(sample="bn-bamboo", energy_ev=192, spot_m=1e-6, overlap=0.9, area_m=1e-6)
STRONG = dict(sample="permalloy-rods", energy_ev=706, spot_m=0.07e-6, overlap=0.5, area_m=0.5e-6)


def _simulate(case):
    from simulators.dataset import simulate_ptychogram

    return simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=128, seed=1, **case)


@pytest.fixture(scope="module")
def weak():
    return _simulate(WEAK)


@pytest.fixture(scope="module")
def strong():
    return _simulate(STRONG)


def _spoiled(p, seed=5):
    """The probe model 15 % out of focus and 20 nm rms position errors (random, seeded)."""
    q = copy.deepcopy(p)
    q.zone_plate = dict(q.zone_plate)
    q.zone_plate["defocus"] *= 1.15
    rng = np.random.default_rng(seed)
    q.positions_m = q.positions_m + rng.normal(0, 20e-9 / np.sqrt(2), q.positions_m.shape)
    return q


def _truth_on_grid(p, rec):
    """The truth cut to the reconstruction's grid, placed by the TRUE positions."""
    true_corners = np.asarray(p.positions_m) / rec.data.pixel_size_m + rec.origin_px
    return _truth_on_recon_grid(p, rec, true_corners)


def _auto(p):
    rec = Reconstruction(_spoiled(p), algorithm="auto", backend="numpy")
    assert rec.engine.opts.refine_positions  # auto turns it on
    res = rec.run()
    lit = res.illumination > 0.1 * res.illumination.max()
    return rec, res, phase_correlation(res.object, _truth_on_grid(p, rec), lit)


def test_measures_tell_weak_from_strong(weak, strong):
    m = {}
    for name, p in (("weak", weak), ("strong", strong)):
        rec = Reconstruction(p, algorithm="AP**1", backend="numpy")
        d = rec.data
        m[name] = measure(d.intensities, d.mask, d.corners_px, d.probe)
        assert m[name].frames == len(d.intensities)
        assert m[name].photons_per_frame > 1e5
    assert m["strong"].scattering_strength > m["weak"].scattering_strength
    assert m["weak"].overlap > m["strong"].overlap
    assert choose_chain(m["weak"]).chain.split(",")[0].startswith("AP")
    assert choose_chain(m["strong"]).chain.split(",")[0].startswith("RAAR")


def test_scattering_strength_ignores_poisson_noise():
    rng = np.random.default_rng(0)
    mean = rng.uniform(5, 50, (32, 32))
    good = np.ones((32, 32), bool)
    same = rng.poisson(mean, (200, 32, 32)).astype(np.float32)
    varied = rng.poisson(mean * rng.uniform(0.2, 1.8, (200, 32, 32))).astype(np.float32)
    assert scattering_strength(same, good) < 0.02
    assert 0.3 < scattering_strength(varied, good) < 0.6  # uniform(0.2, 1.8): rms 0.46


def test_rule_follows_photons_and_overlap():
    base = DataMeasures(photons_per_frame=1e6, scattering_strength=0.1, overlap=0.8, frames=50)
    few = choose_chain(DataMeasures(1e3, 0.1, 0.8, 50))
    sparse = choose_chain(DataMeasures(1e6, 0.1, 0.3, 50))
    chosen = choose_chain(base)
    for c in (chosen, few, sparse):
        steps = parse_algorithm(c.chain)
        assert steps[-1][0] == "ML" and c.options["refine_positions"]
        assert all(name not in ("DM", "RAAR") for name, _ in steps)
    assert parse_algorithm(few.chain)[-1][1] > parse_algorithm(chosen.chain)[-1][1]
    assert parse_algorithm(sparse.chain)[0][1] > parse_algorithm(chosen.chain)[0][1]
    assert chosen.options["ml_smoothing"] == 0.0 and "ml_smoothing" not in few.options
    assert check_algorithm(" Auto ") == " Auto "
    with pytest.raises(ValueError, match="auto"):
        parse_algorithm("auto")


def test_auto_on_strong_focused_data_with_errors(strong):
    rec, res, corr = _auto(strong)
    assert res.algorithm == rec.auto_choice.chain and res.algorithm.startswith("RAAR")
    assert res.messages[0].startswith(f"auto: chose {res.algorithm}")
    assert res.iterations == sum(n for _, n in parse_algorithm(res.algorithm))
    assert corr >= 0.95


def test_auto_on_weak_defocused_data_with_errors(weak):
    rec, res, corr = _auto(weak)
    assert res.algorithm.startswith("AP") and "DM" not in res.algorithm
    assert res.llk[-1] < 0.05 * res.llk[0]
    assert any(m.startswith("focus search: probe model moved by -") for m in res.messages)
    assert corr >= 0.95
