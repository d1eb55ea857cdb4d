"""Acceptance: AP and DM recover the phase of simulated weak (BN, 192 eV) and strong
(permalloy, 706 eV) samples from the simulator's ptychograms (camera noise, dark, hot pixels
included), starting from what an experiment would give them: a zone plate probe model whose
defocus is 15 % off and positions with random errors of 10-30 nm, refined on the way."""

import numpy as np

from recon.engine_options import EngineOptions
from recon.metrics import phase_correlation
from recon.reconstruction import Reconstruction

BN = {"sample": "bn-bamboo", "energy_ev": 192, "spot_m": 1e-6, "overlap": 0.9, "area_m": 1e-6}
PERMALLOY = {
    "sample": "permalloy-rods",
    "energy_ev": 706,
    "spot_m": 0.07e-6,
    "overlap": 0.5,
    "area_m": 0.5e-6,
}


def _truth_on_recon_grid(p, rec, true_corners):
    """The simulated object cut to the reconstruction's grid (integer part of the offset;
    :func:`phase_correlation` registers the rest)."""
    off = np.asarray(p.truth["positions_px"]) - true_corners
    assert np.ptp(off, axis=0).max() < 1e-6  # same scan, constant offset
    y0, x0 = np.round(off.mean(axis=0)).astype(int)
    truth = np.asarray(p.truth["object"])
    h, w = rec.engine.obj_shape
    out = np.ones((h, w), np.complex64)
    ys = slice(max(0, y0), min(truth.shape[0], y0 + h))
    xs = slice(max(0, x0), min(truth.shape[1], x0 + w))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = truth[ys, xs]
    return out


def _position_error(corners, true_corners):
    """rms distance (pixels) of patch corners from the truth, common shift removed."""
    d = np.asarray(corners) - true_corners
    return float(np.sqrt(((d - d.mean(axis=0)) ** 2).sum(axis=1).mean()))


def _reconstruct(algorithm="AP**100", **kwargs):
    """Simulate, spoil the probe model and the positions, reconstruct with position
    refinement; returns (result, phase correlation, position error before, after)."""
    from simulators.dataset import simulate_ptychogram

    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=128, seed=1, **kwargs)
    true_m = np.array(p.positions_m, dtype=np.float64)
    rng = np.random.default_rng(7)
    r = rng.uniform(10e-9, 30e-9, len(true_m))
    angle = rng.uniform(0, 2 * np.pi, len(true_m))
    p.positions_m = true_m + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    p.zone_plate = {**p.zone_plate, "defocus": 1.15 * p.zone_plate["defocus"]}
    rec = Reconstruction(
        p, algorithm=algorithm, backend="numpy", options=EngineOptions(refine_positions=True)
    )
    assert rec.data.report["probe_source"] == "zone_plate"
    assert abs(rec.data.pixel_size_m - p.truth["object_pixel_size"]) < 1e-12
    true_corners = true_m / rec.data.pixel_size_m + rec.data.origin_px
    before = _position_error(rec.data.corners_px, true_corners)
    res = rec.run()
    after = _position_error(rec.engine.corners_px, true_corners)
    lit = res.illumination > 0.1 * res.illumination.max()
    corr = phase_correlation(res.object, _truth_on_recon_grid(p, rec, true_corners), lit)
    return res, corr, before, after


def test_ap_weak_bn_192ev_defocused():
    res, corr, before, after = _reconstruct(**BN)
    assert 0.3 < before < 0.8  # 0.53 px of 39 nm
    assert after < 0.5 * before  # 0.20
    assert res.llk[-1] < 0.03 * res.llk[0]  # 0.019
    # The weak, sparse sample suffers from the wrong start: 0.55 here, 0.92 with the true
    # defocus and positions after the same 100 iterations.
    assert corr >= 0.45


def test_ap_strong_permalloy_706ev_focused():
    res, corr, before, after = _reconstruct(**PERMALLOY)
    assert 0.4 < before < 0.9  # 0.66 px of 32 nm
    assert after < 0.5 * before  # 0.24
    assert res.llk[-1] < 0.01 * res.llk[0]  # 0.0034
    assert corr >= 0.97  # 0.992


def test_dm_strong_permalloy_706ev_converges_without_fallback():
    res, corr, before, after = _reconstruct(algorithm="DM**100", **PERMALLOY)
    assert res.messages == []  # no divergence, no fallback to AP
    assert after < 0.6 * before  # 0.66 -> 0.30 px
    assert res.llk[-1] < 0.015 * res.llk[0]  # 0.0069
    assert corr >= 0.95  # 0.982
