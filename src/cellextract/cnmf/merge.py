"""Merging of components that are parts of the same neuron.

Two components are merge candidates when their footprints overlap (share at least one
pixel) and their traces correlate above ``merge_thr``; candidate pairs are joined
into groups (connected components of the candidate graph). Each group is replaced by
the rank-1 non-negative factorisation ``a c`` of its reconstruction ``A_g C_g``
(computed without forming the pixels x time matrix).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def cross_correlation(X: np.ndarray, Y: np.ndarray | None = None, *,
                      chunk: int = 2048) -> np.ndarray:
    """Pearson correlation of every row of ``X`` (m, T) with every row of ``Y`` (n, T)
    (default ``X``); constant rows give 0.

    Accumulated in float64 over chunks of ``chunk`` frames, so the float64 copies of the
    traces are ``(m + n) x chunk``, not ``(m + n) x T``.
    """
    same = Y is None
    Y = X if same else Y
    mx = np.mean(X, axis=1, dtype=np.float64)
    my = mx if same else np.mean(Y, axis=1, dtype=np.float64)
    G = np.zeros((X.shape[0], Y.shape[0]))
    sx = np.zeros(X.shape[0])
    sy = sx if same else np.zeros(Y.shape[0])
    for a in range(0, X.shape[1], chunk):
        x = np.asarray(X[:, a:a + chunk], np.float64) - mx[:, None]
        y = x if same else np.asarray(Y[:, a:a + chunk], np.float64) - my[:, None]
        G += x @ y.T
        sx += np.einsum("kt,kt->k", x, x)
        if not same:
            sy += np.einsum("kt,kt->k", y, y)
    nx, ny = np.sqrt(sx), np.sqrt(sy)
    nx[nx == 0] = np.inf
    ny[ny == 0] = np.inf
    return G / np.outer(nx, ny)


def trace_correlation(C: np.ndarray) -> np.ndarray:
    """Pearson correlation between rows of ``C`` (K, T); constant rows give 0."""
    return cross_correlation(C)


def find_merge_groups(A: sp.spmatrix, C: np.ndarray, *, merge_thr: float,
                      cos_thr: float | None = None, split_cos: float = 0.6,
                      split_corr: float | None = None) -> list:
    """Groups of components to merge.

    Parameters
    ----------
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    merge_thr : float
        Trace-correlation threshold.
    cos_thr : float or None
        Also merge footprints this similar (cosine), whatever their traces: two
        near-identical footprints cannot be told apart and split one neuron's activity
        between them (often with anti-correlated traces).
    split_cos, split_corr : float, float or None
        Also merge pairs whose footprints are similar (cosine > ``split_cos``) while their
        traces are anti-correlated (correlation < ``split_corr``): the signature of one
        neuron split between two components competing for its activity.

    Returns
    -------
    list of ndarray of int
        Each array holds >= 2 component indices (sorted); groups are disjoint.
    """
    A = sp.csc_matrix(A)
    K = A.shape[1]
    if K < 2:
        return []
    Ab = A.copy()
    Ab.data = (Ab.data > 0).astype(np.float32)
    ov = (Ab.T @ Ab).toarray() > 0
    cor = trace_correlation(C)
    G = ov & (cor > merge_thr)
    if cos_thr is not None or split_corr is not None:
        nrm = np.sqrt(np.asarray(A.multiply(A).sum(axis=0)).ravel())
        nrm[nrm == 0] = 1
        cos = (A.T @ A).toarray() / np.outer(nrm, nrm)
        if cos_thr is not None:
            G |= cos > cos_thr
        if split_corr is not None:
            G |= (cos > split_cos) & (cor < split_corr)
    np.fill_diagonal(G, False)
    n, lab = connected_components(sp.csr_matrix(G), directed=False)
    groups = [np.flatnonzero(lab == i) for i in range(n)]
    return [g for g in groups if g.size > 1]


def rank1_merge(A_g: sp.spmatrix, C_g: np.ndarray, *, n_iter: int = 10):
    """Rank-1 NMF of ``A_g C_g``.

    Parameters
    ----------
    A_g : sparse, shape (P, m)
    C_g : ndarray, shape (m, T)

    Returns
    -------
    a : ndarray, shape (P,), float32, unit L2 norm
    c : ndarray, shape (T,), float32, ``a c ~= A_g C_g``
    """
    A_g = sp.csc_matrix(A_g, dtype=np.float64)
    C_g = np.asarray(C_g, dtype=np.float64)
    nA = np.sqrt(np.asarray(A_g.multiply(A_g).sum(axis=0)).ravel())
    c = (nA[:, None] * C_g).sum(axis=0)
    c = np.maximum(c, 0)
    a = np.zeros(A_g.shape[0])
    for _ in range(n_iter):
        cc = c @ c
        if cc <= 0:
            break
        a = np.maximum(A_g @ (C_g @ c), 0) / cc
        aa = a @ a
        if aa <= 0:
            break
        c = np.maximum((A_g.T @ a) @ C_g, 0) / aa
    na = np.linalg.norm(a)
    if na > 0:
        a, c = a / na, c * na
    return a.astype(np.float32), c.astype(np.float32)


def merge_components(A: sp.spmatrix, C: np.ndarray, *, merge_thr: float,
                     cos_thr: float | None = None, split_corr: float | None = None):
    """Merge overlapping, correlated components.

    Parameters
    ----------
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    merge_thr : float
    cos_thr, split_corr : float or None
        See :func:`find_merge_groups`.

    Returns
    -------
    A : csc_matrix, shape (P, K')
        Untouched components first (original order), then one column per merged group.
    C : ndarray, shape (K', T), float32
    groups : list of ndarray
        The merged groups (indices into the input).
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    C = np.asarray(C, dtype=np.float32)
    groups = find_merge_groups(A, C, merge_thr=merge_thr, cos_thr=cos_thr,
                               split_corr=split_corr)
    if not groups:
        return A, C, []
    merged = np.concatenate(groups)
    rest = np.setdiff1d(np.arange(A.shape[1]), merged)
    new_a, new_c = [], []
    for g in groups:
        a, c = rank1_merge(A[:, g], C[g])
        new_a.append(sp.csc_matrix(a[:, None]))
        new_c.append(c)
    A2 = sp.hstack([A[:, rest]] + new_a, format="csc").astype(np.float32)
    C2 = np.vstack([C[rest]] + [np.asarray(new_c)]).astype(np.float32)
    return A2, C2, groups
