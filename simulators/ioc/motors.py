"""Simulated EPICS motor record served by caproto.

Each motor is a :class:`MotorRecord` group whose PVs are the motor record fields ophyd's
``EpicsMotor`` uses (``.VAL``, ``.RBV``, ``.DMOV``, ``.MOVN``, ``.STOP``, ``.VELO``,
``.ACCL``, ``.HLM``, ``.LLM``, ``.EGU``, ...). A write to ``.VAL`` starts a trapezoidal move
(acceleration time ``.ACCL``, speed ``.VELO``), publishes ``.RBV`` at 50 Hz, settles, and
ends with ``.DMOV = 1``; ``.DMOV`` drops to 0 for every write, even one to the current
position, as the real record does. The soft limits ``.HLM``/``.LLM`` are also the control
limits of ``.VAL``, so clients (ophyd) refuse moves outside them before anything moves and
the server rejects them too. A stall fault freezes the motor part way with ``.DMOV = 0``
until ``.STOP`` or a new target.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from simulators.ioc.aio import cancel, follow, restart


def trapezoid(distance: float, velocity: float, accel_s: float) -> tuple[float, Callable]:
    """Duration and travelled-distance function of a trapezoidal move.

    Parameters
    ----------
    distance : absolute distance to travel (>= 0)
    velocity : cruise speed (> 0)
    accel_s : time to reach the cruise speed (s, >= 0)

    Returns
    -------
    duration : total move time (s)
    travelled : function of time since the start -> distance travelled (0..distance)
    """
    if distance <= 0:
        return 0.0, lambda t: 0.0
    if accel_s <= 0:
        return distance / velocity, lambda t: min(distance, velocity * max(t, 0.0))
    accel = velocity / accel_s
    peak = min(velocity, math.sqrt(distance * accel))
    t_acc = peak / accel
    t_cruise = (distance - peak * t_acc) / peak
    duration = 2 * t_acc + t_cruise

    def travelled(t: float) -> float:
        if t <= 0:
            return 0.0
        if t < t_acc:
            return 0.5 * accel * t * t
        if t < t_acc + t_cruise:
            return 0.5 * accel * t_acc**2 + peak * (t - t_acc)
        if t < duration:
            left = duration - t
            return distance - 0.5 * accel * left * left
        return distance

    return duration, travelled


class MotorRecord(PVGroup):
    """One simulated motor record (prefix is the record name, e.g. ``SIM:zp:z``).

    Parameters
    ----------
    prefix : record name
    egu : engineering units
    limits : (low, high) soft limits
    velocity : cruise speed (egu/s)
    accel_s : acceleration time (s)
    settle_s : settling time after the trajectory before ``.DMOV = 1`` (s)
    position : initial position
    precision : display precision
    description : ``.DESC`` text
    stall_check : called with the motor's short name; True makes this move stall
    """

    val = pvproperty(value=0.0, name=".VAL", precision=4)
    rbv = pvproperty(value=0.0, name=".RBV", precision=4, read_only=True)
    dmov = pvproperty(value=1, name=".DMOV", read_only=True)
    movn = pvproperty(value=0, name=".MOVN", read_only=True)
    stop = pvproperty(value=0, name=".STOP")
    velo = pvproperty(value=1.0, name=".VELO", precision=4)
    accl = pvproperty(value=0.1, name=".ACCL", precision=4)
    hlm = pvproperty(value=0.0, name=".HLM", precision=4)
    llm = pvproperty(value=0.0, name=".LLM", precision=4)
    egu = pvproperty(value="um", name=".EGU", dtype=ChannelType.STRING)
    off = pvproperty(value=0.0, name=".OFF", precision=4)
    dir = pvproperty(value=0, name=".DIR")
    foff = pvproperty(value=0, name=".FOFF")
    set_ = pvproperty(value=0, name=".SET")
    hls = pvproperty(value=0, name=".HLS", read_only=True)
    lls = pvproperty(value=0, name=".LLS", read_only=True)
    tdir = pvproperty(value=1, name=".TDIR", read_only=True)
    homf = pvproperty(value=0, name=".HOMF")
    homr = pvproperty(value=0, name=".HOMR")
    prec = pvproperty(value=4, name=".PREC", read_only=True)
    desc = pvproperty(value="", name=".DESC", dtype=ChannelType.STRING)
    lvio = pvproperty(value=0, name=".LVIO", read_only=True)
    settle = pvproperty(value=0.02, name=".DLY", precision=3)

    def __init__(
        self,
        prefix: str,
        *,
        egu: str = "um",
        limits: tuple[float, float] = (-1000.0, 1000.0),
        velocity: float = 100.0,
        accel_s: float = 0.05,
        settle_s: float = 0.02,
        position: float = 0.0,
        precision: int = 4,
        description: str = "",
        stall_check: Callable[[str], bool] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(prefix, **kwargs)
        self.short_name = prefix.rstrip(":").split(":", 1)[-1]
        self._init = {
            "egu": egu,
            "limits": limits,
            "velocity": velocity,
            "accel_s": accel_s,
            "settle_s": settle_s,
            "position": position,
            "description": description,
        }
        self.stall_check = stall_check
        self.position = float(position)
        self._task: asyncio.Task | None = None

    @val.startup
    async def val(self, instance, async_lib) -> None:  # noqa: F811
        """Apply the constructor's settings to the PVs once the server runs."""
        cfg = self._init
        low, high = cfg["limits"]
        await self.egu.write(cfg["egu"])
        await self.desc.write(cfg["description"])
        await self.velo.write(cfg["velocity"])
        await self.accl.write(cfg["accel_s"])
        await self.settle.write(cfg["settle_s"])
        await self._apply_limits(low, high)
        await self.llm.write(low, verify_value=False)
        await self.hlm.write(high, verify_value=False)
        await self.rbv.write(self.position)
        await self.val.write(self.position, verify_value=False)

    async def _apply_limits(self, low: float, high: float) -> None:
        for prop in (self.val, self.rbv):
            await prop.write_metadata(
                lower_ctrl_limit=low,
                upper_ctrl_limit=high,
                lower_disp_limit=low,
                upper_disp_limit=high,
            )

    @val.putter
    async def val(self, instance, value: float) -> float:  # noqa: F811
        low, high = float(self.llm.value), float(self.hlm.value)
        if low < high and not low <= value <= high:
            await self.lvio.write(1)
            raise ValueError(f"{self.prefix} target {value} outside limits [{low}, {high}]")
        await self.lvio.write(0)
        self._start(float(value))
        return value

    @hlm.putter
    async def hlm(self, instance, value: float) -> float:  # noqa: F811
        # .VAL's control limits change before .HLM is posted: clients re-read them then.
        await self._apply_limits(float(self.llm.value), float(value))
        return value

    @llm.putter
    async def llm(self, instance, value: float) -> float:  # noqa: F811
        await self._apply_limits(float(value), float(self.hlm.value))
        return value

    @stop.putter
    async def stop(self, instance, value: int) -> int:  # noqa: F811
        if value:
            await self.halt()
        return 0

    @homf.putter
    async def homf(self, instance, value: int) -> int:  # noqa: F811
        if value:
            self._start(0.0)
        return 0

    @homr.putter
    async def homr(self, instance, value: int) -> int:  # noqa: F811
        if value:
            self._start(0.0)
        return 0

    # -- motion -------------------------------------------------------------------------
    def _start(self, target: float) -> None:
        self._task = restart(self._task, self._move(target))

    async def halt(self) -> None:
        """Stop where the motor is: ``.VAL`` follows the readback, ``.DMOV = 1``."""
        cancel(self._task)
        self._task = None
        await self.val.write(self.position, verify_value=False)
        await self.rbv.write(self.position)
        await self.movn.write(0)
        await self.dmov.write(1)

    async def _move(self, target: float) -> None:
        start = self.position
        distance = target - start
        velocity = max(float(self.velo.value), 1e-9)
        duration, travelled = trapezoid(abs(distance), velocity, max(float(self.accl.value), 0))
        stalled = self.stall_check is not None and self.stall_check(self.short_name)
        sign = 1.0 if distance >= 0 else -1.0
        await self.dmov.write(0)
        if distance != 0:
            await self.tdir.write(1 if distance > 0 else 0)
            await self.movn.write(1)

        async def update(t: float) -> None:
            self.position = start + sign * travelled(t)
            await self.rbv.write(self.position)

        # A stalled motor stops part way and never reports done.
        await follow(duration, update, stalled=stalled)
        self.position = target
        await self.rbv.write(target)
        await asyncio.sleep(max(float(self.settle.value), 0.005))
        await self.movn.write(0)
        await self.dmov.write(1)
