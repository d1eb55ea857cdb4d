"""Stack analysis on ground-truth transmissions of simulated samples: registration recovers
an imposed drift, region spectra peak at the BN pi* resonance, XLD and XMCD maps match the
truth with the right signs, and stack fits recover component maps."""

import numpy as np
import pytest

from recon import spectro, stack_fit
from recon import stack as st
from recon.operators import fourier_shift
from simulators.samples import make_sample

PX = 10e-9
SHAPE = (128, 128)


def _drifted(objects, rng, reference, max_px=3.0, noise=0.01):
    """Objects moved by random sub-pixel drifts (the reference stays), with an arbitrary
    intensity scale and a little noise, as reconstructions come out."""
    drift = rng.uniform(-max_px, max_px, size=(len(objects), 2))
    drift[reference] = 0
    moved = fourier_shift(np.asarray(objects, np.complex128), drift[:, 0], drift[:, 1])
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
    od_spec = spectro.region_spectrum(res.od, tube)
    peak = stack_fit.peak_energy(energies, od_spec)
    print(f"tube OD spectrum peak {peak:.3f} eV")
    assert peak == pytest.approx(192.0, abs=0.3)
    # OD matches the truth's OD (I0 from the open holes of the lacy carbon)
    true_od = _truth_od(truth)
    core = (slice(8, -8), slice(8, -8))
    diff = np.abs(res.od[:, core[0], core[1]] - true_od[:, core[0], core[1]])
    assert np.median(diff) < 0.02
    # the phase spectrum of the tubes crosses the resonance (anomalous dispersion)
    ph_spec = spectro.region_spectrum(res.phase, tube)
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
    true_xld = spectro.xld(_truth_od(truth[3]), _truth_od(truth[2]))
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
    mask = spectro.background_mask(np.abs(truth))
    tod = spectro.optical_density(truth, mask=mask)
    true_x = spectro.xmcd(tod[0], tod[1])
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
    out = spectro.xmcd(a, b)
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
    lsq = stack_fit.fit_stack(data, ref, method="svd")
    nn = stack_fit.fit_stack(data, ref, method="nnls")
    assert np.abs(lsq.maps - maps).max() < 0.05
    assert np.abs(nn.maps - maps).max() < 0.05
    assert (nn.maps >= 0).all()
    assert (lsq.maps < 0).any()  # noise makes some unconstrained coefficients negative
    assert nn.residual.mean() == pytest.approx(0.01, rel=0.3)
    with pytest.raises(ValueError):
        stack_fit.fit_stack(data, ref[:5])


def test_resample_to_grid():
    img = np.outer(np.hanning(40), np.hanning(40))
    out = st.resample_to_grid([img, img], [1.0, 1.0])
    assert out.shape == (2, 40, 40) and np.allclose(out[0], img)
    # an image of half the pixel size and twice the pixels covers the same field
    fine = np.outer(np.hanning(80), np.hanning(80))
    both = st.resample_to_grid([img, fine], [1.0, 0.5])
    assert both.shape == (2, 40, 40)
    assert np.abs(both[1] - both[0]).max() < 0.05


def test_align_stack_real_images_keeps_real_and_recovers_drift():
    rng = np.random.default_rng(4)
    k = np.fft.fftfreq(64)
    img = np.fft.ifft2(
        np.fft.fft2(rng.normal(size=(64, 64))) * np.exp(-(k[:, None] ** 2 + k[None] ** 2) / 0.02)
    ).real
    drift = np.array([[0.0, 0.0], [1.4, -0.6], [-2.2, 0.9]])
    moved = fourier_shift(np.stack([img] * 3), drift[:, 0], drift[:, 1]).real
    aligned, shifts = st.align_stack(moved, reference=0, taper=0.0)
    assert aligned.dtype == np.float64 and aligned.shape == moved.shape  # its precision
    assert st.align_stack(moved.astype(np.float32), taper=0.0)[0].dtype == np.float32
    np.testing.assert_allclose(shifts, -drift, atol=0.05)
    assert np.abs(aligned - img).max() < 0.02 * np.abs(img).max()
    with pytest.raises(ValueError):
        st.align_stack(moved, reference=3)


def test_optical_density_normalises_each_image_by_its_own_i0():
    obj = np.full((2, 12, 12), 0.9 + 0j)
    obj[:, 3:6, 3:6] *= 10 ** (-0.25)  # OD 0.5 of the sample
    obj[1] *= 0.6  # the second reconstruction came out darker overall
    od = spectro.optical_density(obj)
    assert od.dtype == np.float32 and od.shape == obj.shape
    np.testing.assert_allclose(od[:, 4, 4], 0.5, atol=1e-5)
    np.testing.assert_allclose(od[:, 0, 0], 0.0, atol=1e-6)
    with pytest.raises(ValueError):
        spectro.optical_density(obj, i0=[1.0, 0.0])
