"""Resampling between the full-resolution movie and the ``tsub`` / ``ssub`` grid of the
initialisations (shared by ``corr_pnr``, ``greedy_roi`` and ``sparse_nmf``), and packing of
footprint images and traces into an :class:`~cellextract.cnmf.initresult.InitResult`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.initresult import InitResult, empty_result, footprint_centers
from cellextract.cnmf.pixel_stats import fill_nonfinite

__all__ = ["downsample_movie", "upsample_traces", "upsample_footprints", "to_init_result",
           "resize_image"]


def downsample_movie(Y: np.ndarray, tsub: int = 1, ssub: int = 1) -> np.ndarray:
    """Average ``tsub`` consecutive frames and ``ssub x ssub`` pixel blocks.

    Parameters
    ----------
    Y : ndarray, shape (T, h, w)
    tsub, ssub : int
        Factors; a last partial frame bin / pixel block is averaged over what exists
        (pixels are edge-padded).

    Returns
    -------
    ndarray, shape (ceil(T / tsub), ceil(h / ssub), ceil(w / ssub)), float32
    """
    Y = np.asarray(Y, dtype=np.float32)
    if not np.isfinite(Y).all():
        Y = fill_nonfinite(Y.copy())
    if tsub > 1:
        T = Y.shape[0]
        n = T // tsub
        head = Y[:n * tsub].reshape(n, tsub, *Y.shape[1:]).mean(axis=1)
        Y = head if n * tsub == T else np.concatenate([head, Y[n * tsub:].mean(axis=0)[None]])
    if ssub > 1:
        T, h, w = Y.shape
        hp, wp = -(-h // ssub) * ssub, -(-w // ssub) * ssub
        if (hp, wp) != (h, w):
            Y = np.pad(Y, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")
        Y = Y.reshape(T, hp // ssub, ssub, wp // ssub, ssub).mean(axis=(2, 4))
    return np.ascontiguousarray(Y, dtype=np.float32)


def upsample_traces(C: np.ndarray, T: int, tsub: int) -> np.ndarray:
    """Linear interpolation of traces of frame bins (``tsub`` frames each) to ``T`` frames.

    Parameters
    ----------
    C : ndarray, shape (K, Td)
    T : int
        Number of full-resolution frames.

    Returns
    -------
    ndarray, shape (K, T), float32
    """
    C = np.asarray(C, dtype=np.float32)
    if tsub <= 1:
        return C[:, :T].copy()
    Td = C.shape[1]
    starts = np.arange(Td) * tsub
    ends = np.minimum(starts + tsub, T)
    centres = (starts + ends - 1) / 2.0
    t = np.arange(T)
    return np.stack([np.interp(t, centres, c) for c in C]).astype(np.float32) if len(C) else \
        np.zeros((0, T), np.float32)


def upsample_footprints(imgs: np.ndarray, dims: tuple[int, int], ssub: int) -> np.ndarray:
    """Block-replicate footprint images (K, hd, wd) to (K, h, w)."""
    if ssub <= 1:
        return imgs
    h, w = dims
    up = np.repeat(np.repeat(imgs, ssub, axis=1), ssub, axis=2)
    return up[:, :h, :w]


def to_init_result(imgs: np.ndarray, C: np.ndarray, dims, *, cn, pnr, **kw) -> InitResult:
    """Pack footprint images (K, h, w) and traces (K, T) into an :class:`InitResult`.

    Columns of ``A`` are L2-normalised and ``C`` rows scaled by the norms (``A @ C``
    unchanged). Empty footprints are dropped.
    """
    h, w = dims
    K = imgs.shape[0]
    flat = imgs.transpose(0, 2, 1).reshape(K, h * w)  # Fortran pixel order per component
    norms = np.sqrt((flat.astype(np.float64) ** 2).sum(axis=1))
    keep = norms > 0
    flat, C, norms = flat[keep], np.asarray(C)[keep], norms[keep]
    if not keep.any():
        return empty_result(dims, C.shape[1], cn=cn, pnr=pnr, **kw)
    A = sp.csc_matrix((flat / norms[:, None]).astype(np.float32).T)
    C = (C * norms[:, None]).astype(np.float32)
    return InitResult(A=A, C=C, centers=footprint_centers(A, dims), cn=cn, pnr=pnr,
                      dims=(int(h), int(w)), **kw)


def resize_image(img: np.ndarray, dims) -> np.ndarray:
    """Upsample a summary image by block replication and crop to ``dims``."""
    h, w = dims
    fy, fx = -(-h // img.shape[0]), -(-w // img.shape[1])
    return np.repeat(np.repeat(img, fy, axis=0), fx, axis=1)[:h, :w].astype(np.float32)
