"""Sparse non-negative matrix factorisation initialisation (dendrites, irregular shapes).

The baseline-removed data ``R`` (pixels x frames; per-pixel median removed) are
factorised with ``A, C >= 0`` by minimising

    0.5 * ||R - A C - B f||_F^2 + sum_ik lambda_i * A_ik,    ||c_k||_2 = 1,

where ``f`` are fixed global background traces (``nb`` of them) and ``B`` their per-pixel
weights (any sign, re-fitted jointly), with HALS (hierarchical alternating least squares)
updates: each trace is updated and renormalised to unit norm, then each footprint by a
soft-thresholded HALS step. The L1
weight is per pixel, ``lambda_i = alpha * sigma_i``, where ``sigma_i`` is the pixel's noise
standard deviation (robust MAD of its first differences): with unit-norm traces, the
projection of pure noise on a trace has standard deviation ``sigma_i``, so ``alpha`` of 2-3
zeroes pixels that carry no signal. No shape prior is imposed, which suits dendrites.
Initialisation: non-negative double SVD (the positive or negative part of each of the top
``K`` singular pairs), so the result is deterministic (``seed`` only breaks ties by a tiny
jitter).
"""

from __future__ import annotations

import time

import numpy as np

from cellextract.cnmf.resample import (downsample_movie, resize_image, to_init_result,
                                       upsample_footprints, upsample_traces)
from cellextract.cnmf.init_greedy import global_background, pixel_median
from cellextract.cnmf.initresult import InitResult
from cellextract.cnmf.pixel_stats import MAD_SCALE, to_pixel_major
from cellextract.cnmf.summary import local_correlation
from cellextract.errors import ParameterError
from cellextract.log import get_logger

__all__ = ["init_sparse_nmf", "sparse_nmf", "nndsvd"]

log = get_logger(__name__)


def _top_svd(R: np.ndarray, k: int, *, seed: int = 0, n_power: int = 2, oversample: int = 6):
    """Top-``k`` singular triplets by a randomised range finder with power iterations."""
    rng = np.random.default_rng(seed)
    X = R.astype(np.float32)
    m = min(k + oversample, min(X.shape))
    Q = np.linalg.qr(X @ rng.standard_normal((X.shape[1], m)).astype(np.float32))[0]
    for _ in range(n_power):
        Q = np.linalg.qr(X.T @ Q)[0]
        Q = np.linalg.qr(X @ Q)[0]
    ub, s, vt = np.linalg.svd((Q.T @ X).astype(np.float64), full_matrices=False)
    return (Q @ ub)[:, :k].astype(np.float64), s[:k], vt[:k]


def nndsvd(R: np.ndarray, K: int, *, seed: int = 0):
    """Non-negative double-SVD start ``A (P, K)``, ``C (K, T)`` (unit-norm rows) for ``R``."""
    P, T = R.shape
    k = min(K, min(P, T) - 1)
    if k < 1:
        raise ParameterError(f"sparse_nmf: data too small ({P} pixels x {T} frames) for K={K}")
    u, s, vt = _top_svd(R, k, seed=seed)
    A = np.zeros((P, K), np.float64)
    C = np.zeros((K, T), np.float64)
    for i in range(k):
        up, un = np.maximum(u[:, i], 0), np.maximum(-u[:, i], 0)
        vp, vn = np.maximum(vt[i], 0), np.maximum(-vt[i], 0)
        if np.linalg.norm(up) * np.linalg.norm(vp) >= np.linalg.norm(un) * np.linalg.norm(vn):
            a, c = up, vp
        else:
            a, c = un, vn
        nc = np.linalg.norm(c)
        A[:, i] = a * s[i] * nc
        C[i] = c / max(nc, 1e-30)
    rng = np.random.default_rng(seed)
    for i in range(k, K):  # more components than the data rank: random starts
        C[i] = rng.random(T)
        C[i] /= np.linalg.norm(C[i])
        A[:, i] = np.maximum(R @ C[i], 0)
    A += 1e-6 * A.max() * rng.random(A.shape)
    return A.astype(np.float32), C.astype(np.float32)


