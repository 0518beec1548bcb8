"""Spatial update of CNMF: non-negative footprints with local support (HALS).

Given traces ``C`` (K, T) and background-free data ``Yb`` (P, T), the footprints
minimise ``|Yb - A C|_F^2`` with ``A >= 0`` and each column restricted to a mask (the
dilated current support, within a box around the component). Hierarchical alternating
least squares (HALS, Cichocki & Phan 2009) only needs the sufficient statistics
``Q = Yb C^T`` on each component's mask and ``R = C C^T`` (K, K); pixel rows are
independent. The streamed computation of ``Q`` on the masks is in
:mod:`cellextract.cnmf.spatial_stats`.

Footprints are then cleaned: small values removed, only the largest connected piece
kept, empty components dropped.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp


def _disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy ** 2 + xx ** 2) <= r * r + 0.5


def centers_of_mass(A: sp.spmatrix, dims: tuple[int, int]) -> np.ndarray:
    """Centre of mass ``(row, col)`` of each footprint, shape (K, 2), pixels."""
    A = sp.csc_matrix(A)
    H = int(dims[0])
    idx = np.arange(A.shape[0])
    rows, cols = idx % H, idx // H
    s = np.asarray(A.sum(axis=0)).ravel()
    s[s == 0] = 1.0
    cr = np.asarray(A.T @ rows).ravel() / s
    cc = np.asarray(A.T @ cols).ravel() / s
    return np.stack([cr, cc], axis=1)


def support_masks(A: sp.spmatrix, dims: tuple[int, int], *, dilate: int, box: int) -> list:
    """Pixels each footprint may occupy in the next spatial update.

    Parameters
    ----------
    A : sparse, shape (P, K)
        Current footprints, Fortran pixel order.
    dims : (int, int)
        ``(H, W)``.
    dilate : int
        Dilation radius (pixels) of the current support.
    box : int
        The mask stays within ``box`` pixels (Chebyshev distance) of the centre of mass.

    Returns
    -------
    list of ndarray of int
        Sorted Fortran pixel indices per component (length K).
    """
    A = sp.csc_matrix(A)
    H, W = int(dims[0]), int(dims[1])
    cm = centers_of_mass(A, dims)
    st = _disk(max(int(dilate), 0))
    pad = int(dilate)
    out = []
    for k in range(A.shape[1]):
        pix = A.indices[A.indptr[k]:A.indptr[k + 1]][A.data[A.indptr[k]:A.indptr[k + 1]] > 0]
        if pix.size == 0:
            out.append(np.zeros(0, np.int64))
            continue
        r, c = pix % H, pix // H
        r0, r1 = max(r.min() - pad, 0), min(r.max() + pad + 1, H)
        c0, c1 = max(c.min() - pad, 0), min(c.max() + pad + 1, W)
        m = np.zeros((r1 - r0, c1 - c0), bool)
        m[r - r0, c - c0] = True
        if pad > 0:
            m = ndi.binary_dilation(m, structure=st)
        rr, cc = np.nonzero(m)
        rr, cc = rr + r0, cc + c0
        inb = (np.abs(rr - cm[k, 0]) <= box) & (np.abs(cc - cm[k, 1]) <= box)
        out.append(np.sort((rr[inb] + cc[inb] * H).astype(np.int64)))
    return out


def hals_spatial(A, Q, R: np.ndarray, masks: list, *,
                 n_iter: int = 3) -> sp.csc_matrix:
    """HALS sweeps over the footprints, each restricted to its mask.

    Works on per-component vectors over the mask pixels: the update of ``a_k`` on its
    mask ``M_k`` is ``max(0, (Q[M_k, k] - sum_{j != k} R[j, k] a_j[M_k]) / R[k, k])``
    where only components whose masks intersect ``M_k`` contribute. Cost and memory
    scale with the mask sizes, not with ``P x K``.

    Parameters
    ----------
    A : ndarray or sparse, shape (P, K)
        Current footprints.
    Q : ndarray, shape (P, K), or list of ndarray
        ``Yb C^T``, dense or only its values on each mask (``Q[masks[k], k]``, as
        returned by :func:`cellextract.cnmf.spatial_stats.ring_spatial_stats`).
    R : ndarray, shape (K, K)
        ``C C^T``.
    masks : list of int arrays
        Allowed (sorted) pixels per component (see :func:`support_masks`).
    n_iter : int
        Number of sweeps.

    Returns
    -------
    A : csc_matrix, shape (P, K), float32, >= 0, zero outside the masks.
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    P, K = A.shape
    R = np.asarray(R, np.float32)
    vals = [np.asarray(A[m, k].toarray()).ravel() if m.size else np.zeros(0, np.float32)
            for k, m in enumerate(masks)]
    if isinstance(Q, (list, tuple)):
        q = [np.asarray(v, np.float32) for v in Q]
    else:
        q = [np.asarray(Q[m, k], np.float32) for k, m in enumerate(masks)]
    # overlaps: for each k, the j != k with shared mask pixels and the index maps
    owner_ptr = np.concatenate([[0], np.cumsum([m.size for m in masks])])
    pix = np.concatenate(masks) if K else np.zeros(0, np.int64)
    comp = np.repeat(np.arange(K), [m.size for m in masks])
    order = np.lexsort((comp, pix))
    pix_s, comp_s = pix[order], comp[order]
    pos_s = (np.arange(pix.size) - owner_ptr[comp])[order]
    nbrs = [[] for _ in range(K)]
    starts = np.flatnonzero(np.r_[True, pix_s[1:] != pix_s[:-1]])
    ends = np.r_[starts[1:], pix_s.size]
    multi = np.flatnonzero(ends - starts > 1)
    pairs: dict = {}
    for g in multi:
        cs, ps = comp_s[starts[g]:ends[g]], pos_s[starts[g]:ends[g]]
        for a in range(cs.size):
            for b in range(cs.size):
                if a != b:
                    pairs.setdefault((cs[a], cs[b]), ([], []))
                    pairs[(cs[a], cs[b])][0].append(ps[a])
                    pairs[(cs[a], cs[b])][1].append(ps[b])
    for (k, j), (pk, pj) in pairs.items():
        nbrs[k].append((j, np.asarray(pk), np.asarray(pj)))
    for _ in range(n_iter):
        for k in range(K):
            if vals[k].size == 0:
                continue
            if R[k, k] <= 0:
                vals[k][:] = 0
                continue
            acc = q[k].copy()
            for j, pk, pj in nbrs[k]:
                acc[pk] -= R[j, k] * vals[j][pj]
            vals[k] = np.maximum(acc / R[k, k], 0).astype(np.float32)
    indptr = np.concatenate([[0], np.cumsum([m.size for m in masks])])
    data = np.concatenate(vals) if K else np.zeros(0, np.float32)
    out = sp.csc_matrix((data, pix if K else np.zeros(0, np.int64), indptr), shape=(P, K))
    out.eliminate_zeros()
    return out


