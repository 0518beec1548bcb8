"""Streamed sufficient statistics of the spatial update, on the support masks only.

HALS (:func:`cellextract.cnmf.spatial.hals_spatial`) needs ``Q = Yb C^T`` only at the
pixels each footprint may occupy (its support mask), where ``Yb`` is the data minus the
background. ``Q`` is therefore computed per component on a small rectangle and returned
as one vector per mask: memory is ``sum_k |rect_k|`` values instead of a dense
``(P, K)`` array (600 MB at 512 x 512 with 550 components).

Ring model (1P): with ``Z = Y C^T`` and ``B = b0 1^T + U W D (Y - A C - b0 1^T)``::

    (Y - B) C^T = Zc - U W D (Zc - A C C^T),        Zc = Z - b0 (C 1)^T

The ring term at a mask pixel needs ``Zc - A C C^T`` on the ``ssub_B`` blocks of the ring
neighbours of its block, so each component's rectangle is its mask's bounding box grown by
``radius + 1`` blocks (aligned to the block grid). On the mask this is exact (the same
arithmetic as the dense product). Low-rank background (2P): ``(Y - b f) C^T`` needs no
halo.

The data are read once, in blocks of pixel rows (strips of image columns, contiguous in
time); each block is multiplied only by the traces of components whose rectangle meets the
strip, and only the entries inside each rectangle are kept.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["halo_rects", "project_rects", "ring_spatial_stats", "lowrank_spatial_stats",
           "rect_pixels"]


def halo_rects(masks: list, dims: tuple[int, int], *, block: int = 1, halo_blocks: int = 0):
    """Bounding box of each mask grown by ``halo_blocks`` blocks of ``block`` pixels.

    Parameters
    ----------
    masks : list of int arrays
        Fortran pixel indices per component.
    dims : (int, int)
        ``(H, W)``.
    block : int
        Block size (``ssub_B``); the rectangle is aligned to the block grid.
    halo_blocks : int
        Blocks added on each side.

    Returns
    -------
    ndarray of int, shape (K, 4)
        ``(r0, r1, c0, c1)`` half-open, clipped to the field of view; empty masks give
        an empty rectangle.
    """
    H, W = int(dims[0]), int(dims[1])
    s, h = max(1, int(block)), int(halo_blocks)
    out = np.zeros((len(masks), 4), np.int64)
    for k, m in enumerate(masks):
        if len(m) == 0:
            continue
        r, c = m % H, m // H
        out[k] = (max((r.min() // s - h) * s, 0), min((r.max() // s + h + 1) * s, H),
                  max((c.min() // s - h) * s, 0), min((c.max() // s + h + 1) * s, W))
    return out


def rect_pixels(rect, H: int) -> np.ndarray:
    """Sorted Fortran pixel indices of a rectangle ``(r0, r1, c0, c1)``."""
    r0, r1, c0, c1 = (int(v) for v in rect)
    return (np.arange(r0, r1)[None, :] + H * np.arange(c0, c1)[:, None]).ravel()


def _pattern(rects, H: int, P: int) -> sp.csc_matrix:
    """csc (P, K) of zeros whose column k holds exactly the pixels of rectangle k."""
    idx = [rect_pixels(r, H) for r in rects]
    indptr = np.concatenate([[0], np.cumsum([i.size for i in idx])]).astype(np.int64)
    indices = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    return sp.csc_matrix((np.zeros(indices.size, np.float32), indices, indptr),
                         shape=(P, len(rects)))


def project_rects(rows, C: np.ndarray, dims, rects, block_bytes: int, *, extra=None):
    """``Y C^T`` on each component's rectangle, one streamed pass over ``Y``.

    Parameters
    ----------
    rows : cellextract.cnmf.patches.RowSource
        ``Y`` (P, T) in blocks of pixel rows.
    C : ndarray, shape (K, T)
    dims : (int, int)
    rects : ndarray, shape (K, 4)
        From :func:`halo_rects`.
    block_bytes : int
    extra : ndarray, shape (T, m), optional
        Also return ``Y extra`` (P, m) on every pixel (e.g. ``Y f^T``).

    Returns
    -------
    Z : csc_matrix, shape (P, K), float32
        Column k holds ``(Y C^T)[:, k]`` on rectangle k (explicit entries, zeros kept).
    Ye : ndarray, shape (P, m) or None
    """
    H = int(dims[0])
    Z = _pattern(rects, H, rows.P)
    Ct = np.ascontiguousarray(np.asarray(C, np.float32).T)
    Ye = None if extra is None else np.zeros((rows.P, extra.shape[1]), np.float32)
    live = np.diff(Z.indptr) > 0
    for r0, r1, Y in rows.blocks(block_bytes):
        ks = np.flatnonzero(live & (rects[:, 2] * H + rects[:, 0] < r1)
                            & ((rects[:, 3] - 1) * H + rects[:, 1] > r0))
        if ks.size:
            Zb = Y @ Ct[:, ks]
            for j, k in enumerate(ks):
                a, b = Z.indptr[k], Z.indptr[k + 1]
                pix = Z.indices[a:b]
                i0, i1 = a + np.searchsorted(pix, r0), a + np.searchsorted(pix, r1)
                Z.data[i0:i1] = Zb[Z.indices[i0:i1] - r0, j]
            del Zb
        if Ye is not None:
            Ye[r0:r1] = Y @ extra
    return Z, Ye


def _entry_columns(M: sp.csc_matrix) -> np.ndarray:
    """Column index of every stored entry of a csc matrix."""
    return np.repeat(np.arange(M.shape[1]), np.diff(M.indptr))


def _gather(M: sp.csc_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values ``M[rows[i], cols[i]]`` (0 where not stored); ``M`` csc with sorted indices."""
    M = sp.csc_matrix(M)
    M.sort_indices()
    keys = _entry_columns(M).astype(np.int64) * M.shape[0] + M.indices
    q = cols.astype(np.int64) * M.shape[0] + rows
    out = np.zeros(q.size, np.float32)
    if keys.size:
        pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        ok = keys[pos] == q
        out[ok] = M.data[pos[ok]]
    return out


