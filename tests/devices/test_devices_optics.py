"""Focus relations of the devices layer agree with the physics of recon; motion profiles."""

import pytest

from devices.motors import travel_time_s
from devices.optics import ZonePlateOptics
from recon.probe import ZonePlate
from simulators.ioc.motors import trapezoid


@pytest.mark.parametrize("energy", [180.0, 192.0, 285.0, 706.0, 1500.0])
def test_focal_length_and_defocus_match_recon(energy):
    dev, zp = ZonePlateOptics(), ZonePlate()
    assert dev.focal_length_m(energy) == pytest.approx(zp.focal_length_m(energy), rel=1e-12)
    for spot in (0.1e-6, 1e-6, 3e-6):
        assert dev.defocus_m(spot, energy) == pytest.approx(zp.defocus_m(spot, energy), rel=1e-12)
        dz = dev.defocus_m(spot, energy)
        assert dev.spot_m(dz, energy) == pytest.approx(zp.spot_size_m(dz, energy), rel=1e-12)


def test_zone_plate_z_round_trip_and_numbers():
    dev = ZonePlateOptics()
    # f = D dr / lambda = 240 um * 50 nm / 6.4575 nm = 1.8584 mm at 192 eV.
    assert dev.focal_length_m(192.0) == pytest.approx(1.8584e-3, rel=1e-4)
    z = dev.zp_z_um(1.0, 192.0)
    assert z == pytest.approx((1.8584e-3 + 1e-6 * 1.8584e-3 / 240e-6) * 1e6, rel=1e-3)
    assert dev.spot_um(z, 192.0) == pytest.approx(1.0, rel=1e-9)
    with pytest.raises(ValueError, match="smaller than the focus"):
        dev.defocus_m(10e-9, 192.0)


@pytest.mark.parametrize(
    ("distance", "velocity", "accel"), [(0.0, 1.0, 0.1), (10.0, 100.0, 0.0), (50.0, 500.0, 0.05)]
)
def test_travel_time_matches_ioc_trapezoid(distance, velocity, accel):
    duration, travelled = trapezoid(distance, velocity, accel)
    assert travel_time_s(distance, velocity, accel) == pytest.approx(duration, abs=1e-12)
    assert travelled(duration) == pytest.approx(distance)
    assert travelled(duration / 2) == pytest.approx(distance / 2)


def test_short_move_never_reaches_cruise_speed():
    duration, travelled = trapezoid(1.0, 100.0, 0.5)  # would need 25 um to reach 100 um/s
    accel = 100.0 / 0.5
    assert duration == pytest.approx(2 * (1.0 / accel) ** 0.5)
    assert travelled(duration / 4) == pytest.approx(0.5 * accel * (duration / 4) ** 2)
