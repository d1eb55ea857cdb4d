"""What the queue server's worker holds: ``RE`` writing to Tiled, the devices and the plans.

Settings come from environment variables (``EnvironmentFile=`` of the systemd unit):

``SPTYCHO_PREFIX``
    PV prefix of the beamline IOC (default ``SIM:``).
``SPTYCHO_TILED_URI``, ``SPTYCHO_TILED_API_KEY``
    The Tiled server every run is written to, and its API key (required: a queue server
    whose runs go nowhere is refused).
``SPTYCHO_DATA_DIR``
    The camera writes its HDF5 files in ``<data dir>/frames``, as ``sptycho scan
    --data-dir`` does; Tiled must be allowed to read that directory (``SPTYCHO_FRAMES`` of
    ``deploy/tiled/config.yml``).
``SPTYCHO_CONNECT_TIMEOUT``
    Seconds to wait for every beamline PV to connect (default 10).

Documents are kept in ``<data dir>/journal`` and delivered to Tiled by a thread of their
own (:mod:`services.delivery`); the beam suspenders are installed (:mod:`services.acquisition`)
and each run's exposures go to the samples' dose maps in Tiled (:mod:`services.dose_ledger`),
which the plans check a dose budget against.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class QueueSettings(BaseSettings):
    """Settings of the queue server's environment (``SPTYCHO_*`` environment variables).

    Attributes
    ----------
    prefix : PV prefix of the beamline IOC
    tiled_uri : Tiled server the runs are written to
    tiled_api_key : its API key
    data_dir : the camera's HDF5 files go to ``data_dir / "frames"``
    connect_timeout : seconds to wait for the beamline PVs
    """

    model_config = SettingsConfigDict(env_prefix="SPTYCHO_", extra="ignore")

    prefix: str = Field("SIM:", min_length=1)
    tiled_uri: str
    tiled_api_key: str | None = None
    data_dir: Path = Path("sptycho-data")
    connect_timeout: float = Field(10.0, gt=0, le=600)

    @property
    def frames_dir(self) -> Path:
        """Where the camera writes its HDF5 files."""
        return self.data_dir / "frames"


def load_queue_settings(**overrides: Any) -> QueueSettings:
    """Settings from the environment, then ``overrides``.

    Raises
    ------
    ValueError
        With one line naming the environment variable that is missing or invalid.
    """
    try:
        return QueueSettings(**overrides)
    except ValidationError as err:
        first = err.errors()[0]
        name = "SPTYCHO_" + "_".join(str(x) for x in first["loc"]).upper()
        raise ValueError(f"queue server setting {name}: {first['msg']}") from None


class ConsoleProgress:
    """Print ``points done/total`` about every tenth of a run to the queue server's console.

    Parameters
    ----------
    steps : how many lines a run prints at most (plus its last point)
    """

    def __init__(self, steps: int = 10) -> None:
        self.steps = steps

    def __call__(self, done: int, total: int) -> None:
        if total and (done == total or done % max(1, total // self.steps) == 0):
            print(f"sptycho: {done}/{total} points", flush=True)


def build_namespace(settings: QueueSettings | None = None) -> dict[str, Any]:
    """Connect to Tiled and the beamline; return the queue server worker's namespace.

    Parameters
    ----------
    settings : default :func:`load_queue_settings`

    Returns
    -------
    dict
        ``RE`` (a RunEngine whose documents go to Tiled as they are produced), ``tiled``
        (the Tiled client), ``bl`` (the :class:`devices.beamline.Beamline`), every device
        under its attribute name (``sample``, ``zp``, ``osa``, ``optics``, ``undulator``,
        ``shutter``, ``monitor``, ``camera``), the plans ``ptycho_raster`` and
        ``ptycho_stack`` (:mod:`services.queue.plans`) and bluesky's ``count``, ``mv`` and
        ``mvr``.

    Raises
    ------
    ValueError
        On a missing or invalid setting.
    TimeoutError
        When the beamline PVs do not connect (the message names them).
    """
    from bluesky.plan_stubs import mv, mvr
    from bluesky.plans import count
    from tiled.client import from_uri

    from devices.beamline import make_beamline
    from services.acquisition import make_run_engine
    from services.delivery import TiledDelivery
    from services.dose_ledger import DoseLedger
    from services.journal import DocumentJournal
    from services.queue.plans import make_queue_plans

    s = settings if settings is not None else load_queue_settings()
    frames = s.frames_dir.resolve()
    frames.mkdir(parents=True, exist_ok=True)
    client = from_uri(s.tiled_uri, api_key=s.tiled_api_key)
    bl = make_beamline(s.prefix, data_dir=str(frames), timeout=s.connect_timeout)
    journal = DocumentJournal(frames.parent / "journal")
    delivery = TiledDelivery(lambda: from_uri(s.tiled_uri, api_key=s.tiled_api_key), journal)
    delivery.deliver_pending()
    # default context managers: the queue server runs plans in its worker's main thread
    ledger = DoseLedger(client)
    RE = make_run_engine(
        delivery=delivery, beamline=bl, progress=ConsoleProgress(), dose_ledger=ledger
    )
    RE.md["beamline_prefix"] = s.prefix
    devices = {f.name: getattr(bl, f.name) for f in dataclasses.fields(bl)}
    return {
        "RE": RE,
        "tiled": client,
        "bl": bl,
        **devices,
        **make_queue_plans(bl, dose_ledger=ledger),
        "count": count,
        "mv": mv,
        "mvr": mvr,
    }
