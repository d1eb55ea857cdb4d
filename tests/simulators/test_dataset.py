"""Simulated ptychograms: physics of the frames and the CXI round trip."""

import numpy as np
import pytest
from pydantic import ValidationError

from recon.cxi import read_cxi, write_cxi
from recon.probe import radial_profile
from simulators.dataset import Simulation, SimulationParams, simulate_ptychogram

SMALL = dict(area_m=0.4e-6, frame_size=64, n_dark=5)
EDGES = [
    ("siemens-star", 280.0, "LH", 0.3e-6, 0.7),
    ("bn-bamboo", 192.0, "LV", 0.5e-6, 0.8),
    ("cnt-bundle", 285.2, "LH", 0.5e-6, 0.8),
    ("permalloy-rods", 706.0, "CR", 0.1e-6, 0.5),
]


@pytest.mark.parametrize("sample, energy, pol, spot, overlap", EDGES)
def test_cxi_round_trip_for_each_sample_at_its_edge(tmp_path, sample, energy, pol, spot, overlap):
    p = simulate_ptychogram(
        sample=sample,
        energy_ev=energy,
        polarization=pol,
        spot_m=spot,
        overlap=overlap,
        seed=3,
        **SMALL,
    )
    path = write_cxi(tmp_path / f"{sample}.cxi", p)
    q = read_cxi(path)
    assert np.array_equal(q.frames, p.frames)
    assert q.frames.dtype == p.frames.dtype
    assert np.allclose(q.positions_m, p.positions_m)
    assert q.energy_ev == pytest.approx(energy)
    assert q.distance_m == pytest.approx(p.distance_m)
    assert q.pixel_m == pytest.approx(p.pixel_m)
    assert np.array_equal(q.mask, p.mask)
    assert np.allclose(q.dark, p.dark)
    assert q.counts_per_photon == pytest.approx(p.counts_per_photon)
    assert q.polarization == pol
    assert q.zone_plate["defocus"] == pytest.approx(p.zone_plate["defocus"])
    assert np.array_equal(q.truth["object"], p.truth["object"])
    assert q.truth["sample"] == sample
    assert q.truth["object_pixel_size"] == pytest.approx(p.truth["object_pixel_size"])
    # The sample is not empty: its transmission varies.
    assert np.std(np.abs(p.truth["object"])) > 1e-3


def test_frames_hold_the_expected_photons_and_the_dark_offset():
    sim = Simulation(
        SimulationParams(
            sample="bn-bamboo",
            energy_ev=192.0,
            seed=1,
            **{k: v for k, v in SMALL.items() if k != "n_dark"},
        )
    )
    det = sim.detector
    cpp = det.counts_per_photon(192.0)
    expected = np.stack([sim.expected_photons(i) for i in range(4)])
    frames = np.stack([sim.frame(i) for i in range(4)]).astype(float)
    dark = sim.detector.mean_dark(0.1, 64, sim.binning)
    photons = (frames - dark) / cpp
    assert photons.sum() == pytest.approx(expected.sum(), rel=0.02)
    # Unitary propagation: the far field holds every photon of the probe times |object|^2.
    assert expected[0].sum() <= sim.params.flux_ph_s * sim.params.exposure_s * 1.001
    # Dark frames average to the offset: ~200 counts per raw pixel in 100 ms.
    darks = np.stack([sim.dark_frame() for _ in range(3)]).astype(float)
    cold = ~sim.mask()
    assert darks[:, cold].mean() / sim.binning**2 == pytest.approx(200.0, rel=0.03)


def test_bright_field_is_the_zone_plate_annulus_centred_on_the_detector():
    sim = Simulation(
        SimulationParams(
            sample="bn-bamboo",
            energy_ev=192.0,
            spot_m=1e-6,
            area_m=0.2e-6,
            frame_size=128,
            seed=2,
        )
    )
    mean = np.mean([sim.expected_photons(i) for i in range(sim.n_points)], axis=0)
    n = 128
    yy, xx = np.indices(mean.shape)
    cy, cx = (mean * yy).sum() / mean.sum(), (mean * xx).sum() / mean.sum()
    assert abs(cy - n // 2) < 1.0 and abs(cx - n // 2) < 1.0
    prof = radial_profile(mean)
    lit = np.nonzero(prof > 0.25 * np.median(prof[prof > 0.1 * prof.max()]))[0]
    # Pupil radius on the detector: k_out = 1 / (2 dr) in units of 1 / (n dx).
    r_out = n * sim.pixel_m / (2 * 50e-9)
    assert lit.max() == pytest.approx(r_out, rel=0.06)
    inner = lit[lit > 2].min()  # skip the sample's forward scattering at the very centre
    assert inner == pytest.approx(0.3 * r_out, rel=0.15)


def test_same_seed_same_data_other_seed_other_noise():
    a = simulate_ptychogram(seed=5, **SMALL)
    b = simulate_ptychogram(seed=5, **SMALL)
    c = simulate_ptychogram(seed=6, **SMALL)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(energy_ev=50.0), "greater than or equal to 100"),
        (dict(overlap=1.0), "less than 1"),
        (dict(sample="unicorn"), "unknown sample"),
        (dict(spot_m=10e-9), "smaller than the zone plate focus"),
        (dict(spot_m=100e-9, overlap=0.99, area_m=20e-6), "scan points"),
        (dict(polarization="XY"), "polarization"),
        (dict(exposure_s=0.0), "greater than 0"),
    ],
)
def test_bad_parameters_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        SimulationParams(**bad)


def test_hermes_description_axes_for_a_raster_and_points_with_jitter(tmp_path):
    import h5py

    from recon.hermes import orient, read_positions
    from simulators.hermes_layout import to_camera, write_description

    frames = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    np.testing.assert_array_equal(orient(to_camera(frames)), frames)
    for jitter, n_x in ((0.0, 5), (20e-9, 25)):
        sim = Simulation(SimulationParams(jitter_m=jitter, **SMALL))
        path = write_description(tmp_path / f"d{n_x}.hdf5", sim.positions_m, 192.0)
        with h5py.File(path) as h:
            assert h["entry1/camera/sample_x"].shape == (n_x,)
        np.testing.assert_allclose(read_positions(path, sim.n_points), sim.positions_m, atol=1e-15)
