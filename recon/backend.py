"""Array-backend selection: one code path for NumPy and CuPy.

Every algorithm takes its array module from its inputs with :func:`get_xp`, and FFTs go
through :func:`fft2c` / :func:`ifft2c`, which use ``scipy.fft`` (with worker threads) on
the CPU and ``cupyx.scipy.fft`` (cuFFT plan cache; in place when ``overwrite=True``, so an
iteration reuses its wave stack) on the GPU.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

try:  # CuPy is optional (the ``gpu`` extra).
    import cupy as _cupy  # type: ignore[import-not-found]

    try:
        _HAS_GPU = _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver or no device
        _HAS_GPU = False
except ImportError:  # pragma: no cover - depends on the machine
    _cupy = None
    _HAS_GPU = False

FFT_WORKERS = int(os.environ.get("SPTYCHO_FFT_WORKERS", os.cpu_count() or 1))


def gpu_available() -> bool:
    """True when CuPy is importable and sees at least one CUDA device."""
    return _HAS_GPU


def get_xp(*arrays: Any) -> ModuleType:
    """Array module (``numpy`` or ``cupy``) of the given arrays."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def resolve_backend(name: str) -> ModuleType:
    """Array module for a backend name: ``auto``, ``numpy`` or ``cupy``.

    Raises
    ------
    ValueError
        For an unknown name, or ``cupy`` requested without a usable GPU.
    """
    name = name.lower()
    if name == "auto":
        return _cupy if _HAS_GPU else np
    if name == "numpy":
        return np
    if name == "cupy":
        if not _HAS_GPU:
            raise ValueError("backend 'cupy' requested but no CUDA GPU with CuPy is available")
        return _cupy
    raise ValueError(f"unknown backend {name!r}: use auto, numpy or cupy")


def to_numpy(a: Any) -> np.ndarray:
    """Host copy of an array of either backend."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def fft2c(a: Any, overwrite: bool = False) -> Any:
    """Orthonormal 2-D FFT over the last two axes (no shifts)."""
    xp = get_xp(a)
    if xp is np:
        import scipy.fft

        return scipy.fft.fft2(a, norm="ortho", workers=FFT_WORKERS, overwrite_x=overwrite)
    import cupyx.scipy.fft  # type: ignore[import-not-found]

    # cuFFT works in place on complex input when allowed: no new stack per FFT on the GPU
    return cupyx.scipy.fft.fft2(a, norm="ortho", overwrite_x=overwrite)


def ifft2c(a: Any, overwrite: bool = False) -> Any:
    """Orthonormal inverse 2-D FFT over the last two axes (no shifts)."""
    xp = get_xp(a)
    if xp is np:
        import scipy.fft

        return scipy.fft.ifft2(a, norm="ortho", workers=FFT_WORKERS, overwrite_x=overwrite)
    import cupyx.scipy.fft  # type: ignore[import-not-found]

    return cupyx.scipy.fft.ifft2(a, norm="ortho", overwrite_x=overwrite)
