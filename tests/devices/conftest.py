"""Fixtures: the simulated beamline IOC in a subprocess on loopback, and its ophyd devices.

The CA client environment is set here, at import, before pyepics starts its context.
"""

from __future__ import annotations

import pytest

from simulators.ioc.testing import IOCProcess, configure_client

CA_PORT = configure_client()


@pytest.fixture(scope="module")
def ioc(request: pytest.FixtureRequest):
    """One IOC per test module, with a prefix of its own (PV objects are cached by name)."""
    stem = request.module.__name__.rsplit(".", 1)[-1].replace("test_", "")
    prefix = f"T{stem[:12]}:"
    with IOCProcess(prefix, args=["--pol-time", "0.3", "--seed", "3"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def beamline(ioc: IOCProcess, tmp_path_factory: pytest.TempPathFactory):
    """All devices of the beamline, connected to the module's IOC."""
    from devices.beamline import make_beamline

    data_dir = tmp_path_factory.mktemp("frames")
    return make_beamline(ioc.prefix, data_dir=str(data_dir), timeout=30)
