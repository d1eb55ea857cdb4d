"""Beamline controls of the simulated IOC: monochromator, undulator, shutter, beam, faults.

PVs (``P`` is the prefix; see :mod:`simulators.ioc.beamline` for the whole IOC):
``Pmono:energy`` (+ ``_RBV``, ``done``, ``stop``, ``velocity``), ``Pund:polarization``
(+ ``_RBV``, ``pol_done``, ``pol_time``, ``gap_RBV``), ``Pshutter:control`` /
``status_RBV`` / ``time``, ``PI0``, ``PI0:current``, ``Pring:current``, ``Psim:flux``,
``Psim:ready`` and the fault injection PVs ``Pfault:*``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup

from recon.flux_monitor import DiodeMonitor
from simulators.ioc.aio import cancel, follow, restart
from simulators.ioc.pvs import enum_pv, number_pv, readback_pair
from simulators.polarization import POLARIZATIONS

NOMINAL_RING_MA = 400.0
DIODE = DiodeMonitor()  # the I0 monitor behind ``PI0:current`` (recon.flux_monitor)


def undulator_gap_mm(energy_ev: float, polarization: str) -> float:
    """Gap (mm) of the APPLE II undulator's first harmonic (a smooth monotonic model)."""
    shift = {"LH": 0.0, "LV": 3.0, "CL": 1.5, "CR": 1.5}.get(polarization, 0.0)
    return 14.0 + 26.0 * (1.0 - math.exp(-(energy_ev - 80.0) / 400.0)) + shift


class BeamlineControls(PVGroup):
    """Monochromator, undulator, shutter, beam monitors and fault injection PVs."""

    energy = number_pv(
        "mono:energy", 192.0, precision=3, lower_ctrl_limit=100.0, upper_ctrl_limit=2000.0
    )
    energy_rbv = number_pv("mono:energy_RBV", 192.0, precision=3, read_only=True)
    energy_done = number_pv("mono:done", 1, read_only=True)
    energy_stop = number_pv("mono:stop", 0)
    energy_velocity = number_pv("mono:velocity", 50.0, precision=2)
    gap = number_pv("und:gap_RBV", 20.0, precision=3, read_only=True)
    polarization, polarization_rbv = readback_pair(
        "und:polarization", "LH", factory=enum_pv, choices=POLARIZATIONS
    )
    polarization_done = number_pv("und:pol_done", 1, read_only=True)
    polarization_time = number_pv("und:pol_time", 1.5, precision=2)
    shutter = enum_pv("shutter:control", "Close", choices=["Close", "Open"])
    shutter_rbv = enum_pv(
        "shutter:status_RBV", "Closed", choices=["Closed", "Open"], read_only=True
    )
    shutter_time = number_pv("shutter:time", 0.05, precision=3)
    i0 = number_pv("I0", 0.0, precision=4, read_only=True)
    i0_current = number_pv("I0:current", 0.0, precision=12, units="A", read_only=True)
    ring_current = number_pv("ring:current", NOMINAL_RING_MA, precision=3, read_only=True)
    flux = number_pv("sim:flux", 1e8, precision=4)
    motor_stall = number_pv("fault:motor_stall", "", dtype=ChannelType.STRING)
    camera_timeout = number_pv("fault:camera_timeout", 0)
    beam_dump = number_pv("fault:beam_dump", 0)
    drop_frames = number_pv("fault:drop_frames", 0)
    scanner_stop = number_pv("fault:scanner_stop", 0)
    ready = number_pv("sim:ready", 0, read_only=True)

    def __init__(self, prefix: str, *, settings: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.settings = settings
        self._tasks: dict[str, asyncio.Task] = {}  # energy, polarization, shutter
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
        await self._begin("energy", self._move_energy(value), self.energy_done)
        return value

    async def _begin(self, key: str, change: Coroutine[Any, Any, None], done: Any) -> None:
        """Start a change (ending the last change of ``key``) and clear its ``done`` PV."""
        self._tasks[key] = restart(self._tasks.get(key), change)
        await done.write(0)

    async def _show_energy(self, polarization: str) -> None:
        await self.energy_rbv.write(self.energy_position)
        await self.gap.write(undulator_gap_mm(self.energy_position, polarization))

    async def _move_energy(self, target: float) -> None:
        start = self.energy_position
        velocity = max(float(self.energy_velocity.value), 1e-6)
        duration = abs(target - start) / velocity
        pol = str(self.polarization_rbv.value)

        async def update(t: float) -> None:
            self.energy_position = start + (target - start) * t / duration
            await self._show_energy(pol)

        await follow(duration, update, stalled=self.stalls("mono"))
        self.energy_position = float(target)
        await self._show_energy(pol)
        await asyncio.sleep(0.05)  # monochromator settling
        await self.energy_done.write(1)

    @energy_stop.putter
    async def energy_stop(self, instance, value: int) -> int:  # noqa: F811
        if value:
            cancel(self._tasks.get("energy"))
            await self.energy.write(self.energy_position, verify_value=False)
            await self.energy_done.write(1)
        return 0

    @polarization.putter
    async def polarization(self, instance, value: str) -> str:  # noqa: F811
        await self._begin("polarization", self._change_polarization(value), self.polarization_done)
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
        target = "Open" if value in ("Open", 1) else "Closed"
        self._tasks["shutter"] = restart(self._tasks.get("shutter"), self._actuate(target))
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

    async def _publish_beam(self) -> None:
        """Ring current, I0 (ph/s) and the I0 diode's photocurrent (A) at the energy now."""
        flux = self.beam_flux()
        await self.ring_current.write(self.ring_ma())
        await self.i0.write(flux)
        await self.i0_current.write(DIODE.current_a(flux, self.energy_position))

    @i0.scan(period=0.1)
    async def i0(self, instance, async_lib) -> None:  # noqa: F811
        await self._publish_beam()

    @beam_dump.putter
    async def beam_dump(self, instance, value: int) -> int:  # noqa: F811
        await instance.write(int(value), verify_value=False)
        await self._publish_beam()
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
