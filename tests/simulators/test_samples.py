"""Sample models: determinism, pixel-size invariance, sizes, dichroism and contrast."""

import time

import numpy as np
import pytest

from simulators.samples import (
    EDGE_ENERGY_EV,
    LABEL_HORIZONTAL,
    LABEL_VERTICAL,
    SAMPLES,
    make_sample,
)

PX = 4e-9
SHAPE = (512, 512)  # 2.05 um field for the default 2 um area


def od(t: np.ndarray) -> np.ndarray:
    return -np.log10(np.abs(t) ** 2)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_seeded_and_well_formed(name):
    e = EDGE_ENERGY_EV[name]
    a = make_sample(name, seed=3).transmission(e, "LH", PX, (128, 160))
    b = make_sample(name, seed=3).transmission(e, "LH", PX, (128, 160))
    assert a.dtype == np.complex64 and a.shape == (128, 160)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-6
    if name != "siemens-star":  # the star has no random geometry except its rotation
        c = make_sample(name, seed=4).transmission(e, "LH", PX, (128, 160))
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_same_picture_at_two_pixel_sizes(name):
    s = make_sample(name, seed=1)
    e = EDGE_ENERGY_EV[name]
    fine = s.optical_thickness(e, "LH", 4e-9, (540, 540))
    coarse = s.optical_thickness(e, "LH", 9e-9, (240, 240))  # same 2.16 um field
    assert coarse.real.mean() == pytest.approx(fine.real.mean(), rel=0.03)
    assert coarse.imag.mean() == pytest.approx(fine.imag.mean(), rel=0.03)
    # The sample is centred: the centre of mass of absorption agrees within a coarse pixel.
    ys, xs = np.indices(fine.shape)
    yc, xc = np.indices(coarse.shape)
    w_f, w_c = fine.imag, coarse.imag
    cf = np.array([(ys * w_f).sum(), (xs * w_f).sum()]) / w_f.sum() - 270
    cc = np.array([(yc * w_c).sum(), (xc * w_c).sum()]) / w_c.sum() - 120
    np.testing.assert_allclose(cf * 4e-9, cc * 9e-9, atol=9e-9)


def test_rendering_512_is_fast():
    for name in SAMPLES:
        s = make_sample(name, seed=0)
        s.transmission(EDGE_ENERGY_EV[name], "LH", PX, (8, 8))  # warm the optical constants
        t0 = time.perf_counter()
        s.transmission(EDGE_ENERGY_EV[name], "LV", 3.9e-9, SHAPE)
        assert time.perf_counter() - t0 < 0.5, name


def _tube_diameters(sample, key):
    """Widths across each tube at its centre, measured on the thickness map (m)."""
    t = sample.thickness_maps(2e-9, (1024, 1024))[key]
    out = []
    for tube in sample.tubes:
        rod = tube.rod
        c, s = np.cos(rod.angle), np.sin(rod.angle)
        r = np.arange(-100e-9, 100e-9, 0.5e-9)
        x = rod.centre[0] - r * s
        y = rod.centre[1] + r * c
        j = np.round(x / 2e-9).astype(int) + 512
        i = np.round(y / 2e-9).astype(int) + 512
        profile = t[i, j]
        out.append(np.ptp(r[profile > 0]) + 2e-9)
    return np.array(out)


def test_bn_tube_diameters_and_cnt_bundle_diameters():
    bn = make_sample("bn-bamboo", seed=2)
    d = _tube_diameters(bn, "h-BN wall")
    assert len(d) >= 4
    assert np.all((d > 78e-9) & (d < 122e-9))
    cnt = make_sample("cnt-bundle", seed=2)
    d = _tube_diameters(cnt, "cnt")
    assert np.all((d > 98e-9) & (d < 202e-9))
    rods = make_sample("permalloy-rods", seed=2)
    t = rods.thickness_maps(2e-9, (1024, 1024))["permalloy"]
    assert 95e-9 < t.max() < 155e-9  # a rod is as thick as it is wide


def test_bn_xld_has_opposite_sign_on_horizontal_and_vertical_tubes():
    s = make_sample("bn-bamboo", seed=0)
    lab = s.orientation_label(PX, SHAPE)
    assert (lab == LABEL_HORIZONTAL).sum() > 1000 and (lab == LABEL_VERTICAL).sum() > 1000
    xld = od(s.transmission(192.0, "LV", PX, SHAPE)) - od(s.transmission(192.0, "LH", PX, SHAPE))
    h = xld[lab == LABEL_HORIZONTAL].mean()
    v = xld[lab == LABEL_VERTICAL].mean()
    assert h > 0.1 and v < -0.1  # measured +0.61 and -0.53
    # Off resonance (185 eV) there is no dichroism.
    xld0 = od(s.transmission(185.0, "LV", PX, SHAPE)) - od(s.transmission(185.0, "LH", PX, SHAPE))
    assert np.abs(xld0).max() < 0.02 * np.abs(xld).max()
    # The panes (sheets across the axis) have the opposite dichroism of the walls.
    pane = s.thickness_maps(PX, SHAPE)["h-BN pane"]
    wall = s.thickness_maps(PX, SHAPE)["h-BN wall"]
    pane_h = (lab == LABEL_HORIZONTAL) & (pane > 0.4 * wall)
    assert pane_h.sum() > 20
    assert xld[pane_h].mean() < h


