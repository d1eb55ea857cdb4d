"""Fused CUDA kernels behind :mod:`recon.kernels` on CuPy (the GPU twin of
:mod:`recon.numba_kernels`).

The modulus projections of AP and of the projection family (DM, RAAR) are element-wise over
the pixels of a frame stack but read every mode of a pixel to form the model; written with
array expressions they make several temporary stacks and pass over memory five to eight
times. Here each is one kernel with one thread per (frame, pixel): it reads the modes once,
forms the model ``M = scale_j sum_k |w_k|^2 + bg``, and writes the projected modes in place.

The kernels compile at first use (NVRTC). Where that fails, :func:`available` turns False,
a warning is logged once, and :mod:`recon.kernels` keeps to its generic code.

Shapes as in :mod:`recon.kernels`: ``wave``, ``psi`` (M, K, n, n) complex64 C-contiguous;
``inten`` (M, n, n) float32; ``keep`` (n, n) float32 (1 good, 0 masked); ``bg`` (n, n)
float32; ``scale`` (M,) float32.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <cupy/complex.cuh>

__device__ float model_factor(const complex<float>* w, const float* inten, const float* keep,
                              const float* bg, const float* scale, long j, long x, int K,
                              long P) {
    float a2 = 0.f;
    for (int k = 0; k < K; ++k) {
        complex<float> v = w[((long)j * K + k) * P + x];
        a2 += v.real() * v.real() + v.imag() * v.imag();
    }
    float m = fmaxf(scale[j] * a2 + bg[x], 1e-12f);
    float kp = keep[x];
    return kp * sqrtf(inten[j * P + x] / m) + (1.f - kp);
}

extern "C" __global__ void modulus_project(complex<float>* wave, const float* inten,
                                           const float* keep, const float* bg,
                                           const float* scale, long M, int K, long P) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * P) return;
    long j = i / P, x = i % P;
    float f = model_factor(wave, inten, keep, bg, scale, j, x, K, P);
    for (int k = 0; k < K; ++k) wave[(j * K + k) * P + x] *= f;
}

extern "C" __global__ void projection_family(complex<float>* wave, complex<float>* psi,
                                             const float* inten, const float* keep,
                                             const float* bg, const float* scale, long M,
                                             int K, long P, float alpha, float cx, float cw,
                                             float cf) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * P) return;
    long j = i / P, x = i % P;
    float a2 = 0.f;
    for (int k = 0; k < K; ++k) {
        long q = (j * K + k) * P + x;
        complex<float> z = (1.f + alpha) * wave[q] - alpha * psi[q];
        a2 += z.real() * z.real() + z.imag() * z.imag();
    }
    float m = fmaxf(scale[j] * a2 + bg[x], 1e-12f);
    float kp = keep[x];
    float f = kp * sqrtf(inten[j * P + x] / m) + (1.f - kp);
    for (int k = 0; k < K; ++k) {
        long q = (j * K + k) * P + x;
        complex<float> w = wave[q];
        complex<float> z = (1.f + alpha) * w - alpha * psi[q];
        complex<float> out = cx * psi[q] + cw * w + (cf * f) * z;
        psi[q] = out;
        wave[q] = out;
    }
}
"""

_THREADS = 256
_state: dict[str, Any] = {}


def _module() -> Any:
    """The compiled module (None when compiling failed)."""
    if "module" not in _state:
        try:
            import cupy  # type: ignore[import-not-found]

            mod = cupy.RawModule(code=_SOURCE, options=("--std=c++14",))
            mod.get_function("modulus_project")
            mod.get_function("projection_family")
            _state["module"] = mod
        except Exception as err:  # noqa: BLE001 - any compile/driver failure: generic path
            log.warning("fused CuPy kernels unavailable (%s); using the generic code", err)
            _state["module"] = None
    return _state["module"]


def available() -> bool:
    """True when the fused kernels compiled (call only with CuPy arrays at hand)."""
    return _module() is not None


def _launch(name: str, size: int, args: tuple) -> None:
    blocks = (size + _THREADS - 1) // _THREADS
    _module().get_function(name)((blocks,), (_THREADS,), args)


def _common(wave: Any, inten: Any, good: Any, bg: Any, scale: Any) -> tuple:
    import cupy  # type: ignore[import-not-found]

    m, k = wave.shape[0], wave.shape[1]
    p = wave.shape[2] * wave.shape[3]
    keep = cupy.ascontiguousarray(good, dtype=np.float32)
    return (
        cupy.ascontiguousarray(inten, dtype=np.float32),
        keep,
        cupy.ascontiguousarray(bg, dtype=np.float32),
        cupy.ascontiguousarray(scale, dtype=np.float32),
        np.int64(m),
        np.int32(k),
        np.int64(p),
    )


def modulus_project(wave: Any, inten: Any, good: Any, bg: Any, scale: Any) -> None:
    """``wave *= sqrt(I / M)`` on good pixels, in place (one pass)."""
    args = _common(wave, inten, good, bg, scale)
    _launch("modulus_project", int(args[4] * args[6]), (wave, *args))


def projection_family(
    wave: Any,
    psi: Any,
    inten: Any,
    good: Any,
    bg: Any,
    scale: Any,
    coefs: tuple[float, float, float, float],
) -> None:
    """``psi <- cx psi + cw wave + cf P_F((1 + alpha) wave - alpha psi); wave <- psi``."""
    args = _common(wave, inten, good, bg, scale)
    alpha, cx, cw, cf = (np.float32(c) for c in coefs)
    _launch("projection_family", int(args[4] * args[6]), (wave, psi, *args, alpha, cx, cw, cf))
