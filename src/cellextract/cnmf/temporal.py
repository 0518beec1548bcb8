"""Temporal update of CNMF: block-coordinate descent with OASIS per component.

Given unit-or-any-norm footprints ``A`` the traces minimise ``|Yb - A C|^2`` subject to
the AR(p) calcium model. Only ``U = A^T Yb`` (K, T) and ``V = A^T A`` (K, K) are needed:
for component ``k`` the raw trace ``y_k = C_k + (U_k - V_k C) / V_kk`` (the data
projected on ``a_k`` with the other components removed) is deconvolved with OASIS and
becomes the new ``C_k`` (Pnevmatikakis et al., Neuron 2016; Friedrich et al. 2017).

Output convention (CaImAn's): ``C`` has no baseline, ``bl`` holds it, and
``YrA = (U - V C) / diag(V)`` so that ``C + YrA`` is the raw trace ``y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import scipy.sparse as sp

from cellextract.cnmf.noise import trace_noise
from cellextract.deconv import deconvolve_trace


@dataclass
class TemporalResult:
    """Result of :func:`update_temporal` (all arrays float32 unless noted).

    Attributes
    ----------
    C, S, YrA : ndarray, shape (K, T)
    bl, c1, neurons_sn, lam : ndarray, shape (K,)
    g : ndarray, shape (K, p)
    """

    C: np.ndarray
    S: np.ndarray
    YrA: np.ndarray
    bl: np.ndarray
    c1: np.ndarray
    neurons_sn: np.ndarray
    lam: np.ndarray
    g: np.ndarray


def update_temporal(C: np.ndarray, U: np.ndarray, V: np.ndarray, *, p: int, g=None,
                    bas_nonneg: bool = False, n_iter: int = 2, optimize_g: int = 0,
                    penalty: int = 1, noise_range=(0.25, 0.5), noise_method: str = "mean",
                    method_deconvolution: str = "oasis",
                    overwrite_C: bool = False) -> TemporalResult:
    """Update all traces by block-coordinate descent with deconvolution.

    Parameters
    ----------
    C : ndarray, shape (K, T)
        Current traces (start point).
    U : ndarray, shape (K, T)
        ``A^T Yb`` (background-free data projected on the footprints).
    V : ndarray, shape (K, K)
        ``A^T A``.
    p : {0, 1, 2}
        AR order (0: no deconvolution, only baseline removal and rectification).
    g : None, shape (p,) or shape (K, p)
        AR coefficients (e.g. from ``decay_time`` and ``fr``); None estimates them per
        trace with OASIS.
    bas_nonneg : bool
        Non-negative baseline.
    n_iter : int
        Sweeps over the components.
    optimize_g, penalty, method_deconvolution
        Passed to :func:`cellextract.deconv.deconvolve_trace`.
    noise_range, noise_method
        Noise of each raw trace: power spectrum (these settings), capped by the
        difference-based estimate (see :func:`cellextract.cnmf.noise.trace_noise`).
    overwrite_C : bool
        Update ``C`` in place (no copy) when it is a writable C-contiguous float32 array.

    Returns
    -------
    TemporalResult
    """
    C = (C if overwrite_C and isinstance(C, np.ndarray) and C.dtype == np.float32
         and C.flags.c_contiguous and C.flags.writeable else np.array(C, dtype=np.float32))
    U = np.asarray(U, dtype=np.float32)
    V = np.asarray(V, dtype=np.float32)
    K, T = C.shape
    d = np.maximum(np.diag(V).astype(np.float32), 1e-12)
    if g is not None:
        g = np.asarray(g, dtype=float)
        g = np.broadcast_to(g.reshape(-1, p) if g.size else np.zeros((1, p)), (K, p))
    S = np.zeros_like(C)
    bl = np.zeros(K, np.float32)
    sn = np.zeros(K, np.float32)
    lam = np.zeros(K, np.float32)
    G = np.zeros((K, p), np.float32)
    # V is sparse (only components with overlapping footprints interact): the residual
    # of component k needs only its neighbours' traces, O(T * degree) instead of O(T * K)
    nbr = [np.flatnonzero(V[k]) for k in range(K)]
    for _ in range(max(1, n_iter)):
        for k in range(K):
            y = C[k] + (U[k] - V[k, nbr[k]] @ C[nbr[k]]) / d[k]
            sn[k] = trace_noise(y, noise_range=noise_range, noise_method=noise_method)
            c, s, b, gk, lk = deconvolve_trace(
                y, p=p, g=None if g is None else g[k], sn=sn[k], bas_nonneg=bas_nonneg,
                optimize_g=optimize_g, penalty=penalty,
                method_deconvolution=method_deconvolution)
            C[k], S[k], bl[k], lam[k] = c, s, b, lk
            G[k, :gk.size] = gk
    YrA = np.empty_like(C)
    for a in range(0, T, 4096):                   # (K, chunk) temporaries only
        YrA[:, a:a + 4096] = (U[:, a:a + 4096] - V @ C[:, a:a + 4096]) / d[:, None]
    return TemporalResult(C=C, S=S, YrA=YrA, bl=bl,
                          c1=C[:, 0].copy(), neurons_sn=sn, lam=lam, g=G)


# ----------------------------------------------------------------------------- streamed statistics

def ring_temporal_stats(rows, A, C, ring, block_bytes):
    """Temporal statistics under the ring model: ``U = A^T (Y - B)``.

    With ``B = b0 + U W D (Y - A C - b0)`` and ``M^T = (U W D)^T A`` (P, K, sparse):
    ``A^T (Y - B) = (A - M^T)^T (Y - b0) + (M A) C``, one streamed pass over ``Y``.

    Parameters
    ----------
    rows : cellextract.cnmf.patches.RowSource
        The data ``Y`` (P, T) in pixel-row blocks.
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    ring : cellextract.cnmf.background.RingModel
    block_bytes : int

    Returns
    -------
    U : ndarray, shape (K, T), float32
    """
    MT = sp.csr_matrix(ring.apply_T(A))                 # (P, K) = (A^T U W D)^T
    Ap = sp.csr_matrix(A - MT)
    U = np.zeros((A.shape[1], rows.T), np.float32)
    for r0, r1, Y in rows.blocks(block_bytes):
        U += Ap[r0:r1].T @ Y
    U -= (Ap.T @ ring.b0)[:, None]
    U += np.asarray((MT.T @ A).todense(), np.float32) @ C
    return U


def lowrank_temporal_stats(rows, A, C, b, f, block_bytes):
    """Temporal statistics under a low-rank background, one streamed pass.

    Parameters
    ----------
    rows : RowSource
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    b : ndarray, shape (P, nb)
    f : ndarray, shape (nb, T)
    block_bytes : int

    Returns
    -------
    U : ndarray, shape (K, T)
        ``A^T (Y - b f)``.
    bTY : ndarray, shape (nb, T)
        ``b^T Y`` (for the update of ``f``).
    """
    Ab = sp.csr_matrix(sp.hstack([A, sp.csc_matrix(b)]))
    UY = np.zeros((Ab.shape[1], rows.T), np.float32)
    for r0, r1, Y in rows.blocks(block_bytes):
        UY += Ab[r0:r1].T @ Y
    K = A.shape[1]
    U = UY[:K] - np.asarray(A.T @ b, np.float32) @ f
    return U, UY[K:]
