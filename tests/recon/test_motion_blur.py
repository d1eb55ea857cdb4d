"""Fly-scan motion blur: the stage moves about one scan step along x during each exposure.

One probe mode cannot describe such frames; a few incoherent modes, started from the
zone-plate model dragged along the path (:func:`recon.motion.blurred_probe_modes`), recover
the object. Frames come from the IOC camera's physics (:class:`FrameEngine`, Poisson and read
noise, dark, hot pixels); the reconstruction's zone-plate model is 12 % off in defocus, so
neither the probe nor its modes start from the truth. ``probe_modes_for_blur`` is checked
against the same numbers.
"""

from dataclasses import replace

import numpy as np
import pytest

from recon.cxi import Ptychogram
from recon.geometry import binning_for_zone_plate_cone
from recon.metrics import phase_correlation
from recon.motion import blur_mode_powers, blurred_probe_modes, probe_modes_for_blur
from recon.prepare import prepare
from recon.probe import ZonePlate, zone_plate_probe
from recon.reconstruction import Reconstruction
from simulators.ioc.physics import BeamState, FrameEngine

ENERGY = 192.0
FRAME = 64
SPOT = 1e-6  # nominal spot: what the reconstruction's zone-plate model assumes
DEFOCUS_ERROR = 1.12  # the beamline's true defocus is 12 % larger (spot ~1.12 um)
OVERLAP = 0.8
STEP = SPOT * (1 - OVERLAP)  # 200 nm
SIDE = 10  # 10 x 10 snake raster
DUTY = 0.97  # exposure / trigger period: the probe travels 0.97 steps per exposure
BLUR = DUTY * STEP  # 194 nm = 3.9 outermost zone widths
SUBSTEPS = 8  # beam states per exposure in the simulation
EXPOSURE = 0.1
POSITION_NOISE = 3e-9  # encoder error of the mid-exposure positions (m)
ALGORITHM = "AP**100,ML**200"
MODES = 4  # what probe_modes_for_blur gives for BLUR (3 modes reach only ~0.82)


def _scan(engine, moving):
    """Snake raster ptychogram (mid-exposure positions) and the beam state of its optics."""
    zp = engine.zone_plate
    nominal = zp.defocus_m(SPOT, ENERGY)
    z = zp.focal_length_m(ENERGY) + DEFOCUS_ERROR * nominal
    base = BeamState(ENERGY, "LH", 0.0, 0.0, 0.0, 0.0, z, 0.0, True, 1e8)
    binning = binning_for_zone_plate_cone(
        ENERGY, engine.distance_m, zp.outermost_zone_width, FRAME, engine.detector.pixel_m
    )
    rng = np.random.default_rng(7 if moving else 8)
    grid = (np.arange(SIDE) - (SIDE - 1) / 2) * STEP
    frames, positions = [], []
    for row, y in enumerate(grid):
        sense = 1.0 if row % 2 == 0 else -1.0  # snake: every other line runs back
        for x in grid[:: int(sense)]:
            k = SUBSTEPS if moving else 1
            travel = ((np.arange(k) + 0.5) / k - 0.5) * (BLUR if moving else 0.0) * sense
            states = [replace(base, sample_x_m=float(x + t), sample_y_m=float(y)) for t in travel]
            frame, geom = engine.frame_along(states, FRAME, binning, EXPOSURE)
            frames.append(frame)
            positions.append((y, x))
    positions = np.array(positions) + rng.normal(0, POSITION_NOISE, (len(positions), 2))
    p = Ptychogram(
        frames=np.stack(frames),
        positions_m=positions,
        energy_ev=ENERGY,
        distance_m=engine.distance_m,
        pixel_m=engine.detector.pixel_m * binning,
        mask=engine.detector.hot_pixel_count(FRAME, binning) > 0,
        dark=engine.detector.mean_dark(EXPOSURE, FRAME, binning).astype(np.float32),
        counts_per_photon=engine.detector.counts_per_photon(ENERGY),
        zone_plate={
            "outer_diameter": zp.outer_diameter,
            "outermost_zone_width": zp.outermost_zone_width,
            "central_stop_diameter": zp.central_stop_diameter,
            "defocus": nominal,
        },
        polarization="LH",
    )
    return p, base, geom


