"""Data preparation: photons, bad pixels, crop, positions, initial probe; CXI input errors."""

import h5py
import numpy as np
import pytest
from synthetic_data import PIXEL, make, ptychogram

from recon.cxi import TRANSLATION, CXIError, read_cxi, write_cxi
from recon.prepare import crop_window, prepare, probe_from_data, to_photons


@pytest.fixture(scope="module")
def synth():
    return make(n_side=4, poisson=True)


def test_to_photons_dark_gain_threshold_and_bad_pixels():
    frames = np.full((3, 8, 8), 110, np.uint16)
    frames[:, 2, 2] = 65535  # saturated
    frames[1, 4, 4] = 113  # 1.5 photons above dark
    frames[2, 5, 5] = 111  # 0.5 photon: kept (threshold is "below")
    frames[0, 6, 6] = 110
    photons, bad, counts = to_photons(frames, np.full((8, 8), 110.0), 2.0, threshold=0.6)
    assert counts == {"nan": 0, "saturated": 1}
    assert bad[2, 2] and bad.sum() == 1
    assert photons[1, 4, 4] == pytest.approx(1.5)
    assert photons[2, 5, 5] == 0  # 0.5 < 0.6 threshold
    assert photons[:, 2, 2].max() == 0
    f = frames.astype(np.float32)
    f[0, 1, 1] = np.nan
    _, bad, counts = to_photons(f, None, 1.0)
    assert counts["nan"] == 1 and bad[1, 1]


def test_prepare_photons_positions_pixel_and_probe(synth):
    p = ptychogram(synth)
    data, _ = prepare(p)
    assert data.pixel_size_m == pytest.approx(PIXEL, rel=1e-9)
    # corners = positions / pixel + origin, within 1e-6 px of the truth up to the origin
    d = data.corners_px - synth.positions
    assert np.ptp(d, axis=0).max() < 1e-6
    assert data.corners_px.min() >= 8 - 1e-9
    assert data.obj_shape[0] >= data.corners_px[:, 0].max() + 64 + 8
    # photons back in FFT order (dark and gain removed, within read noise + rounding)
    np.testing.assert_allclose(data.intensities, synth.intensities, atol=1.0)
    assert data.report["probe_source"] == "zone_plate"
    total = np.sum(np.abs(data.probe) ** 2)
    assert total == pytest.approx(data.intensities.sum(axis=(1, 2)).mean(), rel=1e-3)


def test_probe_sources(synth):
    p = ptychogram(synth, zone_plate=False)
    data, _ = prepare(p)
    assert data.report["probe_source"] == "data"
    p.illumination = synth.probe
    data, _ = prepare(p, probe_modes=2)
    assert data.report["probe_source"] == "illumination"
    assert data.probe.shape == (2, 64, 64)
    assert np.sum(np.abs(data.probe) ** 2) == pytest.approx(
        data.intensities.sum(axis=(1, 2)).mean(), rel=1e-3
    )


def test_probe_from_data_is_centred_disc():
    mean = np.zeros((32, 32))
    mean[14:19, 14:19] = 100.0
    probe = probe_from_data(mean, np.zeros((32, 32), bool))
    inten = np.abs(probe) ** 2
    y, x = np.indices(inten.shape)
    assert (inten * y).sum() / inten.sum() == pytest.approx(16, abs=0.6)
    assert inten[0, 0] == 0


def test_crop_and_bin_around_diffraction_centre(synth):
    p = ptychogram(synth)
    # move the pattern 3 pixels down/right inside a larger frame
    big = np.full((len(p.frames), 80, 80), 100, np.uint16)
    big[:, 11:75, 11:75] = p.frames
    p2 = type(p)(
        frames=big,
        positions_m=p.positions_m,
        energy_ev=p.energy_ev,
        distance_m=p.distance_m,
        pixel_m=p.pixel_m,
        dark=np.full((80, 80), 100, np.float32),
        counts_per_photon=p.counts_per_photon,
    )
    data, _ = prepare(p2, frame_size=64)
    assert data.window[:2] == (11, 11)
    np.testing.assert_allclose(data.intensities, synth.intensities, atol=1.0)
    binned, _ = prepare(p2, frame_size=32, binning=2)
    assert binned.intensities.shape[1:] == (32, 32)
    assert binned.pixel_size_m == pytest.approx(PIXEL, rel=1e-9)  # lambda z / (N p) unchanged
    cropped, _ = prepare(p2, frame_size=32)
    assert cropped.pixel_size_m == pytest.approx(2 * PIXEL, rel=1e-9)
    assert crop_window((80, 80), (0.0, 79.0), 32) == (0, 48, 32, 1)
    with pytest.raises(CXIError, match="larger than the frames"):
        prepare(p2, frame_size=128)


def test_cxi_translation_n3_and_3n_give_same_positions(tmp_path, synth):
    p = ptychogram(synth)
    a = write_cxi(tmp_path / "a.cxi", p, compression=None)
    b = write_cxi(tmp_path / "b.cxi", p, compression=None)
    with h5py.File(b, "r+") as h:
        t = h[TRANSLATION][()]
        del h[TRANSLATION]
        h[TRANSLATION] = t.T  # PyNX's (3, N)
    pa, pb = read_cxi(a), read_cxi(b)
    assert pa.positions_m.shape == (16, 2)
    np.testing.assert_array_equal(pa.positions_m, pb.positions_m)
    np.testing.assert_allclose(pa.positions_m, p.positions_m)
    da, _ = prepare(pa)
    db, _ = prepare(pb)
    np.testing.assert_array_equal(da.corners_px, db.corners_px)


def _one_line(err):
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


def test_bad_cxi_files_raise_one_line_errors(tmp_path, synth):
    p = ptychogram(synth)
    path = write_cxi(tmp_path / "ok.cxi", p, compression=None)
    with h5py.File(path, "r+") as h:  # NaN frames
        data = h["entry_1/instrument_1/detector_1/data"][()].astype(np.float32)
        data[2, 3, 3] = np.nan
        del h["entry_1/instrument_1/detector_1/data"]
        h["entry_1/instrument_1/detector_1/data"] = data
    with pytest.raises(CXIError) as err:
        read_cxi(path)
    assert "NaN" in _one_line(err)
    path = write_cxi(tmp_path / "shape.cxi", p, compression=None)
    with h5py.File(path, "r+") as h:  # wrong mask shape
        del h["entry_1/instrument_1/detector_1/mask"]
        h["entry_1/instrument_1/detector_1/mask"] = np.zeros((5, 5), np.uint8)
    with pytest.raises(CXIError) as err:
        read_cxi(path)
    assert "mask shape" in _one_line(err)
    for key in ("entry_1/instrument_1/source_1/energy", TRANSLATION):
        path = write_cxi(tmp_path / "missing.cxi", p, compression=None)
        with h5py.File(path, "r+") as h:
            del h[key]
            if key == TRANSLATION:
                del h["entry_1/data_1/translation"]
        with pytest.raises(CXIError) as err:
            read_cxi(path)
        assert "missing dataset" in _one_line(err)
    (tmp_path / "junk.cxi").write_text("not hdf5")
    with pytest.raises(CXIError) as err:
        read_cxi(tmp_path / "junk.cxi")
    _one_line(err)


def test_prepare_rejects_empty_data(synth):
    p = ptychogram(synth)
    p.frames = np.full_like(p.frames, 100)
    with pytest.raises(CXIError, match="no photons"):
        prepare(p)
