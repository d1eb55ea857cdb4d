"""The I0 diode model: photocurrent <-> flux through the diode's efficiency at the energy."""

import math

import pytest

from recon.flux_monitor import ELEMENTARY_CHARGE_C, SILICON_PAIR_EV, DiodeMonitor


def test_current_and_flux_are_inverse_and_scale_with_the_energy():
    d = DiodeMonitor()
    for energy in (150.0, 192.0, 550.0, 706.0, 1200.0):
        current = d.current_a(1e8, energy)
        assert d.flux_ph_s(current, energy) == pytest.approx(1e8, rel=1e-12)
        # q (E / w) efficiency per photon per second
        pairs = energy / SILICON_PAIR_EV * d.efficiency(energy)
        assert current == pytest.approx(1e8 * ELEMENTARY_CHARGE_C * pairs, rel=1e-12)
    # 100 % efficient, 1e8 ph/s at 706 eV is 3.09 nA (by hand: 1e8 * 1.602e-19 * 706 / 3.66)
    ideal = DiodeMonitor(dead_layer_m=0.0, active_m=1.0)
    assert ideal.efficiency(706.0) == pytest.approx(1.0, abs=1e-9)
    assert ideal.current_a(1e8, 706.0) == pytest.approx(3.090e-9, rel=1e-3)


def test_efficiency_follows_the_dead_layer_and_the_active_depth():
    thin, thick = DiodeMonitor(dead_layer_m=5e-9), DiodeMonitor(dead_layer_m=50e-9)
    for energy in (192.0, 706.0):
        assert 0.0 < thick.efficiency(energy) < thin.efficiency(energy) <= 1.0
    # just above the O K edge (543 eV) the oxide absorbs more than just below it
    below, above = (
        math.log(DiodeMonitor(dead_layer_m=50e-9, active_m=1.0).efficiency(e)) for e in (530, 560)
    )
    assert above < below
    # a shallow diode misses penetrating photons: at 1500 eV, just below the Si K edge
    # (1839 eV) where silicon is most transparent, 1 um absorbs much less than 10 um
    assert DiodeMonitor(active_m=1e-6).efficiency(1500.0) < 0.5 * DiodeMonitor().efficiency(1500.0)
    assert DiodeMonitor(fraction=0.01).current_a(1e8, 706.0) == pytest.approx(
        0.01 * DiodeMonitor().current_a(1e8, 706.0)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dead_layer_m=-1e-9), "dead_layer_m"),
        (dict(active_m=0.0), "active_m must be > 0"),
        (dict(fraction=1.5), "fraction in"),
        (dict(active_m=float("nan")), "active_m must be a finite"),
    ],
)
def test_bad_diodes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiodeMonitor(**kwargs)


@pytest.mark.parametrize("energy", [0.0, -5.0, 50.0, float("nan"), 2e5])  # tables: from 100 eV
def test_energies_outside_the_tables_are_refused(energy):
    with pytest.raises(ValueError, match="energy must be"):
        DiodeMonitor().flux_ph_s(1e-9, energy)
