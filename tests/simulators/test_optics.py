"""Optical constants: tabulated values off resonance, NEXAFS resonances, KK partners, dichroism."""

import numpy as np
import pytest
import scipy.signal

from simulators import optics
from simulators.optics import (
    components,
    delta_beta,
    linear_dichroism_weight,
    polarization_vector,
    tabulated_delta_beta,
    xmcd_asymmetry,
    xmcd_weight,
)

PEAKS = [
    ("h-BN", 192.0),  # B 1s -> pi*
    ("h-BN", 401.3),  # N 1s -> pi*
    ("cnt", 285.2),  # C 1s -> pi*
    ("permalloy", 706.0),  # Fe L3
    ("permalloy", 719.0),  # Fe L2
]


@pytest.mark.parametrize("material, e0", PEAKS)
def test_resonance_peak_positions_in_beta(material, e0):
    e = np.arange(e0 - 1.5, e0 + 1.5, 0.005)
    _, beta = delta_beta(material, e)
    assert abs(e[np.argmax(beta)] - e0) < 0.1


def test_sigma_star_resonances_in_their_ranges():
    e = np.arange(196.0, 206.0, 0.01)
    _, b_on = delta_beta("h-BN", e)
    _, b_off = delta_beta("h-BN", e, sigma_weight=0.0)
    added = b_on - b_off
    assert 198.0 <= e[np.argmax(added)] <= 202.0
    e = np.arange(405.0, 420.0, 0.01)
    added = delta_beta("h-BN", e)[1] - delta_beta("h-BN", e, sigma_weight=0.0)[1]
    assert 408.0 <= e[np.argmax(added)] <= 416.0
    e = np.arange(288.0, 300.0, 0.01)
    added = delta_beta("cnt", e)[1] - delta_beta("cnt", e, sigma_weight=0.0)[1]
    assert abs(e[np.argmax(added)] - 293.0) < 0.5


def test_b1s_pi_star_raises_absorption_several_fold():
    _, pre = delta_beta("h-BN", 185.0)
    _, peak = delta_beta("h-BN", 192.0)
    assert peak / pre > 3.0
    # Measured ~19x; the edge step alone (no pi*) is less than the peak.
    _, step_only = delta_beta("h-BN", 192.0, pi_weight=0.0)
    assert peak > 3 * step_only


def test_permalloy_is_a_strong_absorber_at_fe_l3():
    _, b706 = delta_beta("permalloy", 706.0)
    _, b700 = delta_beta("permalloy", 700.0)
    assert b706 / b700 > 5.0
    mu = 4 * np.pi * b706 / (1.239841984e-6 / 706.0)
    assert np.exp(-0.5 * mu * 120e-9) < 0.45  # |T| of 120 nm


@pytest.mark.parametrize("material, e0, fwhm", [("h-BN", 192.0, 0.5), ("permalloy", 706.0, 1.8)])
def test_delta_shows_dispersive_wiggle(material, e0, fwhm):
    e = np.arange(e0 - 3 * fwhm, e0 + 3 * fwhm, 0.005)
    delta, _ = delta_beta(material, e)
    i_min, i_max = np.argmin(delta), np.argmax(delta)
    # Minimum just below the peak, maximum just above, each within a width.
    assert e0 - fwhm < e[i_min] < e0 < e[i_max] < e0 + fwhm
    # Its derivative changes sign on either side of the peak.
    d = np.diff(delta)
    assert np.all(d[(e[:-1] > e[i_min] + 0.01) & (e[:-1] < e[i_max] - 0.01)] > 0)
    assert d[np.searchsorted(e, e0 - 1.5 * fwhm)] < 0


@pytest.mark.parametrize(
    "material, window",
    [("h-BN", (185.0, 215.0)), ("cnt", (280.0, 300.0)), ("permalloy", (700, 730))],
)
def test_added_delta_is_the_kramers_kronig_partner_of_added_beta(material, window):
    # Independent check: scipy's FFT Hilbert transform on a wide grid.
    e = np.arange(30.0, 1400.0, 0.02)
    c = components(material, e)
    parts = (c.edge, c.white, c.pi, c.sigma)
    added_beta = sum(p[1] for p in parts)
    added_delta = sum(p[0] for p in parts)
    kk = np.imag(scipy.signal.hilbert(added_beta))
    sel = (e > window[0]) & (e < window[1])
    err = np.abs(kk[sel] - added_delta[sel]).max() / np.abs(added_delta[sel]).max()
    assert err < 0.03


def test_xmcd_partner_is_kramers_kronig_consistent():
    e = np.arange(30.0, 1400.0, 0.02)
    c = components("permalloy", e)
    kk = np.imag(scipy.signal.hilbert(c.xmcd[1]))
    sel = (e > 700) & (e < 725)
    err = np.abs(kk[sel] - c.xmcd[0][sel]).max() / np.abs(c.xmcd[0][sel]).max()
    assert err < 0.03


