"""What several system tests share: the worker subprocess and judging a reconstruction
against the simulated IOC's sample."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import numpy as np

from recon.metrics import phase_correlation
from recon.prepare import positions_to_pixels
from simulators.samples import make_sample


def start_worker(tiled: Any, log: Any, algorithm: str = "AP**60", **env: str) -> subprocess.Popen:
    """``python -m services.worker`` on ``tiled`` (NumPy, quick live refreshes).

    Parameters
    ----------
    tiled : a :class:`services.tiled_server.TiledServer` (its ``uri`` and ``api_key``)
    log : open binary file for the worker's output
    algorithm : the final reconstruction's chain
    **env : more ``SPTYCHO_*`` settings
    """
    settings = dict(
        os.environ,
        SPTYCHO_BACKEND="numpy",
        SPTYCHO_POLL_INTERVAL_S="0.3",
        SPTYCHO_REFRESH_FRAMES="12",
        SPTYCHO_LIVE_ITERATIONS="5",
        SPTYCHO_ALGORITHM=algorithm,
        **env,
    )
    cmd = [sys.executable, "-m", "services.worker", "--tiled-uri", tiled.uri]
    cmd += ["--api-key", tiled.api_key]
    return subprocess.Popen(cmd, env=settings, stdout=log, stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen, log: Any) -> None:
    """Stop the worker (SIGINT, then kill after 20 s) and close its log."""
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()
    log.close()


def truth_on_grid(meta: dict, obj_shape: tuple, positions_m: np.ndarray, frame: int) -> np.ndarray:
    """The IOC's sample (bn-bamboo, seed 0, 4 um area) on a reconstruction's grid.

    Parameters
    ----------
    meta : the result's metadata (``pixel_size_m``, ``energy_ev``, ``polarization``)
    obj_shape : (H, W) of the reconstructed object
    positions_m : (N, 2) float64 probe positions (y, x) of its frames (m)
    frame : frame width (pixels)

    Returns
    -------
    (H, W) complex transmission
    """
    pixel = meta["pixel_size_m"]
    _, _, origin = positions_to_pixels(positions_m, pixel, frame)
    centre = np.round(origin + frame // 2).astype(int)  # object pixel of the sample origin
    side = 2 * max(obj_shape) + frame
    sample = make_sample("bn-bamboo", seed=0, area_m=4e-6)
    big = sample.transmission(meta["energy_ev"], meta["polarization"], pixel, (side, side))
    y0, x0 = side // 2 - centre
    return big[y0 : y0 + obj_shape[0], x0 : x0 + obj_shape[1]]


def lit_phase_correlation(
    obj: np.ndarray, meta: dict, positions_m: np.ndarray, spot_m: float, frame: int
) -> float:
    """Phase correlation of ``obj`` with the truth where the probe centres +- half the spot
    lit the sample."""
    truth = truth_on_grid(meta, obj.shape, positions_m, frame)
    lit = np.zeros(obj.shape, bool)
    corners, _, _ = positions_to_pixels(positions_m, meta["pixel_size_m"], frame)
    r = 0.5 * spot_m / meta["pixel_size_m"]
    yy, xx = np.indices(obj.shape)
    for cy, cx in corners + frame // 2:
        lit |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
    return phase_correlation(obj, truth, lit)