def _truth_on_recon_grid(engine, base, geom, rec):
    """The simulator's transmission cut to the reconstruction's object grid (integer part of
    the offset; :func:`phase_correlation` registers the rest)."""
    assert geom.upsample == 1 and abs(geom.pixel_m - rec.data.pixel_size_m) < 1e-15
    obj, centre = engine.object_window(base, geom)
    # patch corner: position / pixel + centre - n // 2 in the simulator, + origin in recon
    y0, x0 = np.round(np.asarray(centre) - FRAME // 2 - rec.data.origin_px).astype(int)
    h, w = rec.engine.obj_shape
    out = np.ones((h, w), np.complex64)
    ys = slice(max(0, y0), min(obj.shape[0], y0 + h))
    xs = slice(max(0, x0), min(obj.shape[1], x0 + w))
    out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = obj[ys, xs]
    return out


def _reconstruct(engine, scan, modes):
    """Phase correlation to the truth in the lit region, and the final log-likelihood."""
    p, base, geom = scan
    data, _ = prepare(p, probe_modes=1)
    assert data.report["probe_source"] == "zone_plate"
    if modes > 1:
        data.probe = blurred_probe_modes(data.probe[0], BLUR / data.pixel_size_m, modes)
    rec = Reconstruction(data, algorithm=ALGORITHM, backend="numpy")
    res = rec.run()
    lit = res.illumination > 0.3 * res.illumination.max()
    corr = phase_correlation(res.object, _truth_on_recon_grid(engine, base, geom, rec), lit)
    return corr, float(res.llk[-1])


@pytest.fixture(scope="module")
def engine():
    return FrameEngine("bn-bamboo", seed=1, area_m=2e-6)


@pytest.fixture(scope="module")
def results(engine):
    still = _scan(engine, moving=False)
    moving = _scan(engine, moving=True)
    return {
        "still, 1 mode": _reconstruct(engine, still, 1),
        "moving, 1 mode": _reconstruct(engine, moving, 1),
        f"moving, {MODES} modes": _reconstruct(engine, moving, MODES),
    }


def test_the_model_probe_is_not_the_truth(engine):
    """No inverse crime: the zone-plate model the reconstruction starts from is 12 % off in
    defocus, far from the simulator's probe."""
    zp = engine.zone_plate
    binning = binning_for_zone_plate_cone(
        ENERGY, engine.distance_m, zp.outermost_zone_width, FRAME, engine.detector.pixel_m
    )
    geom = engine.geometry(FRAME, binning, ENERGY)
    nominal = zp.defocus_m(SPOT, ENERGY)
    model = zone_plate_probe(zp, ENERGY, nominal, FRAME, geom.pixel_m)
    truth = zone_plate_probe(zp, ENERGY, DEFOCUS_ERROR * nominal, FRAME, geom.pixel_m)
    assert abs(np.vdot(model, truth)) < 0.95  # both unit norm; measured 0.88


def test_still_frames_need_one_mode(results):
    corr, _ = results["still, 1 mode"]
    assert corr >= 0.95, results  # measured 0.98-0.99


def test_motion_blur_spoils_a_one_mode_reconstruction(results):
    still, _ = results["still, 1 mode"]
    blurred, _ = results["moving, 1 mode"]
    assert blurred <= 0.85, results  # measured 0.65-0.70
    assert still - blurred >= 0.15, results


def test_probe_modes_recover_motion_blur(results):
    one, llk_one = results["moving, 1 mode"]
    many, llk_many = results[f"moving, {MODES} modes"]
    assert many >= 0.9, results  # measured 0.95-0.97
    assert many - one >= 0.15, results
    assert llk_many < 0.5 * llk_one, results  # the modes describe the frames (2.6 vs 13-21)


def test_probe_modes_for_blur():
    dr, pixel = 50e-9, 42.8e-9
    assert probe_modes_for_blur(0.0, dr, pixel) == 1
    assert probe_modes_for_blur(0.4 * pixel, dr, pixel) == 1  # sub-pixel travel
    assert probe_modes_for_blur(BLUR, dr, pixel) == MODES  # the blur of the scans above
    assert probe_modes_for_blur(BLUR / 2, dr, pixel) == 3  # 1.9 dr (0.99 measured with 3)
    blurs = np.linspace(0, 10 * dr, 41)
    counts = [probe_modes_for_blur(b, dr, pixel, maximum=10) for b in blurs]
    assert counts == sorted(counts) and counts[0] == 1 and counts[-1] == 10
    assert probe_modes_for_blur(BLUR, dr, pixel, maximum=3) == 3
    assert probe_modes_for_blur(0.0, dr, pixel, minimum=2) == 2
    assert probe_modes_for_blur(1e-6, dr, pixel) == 6  # capped
    # a coarser pixel cuts the probe's bandwidth: fewer modes for the same blur
    assert probe_modes_for_blur(BLUR, dr, 100e-9) < MODES
    # the power is independent of the spot: MODES modes hold >= 95 % of this blur
    powers = blur_mode_powers(BLUR, dr, pixel)
    assert powers.sum() == pytest.approx(1.0)
    assert np.all(np.diff(powers) <= 1e-12)
    assert powers[: MODES - 1].sum() < 0.95 <= powers[:MODES].sum()
    with pytest.raises(ValueError):
        probe_modes_for_blur(BLUR, dr, pixel, minimum=3, maximum=2)
    with pytest.raises(ValueError):
        probe_modes_for_blur(-1e-9, dr, pixel)


def test_blurred_probe_modes_are_the_incoherent_sum_along_the_path():
    probe = zone_plate_probe(ZonePlate(), ENERGY, 20e-6, 48, 40e-9) * np.float32(30.0)
    blur = 4.5  # pixels along x
    modes = blurred_probe_modes(probe, blur, 40, samples=16)  # all of them: exact
    gram = np.einsum("kyx,lyx->kl", modes.conj(), modes)
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-4 * np.abs(gram).max()  # orthogonal
    assert np.all(np.diff(np.diag(gram).real) <= 1e-3 * gram[0, 0].real)  # strongest first
    k = np.fft.fftfreq(48)[None, :]
    ft = np.fft.fft2(probe)
    travel = ((np.arange(16) + 0.5) / 16 - 0.5) * blur
    blurred = np.mean(
        [np.abs(np.fft.ifft2(ft * np.exp(-2j * np.pi * t * k))) ** 2 for t in travel], axis=0
    )
    incoherent = (np.abs(modes) ** 2).sum(axis=0)
    np.testing.assert_allclose(incoherent, blurred, atol=1e-4 * blurred.max())
    # fewer modes keep the total power; no blur gives the probe itself
    four = blurred_probe_modes(probe, blur, 4)
    assert (np.abs(four) ** 2).sum() == pytest.approx((np.abs(probe) ** 2).sum(), rel=1e-4)
    still = blurred_probe_modes(probe, 0.0, 2)
    phase = np.vdot(still[0], probe)
    np.testing.assert_allclose(
        still[0] * phase / abs(phase), probe, atol=1e-4 * np.abs(probe).max()
    )
    assert np.abs(still[1]).max() < 1e-4 * np.abs(probe).max()