@pytest.mark.parametrize(
    "material, energies",
    [
        ("h-BN", [150.0, 170.0, 300.0, 350.0, 600.0, 750.0]),
        ("amorphous-carbon", [180.0, 250.0, 400.0, 600.0]),
        ("cnt", [180.0, 250.0, 450.0, 700.0]),
        ("formvar", [180.0, 250.0, 400.0, 700.0]),
        ("Si3N4", [200.0, 300.0, 550.0, 700.0]),
        ("permalloy", [200.0, 400.0, 600.0]),
        ("gold", [200.0, 280.0, 706.0]),
    ],
)
def test_off_resonance_values_equal_the_tables(material, energies):
    e = np.array(energies)
    d, b = delta_beta(material, e)
    d0, b0 = tabulated_delta_beta(material, e)
    np.testing.assert_allclose(d, d0, rtol=0.01)
    np.testing.assert_allclose(b, b0, rtol=0.01)


def test_delta_is_smooth_where_the_tabulated_edge_was_removed():
    # The tabulated f1 has a one-point dip at the tabulated B K edge (188 eV); the model
    # must not: below the pi* its delta changes by < 5 % per 0.1 eV.
    e = np.arange(180.0, 190.0, 0.1)
    d, _ = delta_beta("h-BN", e)
    assert np.abs(np.diff(d)).max() < 0.05 * np.abs(d).max()


def test_polarization_vectors():
    for pol in optics.POLARIZATIONS:
        assert np.linalg.norm(polarization_vector(pol)) == pytest.approx(1.0)
    np.testing.assert_allclose(polarization_vector("LH"), [1, 0, 0])
    np.testing.assert_allclose(polarization_vector("LV"), [0, 1, 0])
    with pytest.raises(ValueError, match="unknown polarization"):
        polarization_vector("XX")


def test_linear_dichroism_swaps_between_lh_and_lv():
    nx, ny, nz = np.eye(3)
    assert linear_dichroism_weight("LH", nx) == pytest.approx(1.0)
    assert linear_dichroism_weight("LV", nx) == pytest.approx(0.0)
    assert linear_dichroism_weight("LH", ny) == pytest.approx(0.0)
    assert linear_dichroism_weight("LV", ny) == pytest.approx(1.0)
    assert linear_dichroism_weight("CR", nx) == pytest.approx(0.5)
    assert linear_dichroism_weight("CL", nz) == pytest.approx(0.0)
    # pi* absorption at 192 eV with weight 3|e.n|^2: LH > LV for n along x, swapped for y.
    b = {}
    for pol in ("LH", "LV"):
        for name, n in (("x", nx), ("y", ny)):
            w = 3 * float(linear_dichroism_weight(pol, n))
            b[pol, name] = float(delta_beta("h-BN", 192.0, pi_weight=w)[1])
    assert b["LH", "x"] > 3 * b["LV", "x"]
    assert b["LV", "y"] > 3 * b["LH", "y"]
    assert b["LH", "x"] == pytest.approx(b["LV", "y"])


def test_xmcd_at_fe_l3_is_about_30_percent_and_flips_with_m():
    k = np.array([0.0, 0.0, 1.0])
    ods = {}
    for m_sign in (1, -1):
        for pol in ("CR", "CL"):
            w = float(xmcd_weight(pol, m_sign * k))
            ods[m_sign, pol] = float(delta_beta("permalloy", 706.0, xmcd=w)[1])
    x_par = (ods[1, "CR"] - ods[1, "CL"]) / (ods[1, "CR"] + ods[1, "CL"])
    x_anti = (ods[-1, "CR"] - ods[-1, "CL"]) / (ods[-1, "CR"] + ods[-1, "CL"])
    assert 0.25 <= x_par <= 0.35
    assert x_anti == pytest.approx(-x_par)
    # Opposite sign at L2, ~0 off the edge, none for in-plane M.
    assert xmcd_asymmetry("permalloy", 719.0) < -0.15
    assert abs(xmcd_asymmetry("permalloy", 690.0)) < 0.02
    assert xmcd_weight("CR", np.array([1.0, 0.0, 0.0])) == 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown material"):
        delta_beta("unobtainium", 200.0)
    with pytest.raises(ValueError, match="xmcd"):
        delta_beta("permalloy", 706.0, xmcd=2.0)


def test_material_tables_come_from_the_package_data_file():
    import json
    from importlib import resources

    from simulators.materials import MATERIALS, get_material

    path = resources.files("simulators") / "data" / "materials.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data["materials"]) == set(MATERIALS)
    for alias, name in data["aliases"].items():
        assert get_material(alias.upper()) is MATERIALS[name]
    fe = MATERIALS["permalloy"].edge_of("Fe")
    assert [s.fraction for s in fe.steps] == pytest.approx([2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="no modelled edge"):
        MATERIALS["gold"].edge_of("Au")