def sparse_nmf(R: np.ndarray, K: int, *, lam: np.ndarray | float, max_iter: int = 200,
               tol: float = 1e-4, seed: int = 0, Fb: np.ndarray | None = None):
    """HALS sparse NMF ``R ~ A C (+ B Fb)`` with an L1 penalty ``lam`` on ``A``.

    Parameters
    ----------
    R : ndarray, shape (P, T)
    K : int
    lam : float or ndarray, shape (P,)
        L1 weight (per pixel).
    max_iter : int
    tol : float
        Stop when the relative change of the objective falls below ``tol``.
    seed : int
    Fb : ndarray, shape (nb, T), optional
        Fixed background traces (orthonormal rows); their per-pixel weights ``B`` (any
        sign) are re-fitted jointly at every iteration.

    Returns
    -------
    A : ndarray, shape (P, K), >= 0
    C : ndarray, shape (K, T), >= 0, unit-norm rows
    B : ndarray, shape (P, nb)
    n_iter : int
    """
    R = np.asarray(R, dtype=np.float32)
    P, T = R.shape
    lam = np.broadcast_to(np.asarray(lam, np.float32), (P,))
    Fb = np.zeros((0, T), np.float32) if Fb is None else np.asarray(Fb, np.float32)
    RFt = R @ Fb.T  # (P, nb)
    B = RFt.copy()
    A, C = nndsvd(R - B @ Fb, K, seed=seed)
    prev = np.inf
    it = 0
    for it in range(1, max_iter + 1):
        AtR = A.T @ R - (A.T @ B) @ Fb
        AtA = A.T @ A
        for k in range(K):
            if AtA[k, k] <= 0:
                continue
            c = np.maximum(C[k] + (AtR[k] - AtA[k] @ C) / AtA[k, k], 0)
            n = float(np.linalg.norm(c))
            if n > 0:
                C[k] = c / n
                A[:, k] *= n  # keep A C unchanged by the renormalisation
                AtA[k, :] *= n
                AtA[:, k] *= n
                AtR[k] *= n
        CFt = C @ Fb.T  # (K, nb)
        RCt = R @ C.T - B @ CFt.T
        CCt = C @ C.T
        for k in range(K):
            if CCt[k, k] <= 0:
                continue
            A[:, k] = np.maximum(A[:, k] + (RCt[:, k] - A @ CCt[:, k] - lam) / CCt[k, k], 0)
        if Fb.shape[0]:
            B = RFt - A @ CFt  # exact LS for orthonormal Fb
        # objective (up to a constant): 0.5 ||R - AC - B Fb||^2 + lam . A, using A-gradient terms
        resid_fit = float(np.einsum("ik,ik->", A, A @ CCt - 2 * RCt)) - float(np.einsum("ij,ij->", B, B))
        obj = 0.5 * resid_fit + float(lam @ A.sum(axis=1))
        if abs(prev - obj) <= tol * max(abs(obj), 1e-30):
            break
        prev = obj
    return A, C, B, it


def init_sparse_nmf(Y: np.ndarray, *, K: int, alpha: float = 2.0, max_iter: int = 200, seed: int = 0,
                    gSig=None, tsub: int = 1, ssub: int = 1, nb: int = 1, tol: float = 1e-4
                    ) -> InitResult:
    """Sparse NMF initialisation (CaImAn's ``sparse_nmf`` method).

    Parameters
    ----------
    Y : ndarray, shape (T, h, w)
        Movie (or patch), raw intensity units.
    K : int
        Number of components.
    alpha : float
        Sparsity weight in units of each pixel's noise standard deviation (see module
        docstring); 0 = plain NMF.
    max_iter : int
        Maximum HALS iterations.
    seed : int
        Tie-breaking jitter of the deterministic NNDSVD start.
    gSig : ignored
        Accepted for a uniform call signature with the other initialisations.
    tsub, ssub : int
        Temporal / spatial downsampling for the factorisation.
    nb : int
        Global background traces (:func:`~cellextract.cnmf.init_greedy.global_background`)
        fitted jointly with free-sign pixel weights (0 = only the median baseline).
    tol : float
        Relative objective change for convergence.

    Returns
    -------
    InitResult
        ``A`` unit-norm columns, ``C`` (K', T) raw scale (empty components dropped,
        ``K' <= K``), ``cn`` the local correlation image, ``b0`` the pixel medians, ``b``/``f``
        the removed global background (pixel-major Fortran order, any sign).
    """
    t0 = time.perf_counter()
    if K is None or int(K) <= 0:
        raise ParameterError("sparse_nmf initialisation needs a positive K (components per patch)")
    K = int(K)
    Y = np.asarray(Y)
    if Y.ndim != 3:
        raise ParameterError(f"init_sparse_nmf expects a (T, h, w) movie, got shape {Y.shape}")
    tsub, ssub = max(1, min(int(tsub), Y.shape[0] // 2)), max(1, int(ssub))  # keep >= 2 frames
    T, h, w = Y.shape
    Yd = downsample_movie(Y, tsub, ssub)
    Td, hd, wd = Yd.shape
    cn = local_correlation(Yd)
    Yp = to_pixel_major(Yd)
    del Yd
    b0 = pixel_median(Yp)
    Rp = Yp - b0[:, :, None]
    del Yp
    _, Fg = global_background(Rp, nb)
    if nb > 1:  # orthonormalise the fixed background traces
        Fg = np.linalg.qr(Fg.T.astype(np.float64))[0].T.astype(np.float32)
    R = Rp.reshape(hd * wd, Td)
    sigma = np.median(np.abs(np.diff(R, axis=1)), axis=1) * MAD_SCALE
    A, C, Bb, n_it = sparse_nmf(R, K, lam=alpha * sigma, max_iter=max_iter, tol=tol, seed=seed,
                                Fb=Fg)
    Bg = Bb.reshape(hd, wd, -1)
    del Rp, R
    imgs = upsample_footprints(A.T.reshape(K, hd, wd), (h, w), ssub)
    C_up = upsample_traces(C, T, tsub)
    bimg = upsample_footprints(Bg.transpose(2, 0, 1), (h, w), ssub)
    b = bimg.transpose(0, 2, 1).reshape(bimg.shape[0], h * w).T.astype(np.float32)
    b0_full = upsample_footprints(b0[None], (h, w), ssub)[0].ravel(order="F")
    cn_full = resize_image(cn, (h, w)) if ssub > 1 else cn
    dt = time.perf_counter() - t0
    log.info("sparse_nmf init: %d components, %d iterations, %.2f s on %dx%dx%d", K, n_it, dt, T, h, w)
    return to_init_result(imgs, C_up, (h, w), cn=cn_full, pnr=np.zeros((h, w), np.float32),
                          b=b, f=upsample_traces(Fg, T, tsub), b0=b0_full,
                          extra={"n_iter": n_it, "seconds": dt})
