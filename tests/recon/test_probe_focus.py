"""Focus search: angular-spectrum propagation of the probe model, and the defocus chosen by
the data from a model that is out of focus."""

import numpy as np
import pytest
from synthetic_data import ENERGY, PIXEL, N, make

from recon.algorithms import Engine
from recon.geometry import wavelength_m
from recon.probe import ZonePlate, zone_plate_probe
from recon.probe_focus import central_frames, parabola_vertex, propagate_probe, search_focus

LAM = wavelength_m(ENERGY)


def test_propagation_matches_the_zone_plate_model_and_conserves_power():
    zp = ZonePlate()
    near = zone_plate_probe(zp, ENERGY, 25e-6, N, PIXEL)[None]
    far = zone_plate_probe(zp, ENERGY, 31e-6, N, PIXEL)[None]
    moved = propagate_probe(near, 6e-6, LAM, PIXEL)
    assert moved.shape == near.shape and moved.dtype == np.complex64
    assert np.linalg.norm(moved - far) < 1e-3 * np.linalg.norm(far)
    assert abs(np.sum(np.abs(moved) ** 2) - np.sum(np.abs(near) ** 2)) < 1e-4
    back = propagate_probe(moved, -6e-6, LAM, PIXEL)
    assert np.linalg.norm(back - near) < 1e-4 * np.linalg.norm(near)
    assert np.linalg.norm(moved - near) > 0.3 * np.linalg.norm(near)  # it did move


def test_parabola_vertex_and_central_frames():
    f = {x: (x - 0.3) ** 2 + 1 for x in (-1.0, 0.0, 1.0)}
    assert parabola_vertex(-1.0, 0.0, 1.0, f) == pytest.approx(0.3)
    g = {x: -(x**2) for x in (-1.0, 0.0, 1.0)}
    assert parabola_vertex(-1.0, 0.0, 1.0, g) == 0.0
    pos = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij"), -1).reshape(-1, 2)
    pick = central_frames(pos, 4)
    assert len(pick) == 4 and np.all(np.abs(pos[pick] - 4.5) <= 1)
    assert len(central_frames(pos[:3], 4)) == 3


@pytest.mark.parametrize("error", [0.2, -0.2])
def test_search_finds_the_defocus_of_the_data(error):
    """Data made with the probe at 30 um; the model is 20 % off. The search moves the model
    most of the way back, and the engine it was run on is left as it was."""
    s = make(n_side=7, seed=2, defocus=30e-6)
    model = zone_plate_probe(ZonePlate(), ENERGY, 30e-6 * (1 + error), N, PIXEL)
    model *= np.float32(np.sqrt(1e6))
    e = Engine(s.intensities, s.positions, model[None], s.obj.shape)
    before = e.probe.copy()
    found = search_focus(e, 0.25 * 30e-6 * (1 + error), LAM, PIXEL, iterations=15)
    assert abs(found.dz_m + error * 30e-6) < 0.3 * abs(error) * 30e-6
    assert found.deviance < 0.8 * found.deviance_at_zero
    assert len(found.tried) >= 5 and "focus search" in found.message()
    np.testing.assert_array_equal(e.probe, before)
    assert e.iteration == 0