def _pattern_product(A: sp.spmatrix, G: np.ndarray, Z: sp.csc_matrix) -> np.ndarray:
    """``(A G)`` on the stored entries of ``Z`` (A (P, K) sparse, G (K, K) dense)."""
    Ar = sp.csr_matrix(A)
    p, k = Z.indices, _entry_columns(Z)
    n = Ar.indptr[p + 1] - Ar.indptr[p]
    e = np.repeat(np.arange(p.size), n)                     # entry of each product term
    start = np.repeat(Ar.indptr[p], n)
    off = np.arange(e.size) - np.repeat(np.cumsum(n) - n, n)
    j = Ar.indices[start + off]
    terms = Ar.data[start + off].astype(np.float64) * G[j, k[e]]
    return np.bincount(e, weights=terms, minlength=p.size).astype(np.float32)


def _split(values: np.ndarray, masks: list) -> list:
    """Cut a concatenated vector into one float32 array per mask."""
    ends = np.cumsum([len(m) for m in masks])
    return [np.asarray(v, np.float32) for v in np.split(values, ends[:-1])] if masks else []


def _mask_entries(masks: list):
    pix = np.concatenate(masks).astype(np.int64) if masks else np.zeros(0, np.int64)
    col = np.repeat(np.arange(len(masks)), [len(m) for m in masks])
    return pix, col


def ring_spatial_stats(rows, A, C, ring, block_bytes, *, dims, masks) -> list:
    """``Q = (Y - B) C^T`` under the ring model, on each support mask.

    Parameters
    ----------
    rows : RowSource
    A : sparse, shape (P, K)
    C : ndarray, shape (K, T)
    ring : cellextract.cnmf.background.RingModel
    block_bytes : int
    dims : (int, int)
    masks : list of int arrays
        Sorted Fortran pixel indices per component (:func:`support_masks`).

    Returns
    -------
    list of ndarray, float32
        ``Q[mask_k, k]`` for each component.
    """
    C = np.asarray(C, np.float32)
    rects = halo_rects(masks, dims, block=ring.ssub_B, halo_blocks=ring.radius + 1)
    Z, _ = project_rects(rows, C, dims, rects, block_bytes)
    cols = _entry_columns(Z)
    Z.data -= ring.b0[Z.indices] * C.sum(1)[cols]           # Zc = Z - b0 (C 1)^T
    R = Z.copy()
    R.data -= _pattern_product(A, C @ C.T, Z)               # Zc - A C C^T on the rects
    WDR = sp.csc_matrix(ring.W @ (ring.D @ R))              # on the ssub_B grid
    pix, col = _mask_entries(masks)
    q = _gather(Z, pix, col) - _gather(WDR, _block_index(pix, dims, ring.ssub_B), col)
    return _split(q, masks)


def _block_index(pix: np.ndarray, dims, s: int) -> np.ndarray:
    """Index on the ``s x s`` block grid (Fortran order) of full-resolution pixels."""
    H = int(dims[0])
    Hd = -(-H // s)
    return (pix % H) // s + ((pix // H) // s) * Hd


def lowrank_spatial_stats(rows, A, C, b, f, block_bytes, *, dims, masks=None):
    """``(Y - b f) C^T`` on each mask and ``Y f^T`` (P, nb), one streamed pass.

    With ``masks=None`` only ``Y f^T`` is computed (first value None).
    """
    C = np.asarray(C, np.float32)
    ft = np.ascontiguousarray(np.asarray(f, np.float32).T)
    if masks is None:
        _, Yf = project_rects(rows, C[:0], dims, np.zeros((0, 4), np.int64), block_bytes,
                              extra=ft)
        return None, Yf
    rects = halo_rects(masks, dims)
    Z, Yf = project_rects(rows, C, dims, rects, block_bytes, extra=ft)
    pix, col = _mask_entries(masks)
    fC = np.asarray(f, np.float32) @ C.T                    # (nb, K)
    q = _gather(Z, pix, col) - np.einsum("ij,ji->i", np.asarray(b, np.float32)[pix], fC[:, col])
    return _split(q, masks), Yf
