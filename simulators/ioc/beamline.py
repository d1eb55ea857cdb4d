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
import time
from dataclasses import replace
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from recon.probe import ZonePlate
from simulators.ioc.camera import AreaDetector
from simulators.ioc.motors import TICK_S, MotorRecord
from simulators.ioc.physics import BeamState, FrameEngine
from simulators.ioc.scanner import PiezoScanController

POLARIZATIONS = ["LH", "LV", "CL", "CR"]
NOMINAL_RING_MA = 400.0

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


def undulator_gap_mm(energy_ev: float, polarization: str) -> float:
    """Gap (mm) of the APPLE II undulator's first harmonic (a smooth monotonic model)."""
    shift = {"LH": 0.0, "LV": 3.0, "CL": 1.5, "CR": 1.5}.get(polarization, 0.0)
    return 14.0 + 26.0 * (1.0 - math.exp(-(energy_ev - 80.0) / 400.0)) + shift


class BeamlineControls(PVGroup):
    """Monochromator, undulator, shutter, beam monitors and fault injection PVs."""

    energy = pvproperty(
        value=192.0,
        name="mono:energy",
        precision=3,
        lower_ctrl_limit=100.0,
        upper_ctrl_limit=2000.0,
    )
    energy_rbv = pvproperty(value=192.0, name="mono:energy_RBV", precision=3, read_only=True)
    energy_done = pvproperty(value=1, name="mono:done", read_only=True)
    energy_stop = pvproperty(value=0, name="mono:stop")
    energy_velocity = pvproperty(value=50.0, name="mono:velocity", precision=2)
    gap = pvproperty(value=20.0, name="und:gap_RBV", precision=3, read_only=True)
    polarization = pvproperty(
        value="LH", name="und:polarization", dtype=ChannelType.ENUM, enum_strings=POLARIZATIONS
    )
    polarization_rbv = pvproperty(
        value="LH",
        name="und:polarization_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=POLARIZATIONS,
        read_only=True,
    )
    polarization_done = pvproperty(value=1, name="und:pol_done", read_only=True)
    polarization_time = pvproperty(value=1.5, name="und:pol_time", precision=2)
    shutter = pvproperty(
        value="Close",
        name="shutter:control",
        dtype=ChannelType.ENUM,
        enum_strings=["Close", "Open"],
    )
    shutter_rbv = pvproperty(
        value="Closed",
        name="shutter:status_RBV",
        dtype=ChannelType.ENUM,
        enum_strings=["Closed", "Open"],
        read_only=True,
    )
    shutter_time = pvproperty(value=0.05, name="shutter:time", precision=3)
    i0 = pvproperty(value=0.0, name="I0", precision=4, read_only=True)
    ring_current = pvproperty(
        value=NOMINAL_RING_MA, name="ring:current", precision=3, read_only=True
    )
    flux = pvproperty(value=1e8, name="sim:flux", precision=4)
    motor_stall = pvproperty(value="", name="fault:motor_stall", dtype=ChannelType.STRING)
    camera_timeout = pvproperty(value=0, name="fault:camera_timeout")
    beam_dump = pvproperty(value=0, name="fault:beam_dump")
    drop_frames = pvproperty(value=0, name="fault:drop_frames")
    scanner_stop = pvproperty(value=0, name="fault:scanner_stop")
    ready = pvproperty(value=0, name="sim:ready", read_only=True)

    def __init__(self, prefix: str, *, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.settings = settings
        self._energy_task: asyncio.Task | None = None
        self._pol_task: asyncio.Task | None = None
        self._shutter_task: asyncio.Task | None = None
        self.energy_position = float(settings["energy_ev"])
        self._t0 = time.monotonic()

    # -- start-up ---------------------------------------------------------------------------
    @ready.startup
    async def ready(self, instance, async_lib) -> None:  # noqa: F811
        s = self.settings
        await self.flux.write(float(s["flux_ph_s"]))
        await self.polarization_time.write(float(s["pol_time_s"]))
        await self.energy.write(self.energy_position, verify_value=False)
        await self.energy_rbv.write(self.energy_position)
        await self.gap.write(undulator_gap_mm(self.energy_position, "LH"))
        await asyncio.sleep(0.2)
        await self.ready.write(1)
        print(f"sptycho IOC ready: prefix {self.prefix} port {s['port']}", flush=True)

    # -- stall fault --------------------------------------------------------------------------
    def stalls(self, name: str) -> bool:
        """True when the stall fault names this motor (or ``all``)."""
        target = str(self.motor_stall.value).strip()
        return bool(target) and target in ("all", name)

    # -- monochromator and undulator ------------------------------------------------------------
    @energy.putter
    async def energy(self, instance, value: float) -> float:  # noqa: F811
        if self._energy_task is not None and not self._energy_task.done():
            self._energy_task.cancel()
        await self.energy_done.write(0)
        self._energy_task = asyncio.get_running_loop().create_task(self._move_energy(value))
        return value

    async def _move_energy(self, target: float) -> None:
        start = self.energy_position
        velocity = max(float(self.energy_velocity.value), 1e-6)
        duration = abs(target - start) / velocity
        stalled = self.stalls("mono")
        t0 = time.monotonic()
        pol = str(self.polarization_rbv.value)
        while True:
            t = time.monotonic() - t0
            if stalled and t >= 0.3 * duration:
                while True:
                    await asyncio.sleep(3600)
            if t >= duration:
                break
            self.energy_position = start + (target - start) * t / duration
            await self.energy_rbv.write(self.energy_position)
            await self.gap.write(undulator_gap_mm(self.energy_position, pol))
            await asyncio.sleep(TICK_S)
        self.energy_position = float(target)
        await self.energy_rbv.write(self.energy_position)
        await self.gap.write(undulator_gap_mm(self.energy_position, pol))
        await asyncio.sleep(0.05)  # monochromator settling
        await self.energy_done.write(1)

    @energy_stop.putter
    async def energy_stop(self, instance, value: int) -> int:  # noqa: F811
        if value:
            if self._energy_task is not None and not self._energy_task.done():
                self._energy_task.cancel()
            await self.energy.write(self.energy_position, verify_value=False)
            await self.energy_done.write(1)
        return 0

    @polarization.putter
    async def polarization(self, instance, value: str) -> str:  # noqa: F811
        if self._pol_task is not None and not self._pol_task.done():
            self._pol_task.cancel()
        await self.polarization_done.write(0)
        self._pol_task = asyncio.get_running_loop().create_task(self._change_polarization(value))
        return value

    async def _change_polarization(self, target: str) -> None:
        # The undulator rows shift phase: the gap readback wanders while it happens.
        duration = max(float(self.polarization_time.value), 0.0)
        t0 = time.monotonic()
        start_gap = float(self.gap.value)
        end_gap = undulator_gap_mm(self.energy_position, target)
        while (t := time.monotonic() - t0) < duration:
            frac = t / duration
            await self.gap.write(start_gap + (end_gap - start_gap) * frac)
            await asyncio.sleep(0.05)
        await self.gap.write(end_gap)
        await self.polarization_rbv.write(target)
        await self.polarization_done.write(1)

    # -- shutter --------------------------------------------------------------------------------
    @shutter.putter
    async def shutter(self, instance, value: str) -> str:  # noqa: F811
        if self._shutter_task is not None and not self._shutter_task.done():
            self._shutter_task.cancel()
        target = "Open" if value in ("Open", 1) else "Closed"
        self._shutter_task = asyncio.get_running_loop().create_task(self._actuate(target))
        return "Open" if target == "Open" else "Close"

    async def _actuate(self, target: str) -> None:
        await asyncio.sleep(max(float(self.shutter_time.value), 0.0))
        await self.shutter_rbv.write(target)

    # -- beam -----------------------------------------------------------------------------------
    def ring_ma(self) -> float:
        """Ring current (mA): top-up sawtooth 400 -> 399.6 mA every 60 s, 0 on a beam dump."""
        if int(self.beam_dump.value):
            return 0.0
        phase = ((time.monotonic() - self._t0) % 60.0) / 60.0
        return NOMINAL_RING_MA - 0.4 * phase

    def beam_flux(self) -> float:
        """Photons per second in the focused beam now."""
        return float(self.flux.value) * self.ring_ma() / NOMINAL_RING_MA

    @i0.scan(period=0.1)
    async def i0(self, instance, async_lib) -> None:  # noqa: F811
        await self.ring_current.write(self.ring_ma())
        await instance.write(self.beam_flux())

    @beam_dump.putter
    async def beam_dump(self, instance, value: int) -> int:  # noqa: F811
        await instance.write(int(value), verify_value=False)
        await self.ring_current.write(self.ring_ma())
        await self.i0.write(self.beam_flux())
        return int(value)

    async def consume_drop(self) -> None:
        """One frame was dropped: decrement the drop-frames fault."""
        await self.drop_frames.write(max(int(self.drop_frames.value) - 1, 0))

    def take_scanner_stop(self) -> int:
        """The point at which the scan controller's next segment stops (0: none); clears it."""
        at = int(self.scanner_stop.value)
        if at:
            asyncio.get_running_loop().create_task(self.scanner_stop.write(0))
        return at

    async def consume_timeout(self) -> None:
        """One frame hung: decrement the camera-timeout fault."""
        await self.camera_timeout.write(max(int(self.camera_timeout.value) - 1, 0))


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
