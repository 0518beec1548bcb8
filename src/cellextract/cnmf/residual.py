"""CNMF-E's second initialisation pass: corr_pnr searched again in the model residual.

CaImAn's ``init_iter = 2`` analogue (Zhou et al. 2018): after a first round of updates, in
every patch the fitted neurons and a local ring background are removed from the data and
the residual is searched for seeds with the same thresholds (:func:`residual_search`).
Each patch worker reads its residual column by column
(:class:`cellextract.cnmf.patch_movie.ResidualReader`), never the whole patch at once.
New components that duplicate known ones are dropped.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.background import downsample_operator, fit_ring_model
from cellextract.cnmf.filters import as_pair
from cellextract.cnmf.merge import cross_correlation
from cellextract.cnmf.patches import bin_time, combine_patches, map_patches, patch_grid

__all__ = ["duplicate_corr", "patch_ring_data", "patch_rows", "residual_init_patch", "residual_search"]


def patch_ring_data(reader, tbin: int, ssub_B: int):
    """``D Y`` binned over ``tbin`` frames (P_ds, T // tbin) and the temporal mean of
    ``Y`` (h*w,) of a patch, read column by column."""
    h, w = reader.shape
    D = downsample_operator((h, w), ssub_B)
    mean = np.zeros(h * w, np.float32)
    Yb = np.zeros((h * w, reader.T // tbin), np.float32)
    for c in range(w):
        X = reader.column(c)
        mean[c * h:(c + 1) * h] = X.mean(1)
        Yb[c * h:(c + 1) * h] = bin_time(X, tbin)
    return D @ Yb, mean


def residual_init_patch(reader, pdims, *, A_p, C_p, o: dict):
    """Search one patch's residual (data - neurons - local ring background) for neurons.

    Parameters
    ----------
    reader : cellextract.cnmf.patch_movie.PatchReader
        The patch (h*w, T).
    pdims : (int, int)
    A_p : sparse, shape (h*w, K_p)
        Known footprints restricted to the patch.
    C_p : ndarray, shape (K_p, T)
    o : dict

    Returns
    -------
    (A (h*w, K_new) csc, C (K_new, T), None, None)

    Notes
    -----
    The ring model is fitted on the binned data (``max_bg_frames``); the residual is
    computed column by column as corr_pnr reads it
    (:class:`~cellextract.cnmf.patch_movie.ResidualReader`), never for the whole patch.
    """
    from cellextract.cnmf.init_corr_pnr import init_corr_pnr
    from cellextract.cnmf.patch_movie import ResidualReader
    tbin = max(1, int(np.ceil(reader.T / o["max_bg_frames"])))
    A_p = sp.csc_matrix(A_p, dtype=np.float32)
    C_p = np.asarray(C_p, np.float32)
    Yds, mean_Y = patch_ring_data(reader, tbin, o["ssub_B"])
    ring = fit_ring_model(Yds, A_p, bin_time(C_p, tbin), mean_Y=mean_Y, mean_C=C_p.mean(1),
                          dims=pdims, gSiz=int(as_pair(o["gSiz"], "gSiz")[0]),
                          ring_size_factor=o["ring_size_factor"], ssub_B=o["ssub_B"])
    r = init_corr_pnr(ResidualReader(reader, A_p, C_p, ring), gSig=o["gSig"], gSiz=o["gSiz"],
                      min_corr=o["min_corr"], min_pnr=o["min_pnr"], K=o["K"],
                      center_psf=o["center_psf"], tsub=o["tsub"], ssub=o["ssub"],
                      pnr_noise=o["pnr_noise"], max_bytes=o["patch_bytes"])
    return sp.csc_matrix(r.A, dtype=np.float32), np.asarray(r.C, np.float32), None, None


def patch_rows(patch, dims) -> np.ndarray:
    """Rows of the ``(P, T)`` movie (Fortran pixel order) inside ``patch``."""
    H = int(dims[0])
    (r0, r1), (c0, c1) = patch.rows, patch.cols
    return np.concatenate([np.arange(r0 + c * H, r1 + c * H) for c in range(c0, c1)])


def residual_search(src, dims, A, C, o, n_processes, pool=None):
    """Neurons missed by the first initialisation, found in the model residual.

    The analogue of CNMF-E's second initialisation pass (CaImAn ``init_iter = 2``):
    in every patch the fitted neurons and a local ring background are removed and
    corr_pnr seeds are searched again with the same thresholds. New components that
    duplicate known ones (footprint cosine > ``dup_thr``) are dropped.

    Returns
    -------
    A_new : csc_matrix, shape (P, K_new)
    C_new : ndarray, shape (K_new, T)
    """
    patches = patch_grid(dims, rf=o["rf"], stride=o["stride"], border_pix=o["border_pix"])
    Ar = sp.csr_matrix(A)

    def per_patch(p):                   # made when the patch is sent (C_p: (K_p, T))
        Ap = Ar[patch_rows(p, dims)]
        ks = np.flatnonzero(np.asarray(Ap.getnnz(axis=0)) > 0)
        return dict(A_p=sp.csc_matrix(Ap[:, ks]), C_p=C[ks])

    per = [functools.partial(per_patch, p) for p in patches]
    parts = map_patches(src, dims, patches, residual_init_patch, n_processes=n_processes,
                        per_patch=per, pool=pool, o=o)
    An, Cn = combine_patches([(a, c) for a, c, _, _ in parts], patches, dims,
                             del_duplicates=True, merge_thr=o["merge_thr"],
                             dup_thr=o["dup_thr"], dup_corr=duplicate_corr(o))
    if An.shape[1] == 0 or A.shape[1] == 0:
        return An, Cn
    nA = np.sqrt(np.asarray(A.multiply(A).sum(0))).ravel()
    nN = np.sqrt(np.asarray(An.multiply(An).sum(0))).ravel()
    cos = np.asarray((An.T @ A).todense()) / np.outer(np.maximum(nN, 1e-12), np.maximum(nA, 1e-12))
    dup = cos > o["dup_thr"]
    if duplicate_corr(o) is not None:          # overlapping but independently active: a new cell
        dup &= (cos > o["merge_cos_thr"]) | (cross_correlation(Cn, C) > duplicate_corr(o))
    keep = ~dup.any(axis=1)
    return sp.csc_matrix(An[:, keep]), Cn[keep]


def duplicate_corr(o) -> float | None:
    """Trace correlation a 1P duplicate must also have (see
    :func:`cellextract.cnmf.patches.remove_duplicates`), or None (2P: footprints only)."""
    one_p = o["method_init"] == "corr_pnr" and int(o["nb"]) == 0
    return float(o["merge_thr"]) if (one_p and o["dup_traces"]) else None
