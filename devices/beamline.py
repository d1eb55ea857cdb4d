"""All devices of the STXM ptychography beamline, built from one IOC prefix.

>>> bl = make_beamline("SIM:")                       # doctest: +SKIP
>>> bl.optics.energy.set(710).wait()                 # doctest: +SKIP  (zone plate z follows)
>>> bl.undulator.set("CR").wait()                    # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

from ophyd import Device

from devices.beam import BeamMonitor, Shutter
from devices.camera import SCMOSCamera
from devices.motors import OSAStage, SampleStage, ZonePlateStage
from devices.optics import EnergyFocus, Polarization, ZonePlateOptics
from devices.scanner import PiezoScanner


@dataclass
class Beamline:
    """The beamline's ophyd devices.

    Attributes
    ----------
    sample : sample stage, coarse ``cx/cy`` and piezo ``fx/fy`` (um)
    zp : zone plate stage ``x/y/z`` (um; ``z`` is the zone plate to sample distance)
    osa : OSA stage ``x/y`` (um)
    optics : energy (eV) and spot size (um) with zone plate z tracking; ``optics.mono``
        is the monochromator, ``optics.zp_z`` the zone plate z motor
    undulator : polarization positioner (``LH``, ``LV``, ``CL``, ``CR``)
    shutter : exit shutter
    monitor : I0 flux and ring current
    camera : sCMOS camera with HDF5 file writer
    scanner : piezo scan controller (hardware-timed trajectories on ``sample.fx/fy``,
        camera triggers, encoder capture)
    """

    sample: SampleStage
    zp: ZonePlateStage
    osa: OSAStage
    optics: EnergyFocus
    undulator: Polarization
    shutter: Shutter
    monitor: BeamMonitor
    camera: SCMOSCamera
    scanner: PiezoScanner

    def devices(self) -> list[Device]:
        """Every device, in field order."""
        return [getattr(self, f.name) for f in fields(self)]

    def wait_for_connection(self, timeout: float = 10.0) -> None:
        """Wait until every PV is connected.

        Raises
        ------
        TimeoutError
            Naming the prefix and the first PVs that did not connect.
        """
        deadline = time.monotonic() + timeout
        missing: list[str] = []
        for device in self.devices():
            left = max(deadline - time.monotonic(), 0.05)
            try:
                device.wait_for_connection(timeout=left)
            except TimeoutError:
                missing.extend(_unconnected(device))
        if missing:
            shown = ", ".join(missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise TimeoutError(
                f"beamline PVs did not connect within {timeout:g} s: {shown}{more}; "
                "is the IOC running with this prefix, and does EPICS_CA_ADDR_LIST reach it?"
            )

    def disconnect(self) -> None:
        """Close every device's Channel Access channels (end of a session).

        Without it, an IOC that stops before this process exits makes libca print a
        "Virtual circuit disconnect" banner on the terminal. The devices are unusable after.
        """
        for device in self.devices():
            try:
                device.destroy()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                continue


def _unconnected(device: Device) -> list[str]:
    """PV names of the device's signals that are not connected."""
    names = []
    for walked in device.walk_signals(include_lazy=True):
        signal = walked.item
        if not getattr(signal, "connected", True):
            pv = getattr(signal, "pvname", None) or signal.name
            names.append(str(pv))
    return names


def make_beamline(
    prefix: str = "SIM:",
    *,
    connect: bool = True,
    timeout: float = 10.0,
    data_dir: str = "/tmp/sptycho/frames",
    read_dir: str | None = None,
    optics: ZonePlateOptics | None = None,
    **camera_kwargs: Any,
) -> Beamline:
    """Build (and by default connect) every device of the beamline.

    Parameters
    ----------
    prefix : IOC prefix, e.g. ``SIM:``
    connect : wait for every PV to connect before returning
    timeout : connection timeout (s)
    data_dir : directory the camera IOC writes HDF5 files into
    read_dir : the same directory as seen by readers (``data_dir`` when None)
    optics : zone plate parameters for the focus relations
    **camera_kwargs : extra :class:`SCMOSCamera` arguments (``frame_timeout_s``)

    Returns
    -------
    Beamline

    Raises
    ------
    TimeoutError
        When ``connect`` and some PV does not connect within ``timeout``; the message names
        the PVs.
    """
    bl = Beamline(
        sample=SampleStage(f"{prefix}sample:", name="sample"),
        zp=ZonePlateStage(f"{prefix}zp:", name="zp"),
        osa=OSAStage(f"{prefix}osa:", name="osa"),
        optics=EnergyFocus(prefix, name="optics", optics=optics),
        undulator=Polarization(prefix, name="polarization"),
        shutter=Shutter(prefix, name="shutter"),
        monitor=BeamMonitor(prefix, name="beam"),
        camera=SCMOSCamera(
            prefix, name="camera", write_dir=data_dir, read_dir=read_dir, **camera_kwargs
        ),
        scanner=PiezoScanner(f"{prefix}scan:", name="scanner"),
    )
    if connect:
        bl.wait_for_connection(timeout)
    return bl