def clean_footprints(A: np.ndarray | sp.spmatrix, dims: tuple[int, int], *,
                     rel_thr: float = 0.02, min_pixels: int = 3) -> tuple[sp.csc_matrix, np.ndarray]:
    """Remove small values and stray pieces; report empty components.

    Parameters
    ----------
    A : ndarray or sparse, shape (P, K)
    dims : (int, int)
    rel_thr : float
        Values below ``rel_thr * max`` of the column are set to 0.
    min_pixels : int
        Components with fewer remaining pixels are reported empty.

    Returns
    -------
    A : csc_matrix, shape (P, K), float32
        Cleaned footprints (only the largest 8-connected piece of each).
    keep : ndarray of bool, shape (K,)
        False for empty / tiny components.
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    A.eliminate_zeros()
    H = int(dims[0])
    K = A.shape[1]
    keep = np.ones(K, bool)
    cols_i, cols_v = [], []
    st = np.ones((3, 3), bool)
    for k in range(K):
        sl = slice(A.indptr[k], A.indptr[k + 1])
        pix, val = A.indices[sl], A.data[sl]
        if val.size == 0 or val.max() <= 0:
            keep[k] = False
            cols_i.append(np.zeros(0, np.int64)); cols_v.append(np.zeros(0, np.float32))
            continue
        sel = val >= rel_thr * val.max()
        pix, val = pix[sel], val[sel]
        r, c = pix % H, pix // H
        r0, c0 = r.min(), c.min()
        m = np.zeros((r.max() - r0 + 1, c.max() - c0 + 1), bool)
        m[r - r0, c - c0] = True
        lab, n = ndi.label(m, structure=st)
        if n > 1:
            l = lab[r - r0, c - c0]
            w = np.bincount(l, weights=val, minlength=n + 1)
            sel = l == np.argmax(w[1:]) + 1
            pix, val = pix[sel], val[sel]
        if pix.size < min_pixels:
            keep[k] = False
        order = np.argsort(pix)
        cols_i.append(pix[order]); cols_v.append(val[order])
    indptr = np.concatenate([[0], np.cumsum([len(i) for i in cols_i])])
    data = np.concatenate(cols_v) if K else np.zeros(0, np.float32)
    indices = np.concatenate(cols_i) if K else np.zeros(0, np.int64)
    out = sp.csc_matrix((data.astype(np.float32), indices, indptr), shape=A.shape)
    return out, keep
