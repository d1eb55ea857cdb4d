"""Streaming reconstruction worker: follows runs in Tiled, reconstructs every ptychogram as
its frames arrive, and writes object, probe and convergence back next to the run."""

from services.worker.config import WorkerSettings, load_settings
from services.worker.service import Worker

__all__ = ["Worker", "WorkerSettings", "load_settings"]
