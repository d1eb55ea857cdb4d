"""Stack analysis on ground-truth transmissions of simulated samples: registration recovers
an imposed drift, region spectra peak at the BN pi* resonance, XLD and XMCD maps match the
truth with the right signs, and stack fits recover component maps."""

import numpy as np
import pytest

from recon import stack as st
from simulators.samples import make_sample

PX = 10e-9
SHAPE = (128, 128)


def _drifted(objects, rng, reference, max_px=3.0, noise=0.01):
    """Objects moved by random sub-pixel drifts (the reference stays), with an arbitrary
    intensity scale and a little noise, as reconstructions come out."""
    drift = rng.uniform(-max_px, max_px, size=(len(objects), 2))
    drift[reference] = 0
    moved = st.fourier_shift(np.asarray(objects, np.complex128), drift)
    scale = rng.uniform(0.7, 1.0, size=len(objects))[:, None, None]
    moved = moved * np.sqrt(scale)
    moved = moved + noise * (rng.normal(size=moved.shape) + 1j * rng.normal(size=moved.shape))
    return moved, drift


def _truth_od(t):
    return -np.log10(np.abs(np.asarray(t, np.complex128)) ** 2)


@pytest.fixture(scope="module")
def bamboo():
    sample = make_sample("bn-bamboo", seed=1, area_m=1.2e-6)
    return sample, sample.orientation_label(PX, SHAPE)


def test_register_translation_known_shift():
    rng = np.random.default_rng(0)
    img = st.fourier_shift(rng.normal(size=(96, 96)), (0, 0))
    # smooth random structure
    k = np.fft.fftfreq(96)
    img = np.fft.ifft2(np.fft.fft2(img) * np.exp(-((k[:, None] ** 2 + k[None] ** 2) / 0.01))).real
    for _ in range(5):
        true = rng.uniform(-4, 4, size=2)
        moved = st.fourier_shift(img, true)
        dy, dx, err = st.register_translation(img, moved, upsample=100)
        assert dy == pytest.approx(-true[0], abs=0.02)
        assert dx == pytest.approx(-true[1], abs=0.02)
        assert err < 1e-3
        back = st.fourier_shift(moved, (dy, dx))
        assert np.abs(back - img).max() < 0.05 * np.abs(img).max()


def test_register_rejects_bad_input():
    with pytest.raises(ValueError):
        st.register_translation(np.zeros((8, 8)), np.zeros((8, 9)))


def test_spectra_peak_at_pi_star_and_drift_recovered(bamboo):
    sample, label = bamboo
    energies = np.arange(188.0, 196.01, 0.5)
    truth = np.array([sample.transmission(e, "LH", PX, SHAPE) for e in energies])
    ref = len(energies) // 2
    rng = np.random.default_rng(7)
    moved, drift = _drifted(truth, rng, ref)
    res = st.analyze_stack(moved, energies, ["LH"] * len(energies), reference=ref)
    err = np.abs(res.shifts + drift).max()
    print(f"max drift error {err:.3f} px")
    assert err < 0.2
    tube = label > 0
    od_spec = st.region_spectrum(res.od, tube)
    peak = st.peak_energy(energies, od_spec)
    print(f"tube OD spectrum peak {peak:.3f} eV")
    assert peak == pytest.approx(192.0, abs=0.3)
    # OD matches the truth's OD (I0 from the open holes of the lacy carbon)
    true_od = _truth_od(truth)
    core = (slice(8, -8), slice(8, -8))
    diff = np.abs(res.od[:, core[0], core[1]] - true_od[:, core[0], core[1]])
    assert np.median(diff) < 0.02
    # the phase spectrum of the tubes crosses the resonance (anomalous dispersion)
    ph_spec = st.region_spectrum(res.phase, tube)
    assert np.ptp(ph_spec) > 0.01


