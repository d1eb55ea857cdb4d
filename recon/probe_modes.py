"""Incoherent probe modes: orthogonalisation (Thibault & Menzel, *Nature* 494, 68 (2013),
doi:10.1038/nature11806)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import get_xp, to_numpy


def orthogonalize_modes(probe: Any) -> Any:
    """Orthogonal probe modes spanning the same incoherent sum, strongest first.

    Diagonalises the Gram matrix ``G_kl = <P_k, P_l>``; the new modes are ``V^T P`` with
    ``V`` its eigenvectors, so ``sum_k |P_k|^2`` is unchanged up to rounding.

    Parameters
    ----------
    probe : (K, n, n) complex64

    Returns
    -------
    (K, n, n) complex64 with ``<P_k, P_l> = 0`` for ``k != l``.
    """
    xp = get_xp(probe)
    k = probe.shape[0]
    if k == 1:
        return probe
    flat = probe.reshape(k, -1).astype(np.complex128)
    gram = to_numpy(flat.conj() @ flat.T)
    vals, vecs = np.linalg.eigh(gram)
    vecs = vecs[:, np.argsort(vals)[::-1]]
    out = xp.asarray(vecs.T) @ flat
    return out.reshape(probe.shape).astype(np.complex64)
