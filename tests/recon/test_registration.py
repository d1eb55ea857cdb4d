"""Registration with known answers: sub-pixel shifts of periodic and non-periodic images,
masked registration that ignores a corrupted region, and the sign convention shared with
the Fourier shift (``fourier_shift(moving, dy, dx) ~ reference``)."""

import numpy as np
import pytest

from recon.operators import fourier_shift
from recon.registration import edge_taper, register_translation


def _smooth_image(n, seed, width=0.01):
    """(n, n) float64 random structure, low-pass filtered (periodic)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n)
    filt = np.exp(-(k[:, None] ** 2 + k[None] ** 2) / width)
    return np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * filt).real


def test_subpixel_shift_recovered():
    rng = np.random.default_rng(0)
    img = _smooth_image(96, seed=1)
    for _ in range(5):
        true = rng.uniform(-4, 4, size=2)
        moved = fourier_shift(img, true[0], true[1]).real
        dy, dx, err = register_translation(img, moved, upsample=100)
        # the shift that brings ``moved`` back is minus the imposed one
        assert abs(dy + true[0]) < 0.05 and abs(dx + true[1]) < 0.05
        assert err < 0.05
        back = fourier_shift(moved, dy, dx).real
        assert np.abs(back - img).max() < 0.05 * np.abs(img).max()


def test_subpixel_shift_of_cropped_non_periodic_images_with_taper():
    big = _smooth_image(160, seed=2, width=0.05)
    true = (2.37, -1.62)
    moved_big = fourier_shift(big, *true).real
    crop = (slice(32, 128), slice(32, 128))
    dy, dx, _ = register_translation(big[crop], moved_big[crop], upsample=100, taper=0.15)
    assert dy == pytest.approx(-true[0], abs=0.05)
    assert dx == pytest.approx(-true[1], abs=0.05)


def test_complex_fields_and_phase_correlation():
    img = _smooth_image(64, seed=3)
    field = np.exp(1j * img / img.std()) * (1 + 0.2 * img)
    moved = fourier_shift(field, -1.3, 0.45)
    for normalize in (False, True):
        dy, dx, _ = register_translation(field, moved, upsample=50, normalize=normalize)
        assert dy == pytest.approx(1.3, abs=0.05) and dx == pytest.approx(-0.45, abs=0.05)


def test_masked_registration_ignores_corrupted_region():
    ref = _smooth_image(96, seed=4)
    moved = np.roll(ref, (5, -3), axis=(0, 1))
    # a strong decoy in the top third of the moving image: the reference at another shift
    decoy = 10 * np.roll(ref, (-12, 17), axis=(0, 1))
    moved[:32] = decoy[:32]
    valid = np.ones(ref.shape, bool)
    valid[:32] = False
    dy, dx, err = register_translation(ref, moved, mask=valid)
    assert (dy, dx) == (-5.0, 3.0)
    assert np.isnan(err)
    # without the mask the decoy wins, so the mask is what makes the answer right
    dy0, dx0, _ = register_translation(ref, moved, upsample=1)
    assert (dy0, dx0) != (-5.0, 3.0)


def test_edge_taper_shape_and_values():
    w = edge_taper((40, 20), 0.1)
    assert w.shape == (40, 20)
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    assert w[20, 10] == 1.0 and w[0, 10] < 0.2 and w[20, 0] < 0.2
    np.testing.assert_allclose(w, w[::-1, ::-1])


def test_bad_input_rejected():
    with pytest.raises(ValueError):
        register_translation(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError):
        register_translation(np.zeros((8, 8)), np.zeros((8, 8)), upsample=0)
    with pytest.raises(ValueError):
        register_translation(np.ones((8, 8)), np.ones((8, 8)), mask=np.ones((4, 4), bool))
    with pytest.raises(ValueError):
        register_translation(np.ones((8, 8)) + 0j, np.ones((8, 8)), mask=np.ones((8, 8), bool))


def test_fourier_shift_per_image_matches_single_shifts():
    imgs = np.stack([_smooth_image(32, seed=s) for s in range(3)])
    shifts = np.array([[0.3, -1.2], [2.5, 0.0], [-0.7, 0.9]])
    batched = fourier_shift(imgs, shifts[:, 0], shifts[:, 1])
    assert batched.shape == imgs.shape and batched.dtype == np.complex128  # float64 in
    assert fourier_shift(imgs.astype(np.float32), 0.5, 0.5).dtype == np.complex64
    for k in range(3):
        single = fourier_shift(imgs[k], *shifts[k])
        np.testing.assert_allclose(batched[k], single, atol=1e-5)
    # a whole-pixel shift is a roll
    np.testing.assert_allclose(
        fourier_shift(imgs, 2.0, -1.0).real, np.roll(imgs, (2, -1), axis=(1, 2)), atol=1e-5
    )
