"""Fused, multi-threaded CPU back-projections behind :mod:`recon.kernels` (numba).

The adjoints of the exit-wave product, in the object and in the probe, scatter every frame
into a shared accumulator; the threads here never write the same element, so no atomics and
no per-thread copies are needed:

* object side (:func:`backproject_object`, :func:`illumination`): each thread owns a band of
  object rows and adds the rows of every frame that fall in it;
* probe side (:func:`backproject_probe`): each task owns one sub-pixel bin and a band of
  probe rows and adds the frames of that bin one after the other, in the order given by
  :meth:`recon.kernels.PatchGeometry.bin_order` (made once per geometry). Its accumulator
  rows stay in the core's cache for all the bin's frames; with frames in raster order,
  per-thread accumulators of every bin missed the cache on nearly every frame.

Shapes as in :mod:`recon.numba_kernels`: ``wave`` (M, K, ny, nx) complex64, ``probes``
(B, K, ny, nx) complex64, ``obj`` (H, W) complex64, ``corners`` (M, 2) int64, ``bins`` (M,)
int64. The kernels exist only when :data:`recon.numba_kernels.AVAILABLE`.
"""

from __future__ import annotations

from recon.numba_kernels import AVAILABLE, JIT_OPTIONS, num_threads

if AVAILABLE:
    import numba as _nb

    _helper = _nb.njit(**JIT_OPTIONS)
    _parallel = _nb.njit(parallel=True, **JIT_OPTIONS)
    _prange = _nb.prange


def row_bands(h: int) -> int:
    """Bands of object rows that the banded back-projections of an (h, W) object use."""
    return max(1, min(h, 4 * num_threads()))


def probe_bands(n_bins: int, ny: int) -> int:
    """Bands of probe rows per bin so that the probe back-projection has enough tasks.

    ``n_bins * bands`` reaches ``2 * threads`` where possible (a single bin is split into row
    bands; many bins are parallel already).
    """
    want = -(-2 * num_threads() // max(1, n_bins))
    return max(1, min(ny, want))


if AVAILABLE:

    @_helper
    def _band_rows(t, n_bands, h, cy, ny):  # pragma: no cover
        """Rows [y0, y1) of a patch at row ``cy`` that fall in object row band ``t``."""
        band = (h + n_bands - 1) // n_bands
        r0 = t * band
        r1 = min(h, r0 + band)
        return max(0, r0 - cy), min(ny, r1 - cy)

    @_parallel
    def backproject_object(
        wave, probes, bins, corners, out, n_bands, illum, do_illum
    ):  # pragma: no cover
        """out[patch j] += sum_k conj(P) wave; with do_illum also illum[patch j] += sum_k |P|^2
        (P: the frame's probe modes ``probes[bins[j]]``).

        Threads own bands of object rows, so no two write the same pixel.
        """
        m, kk, ny, nx = wave.shape
        h = out.shape[0]
        for t in _prange(n_bands):
            for j in range(m):
                cy = corners[j, 0]
                cx = corners[j, 1]
                b = bins[j]
                y0, y1 = _band_rows(t, n_bands, h, cy, ny)
                for y in range(y0, y1):
                    orow = out[cy + y, cx : cx + nx]
                    for k in range(kk):
                        prow = probes[b, k, y]
                        wrow = wave[j, k, y]
                        for x in range(nx):
                            orow[x] += prow[x].conjugate() * wrow[x]
                        if do_illum:
                            irow = illum[cy + y, cx : cx + nx]
                            for x in range(nx):
                                v = prow[x]
                                irow[x] += v.real * v.real + v.imag * v.imag

    @_parallel
    def illumination(probes, bins, corners, out, n_bands):  # pragma: no cover
        """out[patch j] += sum_k |probes[bins[j], k]|^2, threads owning row bands."""
        bb, kk, ny, nx = probes.shape
        h = out.shape[0]
        for t in _prange(n_bands):
            for j in range(corners.shape[0]):
                cy = corners[j, 0]
                cx = corners[j, 1]
                b = bins[j]
                y0, y1 = _band_rows(t, n_bands, h, cy, ny)
                for y in range(y0, y1):
                    for k in range(kk):
                        for x in range(nx):
                            v = probes[b, k, y, x]
                            out[cy + y, cx + x] += v.real * v.real + v.imag * v.imag

    @_parallel
    def backproject_probe(wave, obj, order, starts, corners, num, den, n_bands):  # pragma: no cover
        """num[b, k] += sum_{j in b} conj(O_j) wave[j, k]; den[b] += sum_{j in b} |O_j|^2.

        ``order`` lists the frames bin by bin, bin ``b`` at ``order[starts[b]:starts[b + 1]]``
        (``starts`` has B + 1 entries). Task ``(b, t)`` owns bin ``b``'s probe rows of band
        ``t`` of ``n_bands``, so no two tasks write the same element.
        """
        m, kk, ny, nx = wave.shape
        nb = starts.size - 1
        band = (ny + n_bands - 1) // n_bands
        for task in _prange(nb * n_bands):
            b = task // n_bands
            y0 = (task % n_bands) * band
            y1 = min(ny, y0 + band)
            for i in range(starts[b], starts[b + 1]):
                j = order[i]
                cy = corners[j, 0]
                cx = corners[j, 1]
                for y in range(y0, y1):
                    orow = obj[cy + y, cx : cx + nx]
                    drow = den[b, y]
                    for x in range(nx):
                        o = orow[x]
                        drow[x] += o.real * o.real + o.imag * o.imag
                    for k in range(kk):
                        nrow = num[b, k, y]
                        wrow = wave[j, k, y]
                        for x in range(nx):
                            nrow[x] += orow[x].conjugate() * wrow[x]
