"""Ophyd devices of the STXM ptychography beamline (Channel Access through pyepics).

This package imports nothing of the project. Lengths of stages are in um, energies in eV.
"""

from devices.beam import BeamMonitor, Shutter
from devices.beamline import Beamline, make_beamline
from devices.camera import FrameDroppedError, SCMOSCamera
from devices.motors import Motor, OSAStage, SampleStage, ZonePlateStage
from devices.optics import EnergyFocus, Monochromator, Polarization, ZonePlateOptics

__all__ = [
    "Beamline",
    "BeamMonitor",
    "EnergyFocus",
    "FrameDroppedError",
    "Monochromator",
    "Motor",
    "OSAStage",
    "Polarization",
    "SCMOSCamera",
    "SampleStage",
    "Shutter",
    "ZonePlateOptics",
    "ZonePlateStage",
    "make_beamline",
]
