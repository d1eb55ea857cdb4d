"""Configuration of the streaming reconstruction worker.

Settings come, in increasing priority, from the defaults below, a YAML or TOML file
(``deploy/worker.yml``), environment variables prefixed ``SPTYCHO_`` (for example
``SPTYCHO_TILED_URI``, ``SPTYCHO_TILED_API_KEY``, ``SPTYCHO_ALGORITHM``,
``SPTYCHO_MAX_CONCURRENT``) and explicit keyword arguments (the command line).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recon.algorithm_chain import check_algorithm, is_auto, parse_algorithm


class WorkerSettings(BaseSettings):
    """What the worker connects to, how it reconstructs and how much it runs at once.

    Attributes
    ----------
    tiled_uri : Tiled server (``None``: ``sptycho serve`` starts an embedded one)
    tiled_api_key : API key of that server
    algorithm : algorithm chain of the final reconstruction, e.g. ``"AP**100"``, or
        ``"auto"`` (default): chosen from the ptychogram's frames (:mod:`recon.auto_chain`)
        and named in the result's ``algorithm``
    live_algorithm : algorithm of the live (partial) refreshes; default: the chain's first
        (AP for ``auto``)
    live_iterations : iterations per live refresh
    refresh_frames : refresh the live result after at least this many new frames
    min_frames : frames needed before the first live reconstruction
    backend : ``auto`` (CuPy when a GPU is there), ``numpy`` or ``cupy``
    probe_modes : incoherent probe modes
    threshold : photons below this are set to 0
    counts_per_photon : detector gain; ``None``: the run's metadata, else estimated
    saturation_counts : raw counts at which a pixel saturates; ``None``: 16-bit sensor
        times binning squared
    poll_interval_s : how often Tiled is asked what is new when it does not stream changes
    tiled_streaming : ``auto`` (default: follow Tiled's websocket subscriptions when the
        server has a streaming cache, else poll), ``streaming`` or ``polling``
    safety_poll_s : while following subscriptions, Tiled is still asked this often (a missed
        message or a dropped websocket never loses data)
    catch_up_runs : how many of the newest runs are checked for missed work at start
    results_key : container, inside each run, that holds its reconstructions
    executor : ``local`` (threads in this process) or ``dask``
    dask_scheduler : address of a Dask scheduler; ``None`` with ``executor: dask`` starts a
        local cluster (one worker per GPU with dask-cuda when installed)
    max_concurrent : ptychograms reconstructed at the same time (memory bound)
    dask_worker_ttl_s : a worker process of the local Dask cluster that has sent its
        scheduler no heartbeat this long (hung) is killed and started again by its nanny
        (within one to two ttl), and its ptychogram is reconstructed again (a deployed
        scheduler takes the same from ``deploy/dask.env``)
    redo : reconstruct again ptychograms whose status is already ``done`` (once each)
    i0_column : primary-stream column of the incident flux recorded with each frame
        (``beam_i0``: the beam monitor ``beam``'s ``i0``); a run without it is not checked
    min_i0_fraction : frames whose I0 is below this fraction of the ptychogram's median I0
        (of its frames seen so far with I0 > 0) are left out of the reconstruction, whatever
        the plan did; with this or ``min_i0`` above 0, frames with I0 <= 0 or not finite are
        left out too. 0 with ``min_i0`` 0 turns the check off
    min_i0 : absolute I0 floor in the monitor's units (photons/s); frames below it are left
        out. The threshold is the larger of the two
    tiled_timeout_s : read and write timeout of every request to Tiled (connecting: 5 s)
    tiled_retry_max_s : longest wait between tries while Tiled is unreachable (the waits
        double from ``poll_interval_s``)
    tiled_outage_s : a task waits this long for an unreachable Tiled before it gives up
        (its ptychogram is started again once Tiled is back)
    """

    model_config = SettingsConfigDict(env_prefix="SPTYCHO_", extra="forbid")

    tiled_uri: str | None = None
    tiled_api_key: str | None = None
    algorithm: str = "auto"
    live_algorithm: str | None = None
    live_iterations: int = Field(10, ge=1, le=1000)
    refresh_frames: int = Field(10, ge=1)
    min_frames: int = Field(4, ge=1)
    backend: Literal["auto", "numpy", "cupy"] = "auto"
    probe_modes: int = Field(1, ge=1, le=10)
    threshold: float = Field(0.5, ge=0.0)
    counts_per_photon: float | None = Field(None, gt=0)
    saturation_counts: float | None = Field(None, gt=0)
    poll_interval_s: float = Field(0.5, gt=0, le=60)
    tiled_streaming: Literal["auto", "streaming", "polling"] = "auto"
    safety_poll_s: float = Field(5.0, gt=0, le=600)
    catch_up_runs: int = Field(50, ge=0)
    results_key: str = Field("recon", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    executor: Literal["local", "dask"] = "local"
    dask_scheduler: str | None = None
    max_concurrent: int = Field(1, ge=1, le=256)
    dask_worker_ttl_s: float = Field(60.0, ge=5.0, le=3600.0)
    redo: bool = False
    i0_column: str = Field("beam_i0", min_length=1)
    min_i0_fraction: float = Field(0.5, ge=0.0, le=1.0)
    min_i0: float = Field(0.0, ge=0.0)
    tiled_timeout_s: float = Field(30.0, gt=0, le=600)
    tiled_retry_max_s: float = Field(30.0, gt=0, le=600)
    tiled_outage_s: float = Field(600.0, gt=0)

    @field_validator("algorithm", "live_algorithm")
    @classmethod
    def _check_algorithm(cls, value: str | None) -> str | None:
        if value is not None:
            check_algorithm(value)  # raises ValueError with one clear line
        return value

    @property
    def live_step_algorithm(self) -> str:
        """The algorithm of the live refreshes (the chain's first when not set)."""
        chain = self.live_algorithm or self.algorithm
        if is_auto(chain):
            return "AP"
        return parse_algorithm(chain)[0][0]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML (``.yml``, ``.yaml``) or TOML (``.toml``) file.

    A file may hold the settings at its top level or under a ``worker`` key.

    Raises
    ------
    ValueError
        If the file is missing, unreadable or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such config file: {path}")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text())
        else:
            data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a mapping of settings")
    data = data.get("worker", data)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: 'worker' is not a mapping of settings")
    return data


def load_settings(path: str | Path | None = None, **overrides: Any) -> WorkerSettings:
    """Settings from defaults < file < environment (``SPTYCHO_*``) < ``overrides``.

    Parameters
    ----------
    path : YAML or TOML file (optional)
    **overrides : explicit values (``None`` values are ignored)

    Raises
    ------
    ValueError
        On a bad file or an invalid value (pydantic's ``ValidationError`` is a ValueError).
    """
    file_values = read_config_file(path) if path else {}
    try:
        settings_env = WorkerSettings()  # defaults + environment
        env_set = settings_env.model_fields_set
        merged = {k: v for k, v in file_values.items() if k not in env_set}
        merged.update({k: getattr(settings_env, k) for k in env_set})
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return WorkerSettings.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "settings"
        raise ValueError(f"worker setting {where}: {first['msg']}") from None
