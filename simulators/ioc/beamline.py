"""The simulated STXM ptychography beamline: every PV of the beamline in one caproto IOC.

PVs (``P`` is the prefix, e.g. ``SIM:``):

=============================  ==========================================================
``P{sample,zp,osa}:..``        motor records (``.VAL .RBV .DMOV .MOVN .STOP .VELO ...``):
                               ``sample:cx/cy`` coarse and ``sample:fx/fy`` piezo sample
                               stage, ``zp:x/y/z`` zone plate, ``osa:x/y``; all in um.
                               ``zp:z`` is the zone plate to sample distance.
``Pmono:energy``               monochromator energy setpoint (eV); ``energy_RBV``, ``done``,
                               ``stop``, ``velocity`` (eV/s); the undulator gap follows
``Pund:polarization``          LH, LV, CL, CR; ``polarization_RBV``, ``pol_done``,
                               ``pol_time`` (s a change takes), ``gap_RBV`` (mm)
``Pshutter:control``           Close/Open; ``shutter:status_RBV`` Closed/Open
``PI0``, ``Pring:current``     incident flux monitor (ph/s) and ring current (mA)
``PI0:current``                the I0 diode's photocurrent (A) at the energy now
                               (:mod:`recon.flux_monitor`)
``Psim:flux``                  flux of the focused beam at 400 mA (ph/s), a simulator knob
``Pfault:motor_stall``         "" none, "all", or a motor (``zp:z``, ``sample:cx``, ``mono``)
``Pfault:camera_timeout``      N: the camera hangs on the next N frames (until Acquire = 0)
``Pfault:beam_dump``           1: ring current and I0 drop to 0, frames are dark
``Pfault:drop_frames``         N: the HDF5 writer drops the next N frames
``Pfault:scanner_stop``        N: the scan controller stops (servo fault) at point N of its
                               next segment
``Pcam1:``, ``PHDF1:``         the sCMOS camera (see :mod:`simulators.ioc.camera`)
``Pscan:``                     the piezo scan controller that runs hardware-timed
                               trajectories on ``sample:fx/fy`` and triggers the camera
                               (see :mod:`simulators.ioc.scanner`)
=============================  ==========================================================
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
from dataclasses import replace
from typing import Any

from recon.probe import ZonePlate
from simulators.ioc.camera import AreaDetector
from simulators.ioc.controls import BeamlineControls
from simulators.ioc.motors import MotorRecord
from simulators.ioc.physics import BeamState, FrameEngine
from simulators.ioc.scanner import PiezoScanController

#: name -> (limits, velocity, acceleration time, settle time, description); lengths in um.
MOTORS: dict[str, tuple[tuple[float, float], float, float, float, str]] = {
    "sample:cx": ((-4000.0, 4000.0), 500.0, 0.05, 0.02, "sample coarse x"),
    "sample:cy": ((-4000.0, 4000.0), 500.0, 0.05, 0.02, "sample coarse y"),
    "sample:fx": ((-50.0, 50.0), 1000.0, 0.005, 0.01, "sample piezo x"),
    "sample:fy": ((-50.0, 50.0), 1000.0, 0.005, 0.01, "sample piezo y"),
    "zp:x": ((-500.0, 500.0), 200.0, 0.05, 0.02, "zone plate x"),
    "zp:y": ((-500.0, 500.0), 200.0, 0.05, 0.02, "zone plate y"),
    "zp:z": ((500.0, 20000.0), 1000.0, 0.05, 0.02, "zone plate to sample distance"),
    "osa:x": ((-3000.0, 3000.0), 500.0, 0.05, 0.02, "OSA x"),
    "osa:y": ((-3000.0, 3000.0), 500.0, 0.05, 0.02, "OSA y"),
}


class BeamlineIOC:
    """All PV groups of the simulated beamline and the beam state they define.

    Parameters
    ----------
    prefix : PV prefix, e.g. ``SIM:``
    sample : sample name (:func:`simulators.samples.make_sample`)
    seed : seed of the sample and of the camera noise
    area_m : side of the patterned sample area (m)
    distance_m : sample to detector distance (m)
    energy_ev : initial photon energy (eV)
    spot_m : initial spot size; zone plate z starts where it gives this spot (m)
    flux_ph_s : focused-beam flux at 400 mA (ph/s)
    pol_time_s : time a polarization change takes (s)
    port : Channel Access server port (reported in the ready line only)
    """

    def __init__(
        self,
        prefix: str = "SIM:",
        *,
        sample: str = "bn-bamboo",
        seed: int = 0,
        area_m: float = 4e-6,
        distance_m: float = 0.0513,
        energy_ev: float = 192.0,
        spot_m: float = 1e-6,
        flux_ph_s: float = 1e8,
        pol_time_s: float = 1.5,
        port: int = 5064,
    ) -> None:
        self.prefix = prefix
        self.zone_plate = ZonePlate()
        settings = {
            "energy_ev": energy_ev,
            "flux_ph_s": flux_ph_s,
            "pol_time_s": pol_time_s,
            "port": port,
        }
        self.controls = BeamlineControls(prefix, settings=settings)
        zp_z_um = (
            self.zone_plate.focal_length_m(energy_ev) + self.zone_plate.defocus_m(spot_m, energy_ev)
        ) * 1e6
        self.motors: dict[str, MotorRecord] = {}
        for name, (limits, velocity, accel, settle, desc) in MOTORS.items():
            self.motors[name] = MotorRecord(
                f"{prefix}{name}",
                limits=limits,
                velocity=velocity,
                accel_s=accel,
                settle_s=settle,
                position=zp_z_um if name == "zp:z" else 0.0,
                description=desc,
                stall_check=self.controls.stalls,
            )
        self.engine = FrameEngine(
            sample, seed=seed, area_m=area_m, distance_m=distance_m, zone_plate=self.zone_plate
        )
        self.camera = AreaDetector(
            prefix,
            engine=self.engine,
            beam_state=self.beam_state,
            faults=self.faults,
            consume_drop=self.controls.consume_drop,
            consume_timeout=self.controls.consume_timeout,
            with_fine=self.with_fine,
        )
        self.scanner = PiezoScanController(
            prefix,
            move_fine=self.move_fine,
            fine_um=self.fine_um,
            trigger_camera=self.camera.external_trigger,
            beam=self.beam,
            stop_fault=self.controls.take_scanner_stop,
            seed=seed,
        )

    @property
    def pvdb(self) -> dict[str, Any]:
        """Every PV of the beamline, name -> caproto data."""
        db: dict[str, Any] = {}
        for group in (self.controls, self.camera, self.scanner, *self.motors.values()):
            db.update(group.pvdb)
        return db

    def faults(self) -> dict[str, int]:
        """Current camera-related fault flags."""
        c = self.controls
        return {
            "camera_timeout": int(c.camera_timeout.value),
            "drop_frames": int(c.drop_frames.value),
            "beam_dump": int(c.beam_dump.value),
        }

    def fine_um(self) -> tuple[float, float]:
        """Fine (piezo) stage position (x, y) in um."""
        return self.motors["sample:fx"].position, self.motors["sample:fy"].position

    def move_fine(self, x_um: float, y_um: float) -> None:
        """The scan controller moved the piezo stage: the motor records follow."""
        for name, value in (("sample:fx", x_um), ("sample:fy", y_um)):
            motor = self.motors[name]
            motor.position = float(value)
            loop = asyncio.get_running_loop()
            loop.create_task(motor.rbv.write(float(value)))
            loop.create_task(motor.val.write(float(value), verify_value=False))

    def beam(self) -> tuple[float, float, bool]:
        """(I0 in ph/s, ring current in mA, shutter open) now."""
        c = self.controls
        return c.beam_flux(), c.ring_ma(), str(c.shutter_rbv.value) == "Open"

    def with_fine(self, state: BeamState, x_m: float, y_m: float) -> BeamState:
        """``state`` with the fine stage at (x_m, y_m) instead of where the motors are."""
        m = self.motors
        return replace(
            state,
            sample_x_m=m["sample:cx"].position * 1e-6 + x_m,
            sample_y_m=m["sample:cy"].position * 1e-6 + y_m,
        )

    def beam_state(self) -> BeamState:
        """Snapshot of positions, optics and beam for the camera (SI units)."""
        m = {name: motor.position * 1e-6 for name, motor in self.motors.items()}
        c = self.controls
        return BeamState(
            energy_ev=c.energy_position,
            polarization=str(c.polarization_rbv.value),
            sample_x_m=m["sample:cx"] + m["sample:fx"],
            sample_y_m=m["sample:cy"] + m["sample:fy"],
            zp_x_m=m["zp:x"],
            zp_y_m=m["zp:y"],
            zp_z_m=m["zp:z"],
            osa_offset_m=math.hypot(m["osa:x"], m["osa:y"]),
            shutter_open=str(c.shutter_rbv.value) == "Open",
            flux_ph_s=c.beam_flux(),
        )


async def _serve(context: Any, pvdb: dict, interfaces: list[str]) -> None:
    await context(pvdb, interfaces).run()


def run_ioc(
    prefix: str = "SIM:",
    *,
    port: int | None = None,
    interfaces: tuple[str, ...] = ("127.0.0.1",),
    **kwargs: Any,
) -> None:
    """Serve the beamline until interrupted (blocking).

    Parameters
    ----------
    prefix : PV prefix
    port : Channel Access port (``EPICS_CA_SERVER_PORT``; 5064 when None and unset)
    interfaces : addresses to listen on (loopback by default)
    **kwargs : :class:`BeamlineIOC` options (sample, seed, energy_ev, ...)
    """
    from caproto.asyncio.server import Context

    class NoDelayContext(Context):
        """caproto's server with ``TCP_NODELAY`` set again on every client connection.

        Measured on this machine (fly raster, 100 ms exposures): 8.9 ms overhead per
        point with it, 16.7 ms without, where set-up puts took ~40 ms instead of 1 ms,
        the signature of Nagle's algorithm meeting a delayed ACK. asyncio's socket
        transports normally set the option themselves, so why setting it here matters is
        not fully understood; the measurement is what keeps it.
        """

        async def tcp_handler(self, client: Any, addr: Any) -> Any:
            sock = client.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return await super().tcp_handler(client, addr)

    if port is not None:
        os.environ["EPICS_CA_SERVER_PORT"] = str(port)
    port = int(os.environ.get("EPICS_CA_SERVER_PORT", "5064"))
    if all(addr.startswith("127.") for addr in interfaces):
        os.environ.setdefault("EPICS_CAS_AUTO_BEACON_ADDR_LIST", "NO")
        os.environ.setdefault("EPICS_CAS_BEACON_ADDR_LIST", "127.255.255.255")
    ioc = BeamlineIOC(prefix, port=port, **kwargs)
    try:
        asyncio.run(_serve(NoDelayContext, ioc.pvdb, list(interfaces)))
    except KeyboardInterrupt:
        print("sptycho IOC stopped", file=sys.stderr)
