"""Simulated beamline IOC (caproto): motors, optics, shutter, beam monitors and camera.

Start it with ``sptycho ioc --prefix SIM: --sample bn-bamboo`` or
``python -m simulators.ioc --prefix SIM: --port 5064``; see :mod:`simulators.ioc.beamline`
for the PV list.
"""

from simulators.ioc.beamline import BeamlineIOC, run_ioc

__all__ = ["BeamlineIOC", "run_ioc"]
