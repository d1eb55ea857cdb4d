"""Factories of the PV shapes the simulated IOC uses again and again.

caproto declares PVs as :class:`~caproto.server.pvproperty` class attributes; these helpers
build the recurring kinds: numbers, enums, long strings (char waveforms, as areaDetector uses
for paths and messages), waveforms, and a setting with its ``_RBV`` readback whose put is
copied to the readback (the areaDetector convention). Every factory takes the PV name (after
the group prefix) and the start value first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

Factory = Callable[..., pvproperty]


def number_pv(name: str, value: float | int | str, **kwargs: Any) -> pvproperty:
    """A scalar PV: int or float from ``value`` (a short string with ``dtype=STRING``)."""
    return pvproperty(value=value, name=name, **kwargs)


def enum_pv(name: str, value: str, *, choices: Sequence[str], **kwargs: Any) -> pvproperty:
    """An enum PV with states ``choices``, starting at ``value``."""
    return pvproperty(
        value=value, name=name, dtype=ChannelType.ENUM, enum_strings=list(choices), **kwargs
    )


def text_pv(name: str, value: str = "", *, size: int = 256, **kwargs: Any) -> pvproperty:
    """A long-string PV (char waveform of ``size`` bytes)."""
    return pvproperty(
        value=value,
        name=name,
        dtype=ChannelType.CHAR,
        max_length=size,
        report_as_string=False,
        **kwargs,
    )


def waveform_pv(name: str, value: Sequence[float] = (0.0,), *, size: int, **kwargs: Any):
    """A float64 waveform of up to ``size`` elements."""
    return pvproperty(value=list(value), name=name, max_length=size, dtype=float, **kwargs)


def readback_pair(
    name: str,
    value: Any,
    *,
    factory: Factory = number_pv,
    copy: Callable[[Any], Any] | None = None,
    method: str | None = None,
    **kwargs: Any,
) -> tuple[pvproperty, pvproperty]:
    """A setting PV ``name`` and its read-only readback ``name_RBV`` of the same kind.

    Parameters
    ----------
    name, value, **kwargs : passed to ``factory`` for both PVs
    factory : :func:`number_pv`, :func:`enum_pv` or :func:`text_pv`
    copy : when given, a put is converted by ``copy``, written to the readback and kept as
        the setting's value; when None the group's own code writes the readback (a
        ``putter`` declared later replaces the copying one)
    method : instead of ``copy``, the name of the group's coroutine method
        ``(instance, value) -> value`` that handles a put (one handler for several PVs)

    Returns
    -------
    setting, readback : the two pvproperties (assign both in the class body)
    """
    setting = factory(name, value, **kwargs)
    readback = factory(f"{name}_RBV", value, read_only=True, **kwargs)
    if copy is not None:

        async def put(group: PVGroup, instance: Any, new: Any) -> Any:
            new = copy(new)
            await getattr(group, readback.attr_name).write(new)
            return new

        setting.putter(put)
    elif method is not None:

        async def put_by_method(group: PVGroup, instance: Any, new: Any) -> Any:
            return await getattr(group, method)(instance, new)

        setting.putter(put_by_method)
    return setting, readback


def at_least(low: float, kind: Callable[[Any], Any] = float) -> Callable[[Any], Any]:
    """A ``copy`` converter: ``max(kind(value), low)``."""
    return lambda value: max(kind(value), low)