def test_bn_phase_is_weak_and_lacy_carbon_has_holes():
    s = make_sample("bn-bamboo", seed=0, n_horizontal=1, n_vertical=0, n_oblique=0)
    t = s.transmission(192.0, "LH", PX, SHAPE)
    tube = s.thickness_maps(PX, SHAPE)["h-BN wall"] > 0
    assert np.abs(np.angle(t[tube])).max() < 0.8  # measured ~0.6 rad
    holes = np.abs(t) > 0.9999
    assert holes.mean() > 0.3
    lacy = s.thickness_maps(PX, SHAPE)["lacy carbon"]
    assert lacy.max() > 15e-9 and (lacy > 0).mean() > 0.05


def test_permalloy_xmcd_at_the_rod_ends():
    s = make_sample("permalloy-rods", seed=0)
    cr = od(s.transmission(706.0, "CR", PX, SHAPE))
    cl = od(s.transmission(706.0, "CL", PX, SHAPE))
    xmcd = (cr - cl) / (cr + cl)
    rods = s.orientation_label(PX, SHAPE) > 0
    ends = s.end_mask(PX, SHAPE)
    middle = rods & ~s.end_mask(PX, SHAPE, scale=2.0)
    assert 0.15 <= xmcd[ends].max() <= 0.35
    assert -0.35 <= xmcd[ends].min() <= -0.15
    assert np.abs(xmcd[middle]).max() < 0.01
    mk = s.magnetization_map(PX, SHAPE)
    assert np.abs(mk[middle]).max() < 0.01 and np.abs(mk).max() <= 1.0
    # XMCD follows M.k: same sign where it is large.
    strong = np.abs(mk) > 0.5
    assert np.all(np.sign(xmcd[strong]) == np.sign(mk[strong]))
    # No circular dichroism off the Fe edge.
    cr0 = od(s.transmission(690.0, "CR", PX, SHAPE))
    cl0 = od(s.transmission(690.0, "CL", PX, SHAPE))
    assert np.abs(cr0 - cl0).max() < 0.02 * np.abs(cr - cl).max()


def test_permalloy_rod_absorbs_strongly_at_l3():
    s = make_sample("permalloy-rods", seed=5, diameter_range_m=(120e-9, 120e-9), n_rods=1)
    t = s.transmission(706.0, "CL", 2e-9, (1024, 1024))
    thick = s.thickness_maps(2e-9, (1024, 1024))["permalloy"]
    axis = thick > 118e-9
    assert axis.any()
    assert np.abs(t[axis]).max() < 0.4  # measured ~0.36
    # Much weaker below the edge.
    t0 = s.transmission(700.0, "CL", 2e-9, (1024, 1024))
    assert np.abs(t0[axis]).min() > 0.7


def test_cnt_xld_and_membrane_choice():
    s = make_sample("cnt-bundle", seed=0, membrane="si3n4")
    lab = s.orientation_label(PX, SHAPE)
    xld = od(s.transmission(285.2, "LV", PX, SHAPE)) - od(s.transmission(285.2, "LH", PX, SHAPE))
    assert xld[lab == LABEL_HORIZONTAL].mean() > 0.05
    assert xld[lab == LABEL_VERTICAL].mean() < -0.05
    maps = s.thickness_maps(PX, SHAPE)
    assert maps["Si3N4 membrane"].max() == pytest.approx(5e-9)
    # Sample-free regions: membrane only, uniform transmission.
    free = lab == 0
    t = np.abs(s.transmission(285.2, "LH", PX, SHAPE))
    assert free.mean() > 0.5 and np.ptp(t[free]) < 1e-5


def test_siemens_star_is_opaque_gold_on_membrane():
    s = make_sample("siemens-star", seed=0)
    t = np.abs(s.transmission(280.0, "LH", PX, SHAPE))
    au = s.thickness_maps(PX, SHAPE)["Au"]
    assert au.max() == pytest.approx(180e-9)
    assert t[au > 179e-9].max() < 0.1
    assert 0.4 < (au > 90e-9)[np.hypot(*np.indices(SHAPE) - 256) < 200].mean() < 0.6


def test_make_sample_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown sample"):
        make_sample("unicorn")
    with pytest.raises(ValueError, match="bad parameter"):
        make_sample("bn-bamboo", wings=2)
    with pytest.raises(ValueError, match="membrane"):
        make_sample("cnt-bundle", membrane="gold")


def test_small_area_still_has_structure():
    for name in SAMPLES:
        s = make_sample(name, seed=0, area_m=0.4e-6)
        t = s.transmission(EDGE_ENERGY_EV[name], "LH", 5e-9, (96, 96))
        assert np.ptp(np.abs(t)) > 0.05, name
