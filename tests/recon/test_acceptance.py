"""Acceptance: AP recovers the phase of simulated weak (BN, 192 eV) and strong (permalloy,
706 eV) samples from the simulator's ptychograms (camera noise, dark, hot pixels included)."""

import numpy as np

from recon.metrics import phase_correlation
from recon.reconstruction import Reconstruction


def _truth_on_recon_grid(p, rec):
    """The simulated object cut to the reconstruction's grid (integer part of the offset;
    :func:`phase_correlation` registers the rest)."""
    off = np.asarray(p.truth["positions_px"]) - rec.data.corners_px
    assert np.ptp(off, axis=0).max() < 1e-6  # same scan, constant offset
    y0, x0 = np.round(off.mean(axis=0)).astype(int)
    truth = np.asarray(p.truth["object"])
    h, w = rec.engine.obj_shape
    out = np.ones((h, w), np.complex64)
    ys = slice(max(0, y0), min(truth.shape[0], y0 + h))
    xs = slice(max(0, x0), min(truth.shape[1], x0 + w))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = truth[ys, xs]
    return out


def _reconstruct(algorithm="AP**100", **kwargs):
    from simulators.dataset import simulate_ptychogram

    p = simulate_ptychogram(polarization="LH", exposure_s=0.1, frame_size=128, seed=1, **kwargs)
    rec = Reconstruction(p, algorithm=algorithm, backend="numpy")
    res = rec.run()
    lit = res.illumination > 0.1 * res.illumination.max()
    assert rec.data.report["probe_source"] == "zone_plate"
    assert abs(rec.data.pixel_size_m - p.truth["object_pixel_size"]) < 1e-12
    return res, phase_correlation(res.object, _truth_on_recon_grid(p, rec), lit)


def test_ap_weak_bn_192ev_defocused():
    res, corr = _reconstruct(
        sample="bn-bamboo", energy_ev=192, spot_m=1e-6, overlap=0.9, area_m=1e-6
    )
    assert res.llk[-1] < 0.02 * res.llk[0]
    assert corr >= 0.9


def test_ap_strong_permalloy_706ev_focused():
    res, corr = _reconstruct(
        sample="permalloy-rods", energy_ev=706, spot_m=0.07e-6, overlap=0.5, area_m=0.5e-6
    )
    assert res.llk[-1] < 0.02 * res.llk[0]
    assert corr >= 0.95


def test_dm_on_weak_bn_is_guarded():
    """DM wanders on the weak scatterer (as Vijayakumar et al., J. Synchrotron Rad. 30 (2023),
    doi:10.1107/S1600577523000955, observe); the guard hands over to AP and the result is still
    good."""
    res, corr = _reconstruct(
        algorithm="DM**100",
        sample="bn-bamboo",
        energy_ev=192,
        spot_m=1e-6,
        overlap=0.9,
        area_m=1e-6,
    )
    assert res.llk[-1] < 0.02 * res.llk[0]
    assert corr >= 0.9
    if res.messages:
        assert "falling back to AP" in res.messages[0]