def test_xld_matches_truth_with_signs(bamboo):
    sample, label = bamboo
    energies = [190.0, 190.0, 192.0, 192.0]
    pols = ["LH", "LV", "LH", "LV"]
    truth = np.array(
        [sample.transmission(e, p, PX, SHAPE) for e, p in zip(energies, pols, strict=True)]
    )
    rng = np.random.default_rng(11)
    moved, drift = _drifted(truth, rng, reference=2)
    res = st.analyze_stack(moved, energies, pols, reference=2)
    assert np.abs(res.shifts + drift).max() < 0.2
    assert list(res.xld_energies) == [190.0, 192.0]
    true_xld = st.xld(_truth_od(truth[3]), _truth_od(truth[2]))
    core = (slice(8, -8), slice(8, -8))
    r = np.corrcoef(res.xld[1][core].ravel(), true_xld[core].ravel())[0, 1]
    print(f"XLD correlation with truth at 192 eV: {r:.3f}")
    assert r >= 0.8
    horizontal, vertical = label == 1, label == 2
    # walls dominate: pi* radial, so horizontal tubes absorb more with LV, vertical with LH
    assert true_xld[horizontal].mean() > 0 > true_xld[vertical].mean()
    assert res.xld[1][horizontal].mean() > 0 > res.xld[1][vertical].mean()
    # below the resonance there is little dichroism
    assert np.abs(res.xld[0][label > 0]).mean() < 0.3 * np.abs(res.xld[1][label > 0]).mean()


def test_xmcd_matches_truth_with_signs_at_rod_ends():
    sample = make_sample("permalloy-rods", seed=0, area_m=1.2e-6)
    energies = [706.0, 706.0]
    pols = ["CR", "CL"]
    truth = np.array(
        [sample.transmission(e, p, PX, SHAPE) for e, p in zip(energies, pols, strict=True)]
    )
    rng = np.random.default_rng(5)
    moved, drift = _drifted(truth, rng, reference=0, noise=0.003)
    res = st.analyze_stack(moved, energies, pols, reference=0)
    assert np.abs(res.shifts + drift).max() < 0.2
    mask = st.background_mask(np.abs(truth))
    tod = st.optical_density(truth, mask=mask)
    true_x = st.xmcd(tod[0], tod[1])
    mk = sample.magnetization_map(PX, SHAPE)
    rods = sample.orientation_label(PX, SHAPE) > 0
    r = np.corrcoef(res.xmcd[0][rods], true_x[rods])[0, 1]
    print(f"XMCD correlation with truth over the rods: {r:.3f}")
    assert r >= 0.8
    ends = sample.end_mask(PX, SHAPE) & (np.abs(mk) > 0.3)
    agree = np.mean(np.sign(res.xmcd[0][ends]) == np.sign(true_x[ends]))
    assert agree > 0.9
    # and the truth's sign follows the out-of-plane magnetisation
    assert np.mean(np.sign(true_x[ends]) == np.sign(mk[ends])) > 0.9


def test_xmcd_guards_small_denominators():
    a = np.array([[0.0, 0.5], [1e-9, 1.0]])
    b = np.array([[0.0, 0.3], [-1e-9, 1.0]])
    out = st.xmcd(a, b)
    assert np.isfinite(out).all()
    assert out[0, 0] == 0 and out[1, 0] == 0
    assert out[0, 1] == pytest.approx(0.25)


def test_fit_stack_svd_and_nnls():
    rng = np.random.default_rng(2)
    e = np.linspace(188, 196, 20)
    ref = np.stack([np.exp(-((e - 192) ** 2) / 0.5) + 0.1, 0.05 * (e - 186)], axis=1)
    maps = rng.uniform(0, 1, size=(2, 16, 16))
    maps[0, :4] = 0  # no first component there
    data = np.einsum("km,myx->kyx", ref, maps) + 0.01 * rng.normal(size=(20, 16, 16))
    lsq = st.fit_stack(data, ref, method="svd")
    nn = st.fit_stack(data, ref, method="nnls")
    assert np.abs(lsq.maps - maps).max() < 0.05
    assert np.abs(nn.maps - maps).max() < 0.05
    assert (nn.maps >= 0).all()
    assert (lsq.maps < 0).any()  # noise makes some unconstrained coefficients negative
    assert nn.residual.mean() == pytest.approx(0.01, rel=0.3)
    with pytest.raises(ValueError):
        st.fit_stack(data, ref[:5])


def test_resample_to_grid():
    img = np.outer(np.hanning(40), np.hanning(40))
    out = st.resample_to_grid([img, img], [1.0, 1.0])
    assert out.shape == (2, 40, 40) and np.allclose(out[0], img)
    # an image of half the pixel size and twice the pixels covers the same field
    fine = np.outer(np.hanning(80), np.hanning(80))
    both = st.resample_to_grid([img, fine], [1.0, 0.5])
    assert both.shape == (2, 40, 40)
    assert np.abs(both[1] - both[0]).max() < 0.05
