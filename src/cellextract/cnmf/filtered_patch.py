"""The filtered patch of corr_pnr, streamed: per-pixel statistics and seed windows.

corr_pnr (:mod:`cellextract.cnmf.init_corr_pnr`) works on the patch filtered frame by
frame with the (mean-centred) Gaussian kernel, minus each pixel's baseline. Here that
movie is never held whole unless it fits in ``max_bytes``:

* :func:`filtered_statistics` sweeps the patch column by column (a sliding window of
  ``2 kr + g`` averaged columns, ``kr`` the kernel half-width) and returns each pixel's
  baseline (median), noise, PNR and the 8-neighbour correlation of the thresholded traces.
  Baseline and noise need a pixel's whole trace, so a window of columns over all frames
  is the unit of work; correlation sums are accumulated pair by pair.
* :class:`cellextract.cnmf.seed_windows.FilteredStore` hands the greedy search the
  current filtered data on a window around each seed (the kept patch, cached tiles, or
  recomputed from the movie with :func:`filter_block`).

Filtering is separable (the kernels have rank <= 2): along image columns by products
with small blocks of a band matrix (BLAS), along rows with OpenCV on each column's ``(rows, time)``
image; borders are reflected (``BORDER_REFLECT``) at the patch edges, as when filtering
whole frames.

Layout: blocks of columns are ``(n_cols, n_rows, T)`` (the memmap's pixel order, each
pixel's trace contiguous); the kept filtered patch and windows are ``(rows, cols, T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cellextract.cnmf.filters import _separable_terms
from cellextract.cnmf.pixel_stats import _mad_diff_noise, _row_median, psd_noise
from cellextract.cnmf.summary import _CorrSums
from cellextract.errors import ParameterError

__all__ = ["filtered_statistics", "PatchStats", "filter_block", "reflect_index"]

_ONE = np.ones((1, 1), np.float32)


def reflect_index(p: int, n: int) -> int:
    """OpenCV's ``BORDER_REFLECT`` (``fedcba|abcdefgh|hgfedcb``) index into [0, n)."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p - 1 if p < 0 else 2 * n - p - 1
    return p


def _band(taps: np.ndarray, out: tuple[int, int], inp: tuple[int, int], n: int) -> np.ndarray:
    """Matrix (n_out, n_in) correlating columns ``inp`` with ``taps`` into columns ``out``."""
    r = taps.size // 2
    M = np.zeros((out[1] - out[0], inp[1] - inp[0]), np.float32)
    for i, o in enumerate(range(*out)):
        for j, w in enumerate(taps):
            q = reflect_index(o + j - r, n) - inp[0]
            if not 0 <= q < M.shape[1]:
                raise ValueError(f"filter input columns {inp} miss column {q + inp[0]}")
            M[i, q] += w
    return M


def _band_groups(M: np.ndarray, size: int = 8) -> list:
    """Split a band matrix into groups of ``size`` output rows, each with the span of input
    columns it uses: ``(a, b, q0, q1, M[a:b, q0:q1])`` (fewer multiplications by zero)."""
    out = []
    for a in range(0, M.shape[0], size):
        b = min(M.shape[0], a + size)
        nz = np.flatnonzero(np.abs(M[a:b]).sum(axis=0) > 0)
        q0, q1 = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        out.append((a, b, q0, q1, np.ascontiguousarray(M[a:b, q0:q1])))
    return out


_BANDS: dict = {}


def _bands(taps, out, inp, n) -> list:
    """:func:`_band_groups` of :func:`_band`, memoised (seed windows repeat few shapes)."""
    key = (taps.tobytes(), tuple(out), tuple(inp), int(n))
    if key not in _BANDS:
        if len(_BANDS) > 4096:
            _BANDS.clear()
        _BANDS[key] = _band_groups(_band(taps, out, inp, n))
    return _BANDS[key]


def _terms(kernel):
    terms = _separable_terms(kernel, max_rank=max(kernel.shape))
    if terms is None:
        raise ParameterError("corr_pnr: the filter kernel is zero")
    return [(np.ascontiguousarray(kc.ravel()), np.ascontiguousarray(kr.ravel()))
            for kc, kr in terms]


def filter_block(Y: np.ndarray, cols_in: tuple[int, int], cols_out: tuple[int, int], width: int,
                 kernel: np.ndarray, *, rows_out: tuple[int, int] | None = None,
                 t_chunk: int = 1024) -> np.ndarray:
    """Filter frames given as a block of columns.

    Parameters
    ----------
    Y : ndarray, shape (n_in, n_rows, T), float32
        Columns ``cols_in`` of the movie (all rows of interest), each pixel's trace
        contiguous.
    cols_in, cols_out : (int, int)
        Column ranges; ``cols_in`` must hold every column (after reflection at 0 and
        ``width``) that the kernel reaches from ``cols_out``.
    width : int
        Number of columns of the whole image (reflection at its edges).
    kernel : ndarray, shape (kh, kw)
    rows_out : (int, int), optional
        Rows of the block to return (default all).
    t_chunk : int, optional
        Frames per product (bounds the temporaries); default all.

    Returns
    -------
    ndarray, shape (n_out, n_rows_out, T), float32
        Rows are reflected at the block's first and last row: rows within ``kh // 2`` of
        a block edge that is not an image edge are not exact.
    """
    n_in, nr, T = Y.shape
    ro = (0, nr) if rows_out is None else rows_out
    n_out = cols_out[1] - cols_out[0]
    out = np.empty((n_out, ro[1] - ro[0], T), np.float32)
    step = T if t_chunk is None else max(1, int(t_chunk))
    Y = np.ascontiguousarray(Y) if step >= T else Y
    for i, (kc, kx) in enumerate(_terms(kernel)):
        bands = _bands(kx, cols_out, cols_in, width)
        for t0 in range(0, T, step):
            t1 = min(T, t0 + step)
            Yc = Y if step >= T else np.ascontiguousarray(Y[:, :, t0:t1])
            Z = np.empty((n_out, nr, t1 - t0), np.float32)
            for a, b, q0, q1, Mg in bands:               # along columns: small products
                Z[a:b] = (Mg @ Yc[q0:q1].reshape(q1 - q0, -1)).reshape(b - a, nr, t1 - t0)
            for j in range(n_out):
                part = cv2.sepFilter2D(Z[j], cv2.CV_32F, _ONE, kc,
                                       borderType=cv2.BORDER_REFLECT)[ro[0]:ro[1]]
                if i == 0:
                    out[j, :, t0:t1] = part
                else:
                    out[j, :, t0:t1] += part
    return out


# --------------------------------------------------------------------------- statistics


@dataclass
class PatchStats:
    """Per-pixel statistics of the filtered patch, shape (h, w) each, float32.

    ``F`` is the filtered patch minus its baseline, (h, w, T), when it was kept.
    """

    base: np.ndarray
    sigma: np.ndarray
    pnr: np.ndarray
    cn: np.ndarray
    F: np.ndarray | None


def _noise(X: np.ndarray, method: str) -> np.ndarray:
    if method not in ("robust", "psd", "mad"):
        raise ParameterError(f"noise_method must be 'robust', 'psd' or 'mad', got {method!r}")
    sigma = psd_noise(X) if method in ("psd", "robust") else None
    if method in ("mad", "robust") and X.shape[1] > 2:
        mad = _mad_diff_noise(X)
        sigma = mad if method == "mad" else np.minimum(sigma, mad)
    return sigma


def _row_stats(F: np.ndarray, method: str, rows: int = 256):
    """Median and noise of each row of ``F`` (n, T), in blocks of rows."""
    base = np.empty(F.shape[0], np.float32)
    sigma = np.empty(F.shape[0], np.float32)
    for r0 in range(0, F.shape[0], rows):
        blk = np.array(F[r0:r0 + rows], dtype=np.float32, order="C")
        sigma[r0:r0 + rows] = _noise(blk, method)
        base[r0:r0 + rows] = _row_median(blk)
    return base, sigma


def _add_pairs(acc: _CorrSums, X: np.ndarray, prev: np.ndarray | None, c0: int) -> None:
    """Add thresholded columns ``c0..`` (X: (n, h, T)) to the correlation sums; pairs with
    the column before (``prev`` (h, T)) are counted here, pairs within it were earlier."""
    n, h, _ = X.shape
    c1 = c0 + n
    acc.s1[:, c0:c1] += X.sum(axis=2, dtype=np.float64).T
    acc.s2[:, c0:c1] += np.einsum("crt,crt->cr", X, X).T
    Xe = X if prev is None else np.concatenate([prev[None], X])
    e0 = c0 if prev is None else c0 - 1               # first column of Xe
    for acc_s, (dr, dc) in zip(acc.sx, ((0, 1), (1, 0), (1, 1), (1, -1))):
        if dc == 0:
            v = np.einsum("crt,crt->cr", X[:, :h - dr], X[:, dr:])
            acc_s[:, c0:c1] += v.T
        elif Xe.shape[0] > 1:
            if dc == 1:
                v = np.einsum("crt,crt->cr", Xe[:-1, :h - dr], Xe[1:, dr:])
            else:                                      # p = (r, c), q = (r + 1, c - 1)
                v = np.einsum("crt,crt->cr", Xe[1:, :h - dr], Xe[:-1, dr:])
            acc_s[:, e0:e0 + Xe.shape[0] - 1] += v.T


def _group_width(h: int, T: int, kr: int, max_bytes: float) -> int:
    """Output columns per step: the window of ``g + 2 kr`` input columns plus ``g``
    filtered columns fit in ``max_bytes`` (at least 2)."""
    col = 4.0 * h * max(T, 1)
    return int(max(2, (max_bytes / col - 2 * kr) // 2))


def filtered_statistics(movie, kernel: np.ndarray, *, noise_thr: float = 3.0,
                        noise_method: str = "psd", max_bytes: float = 48e6,
                        keep: bool | None = None) -> PatchStats:
    """Baseline, noise, PNR and correlation images of the filtered movie, one sweep.

    Parameters
    ----------
    movie : AveragedMovie
        ``shape (h, w)``, ``Td`` frames, ``columns()``.
    kernel : ndarray
        Filter (:func:`cellextract.cnmf.summary.summary_kernel`).
    noise_thr : float
        Threshold (noise sigmas) of the traces entering the correlation image.
    noise_method : {'psd', 'robust', 'mad'}
        See :func:`cellextract.cnmf.summary.baseline_noise`.
    max_bytes : float
        Memory budget: sets the number of columns filtered at once and, with ``keep``
        None, whether the filtered patch (``4 h w Td`` bytes) is kept.
    keep : bool, optional

    Returns
    -------
    PatchStats
        The noise is floored at ``1e-12 (max |F| + 1)`` per block of columns (constant
        pixels).
    """
    h, w = movie.shape
    T = movie.Td
    kr = kernel.shape[1] // 2
    keep = (4.0 * h * w * T <= max_bytes) if keep is None else keep
    g = min(w, _group_width(h, T, kr, max_bytes))
    base = np.zeros((h, w), np.float32)
    sigma = np.zeros((h, w), np.float32)
    fmax = np.zeros((h, w), np.float32)
    F_all = np.empty((h, w, T), np.float32) if keep else None
    acc = _CorrSums((h, w))
    acc.n = T
    cols = movie.columns()
    buf = np.empty((min(w, g + 2 * kr), h, T), np.float32)  # averaged columns b0 .. b1-1
    b0 = b1 = 0
    prev = None
    for o0 in range(0, w, g):
        o1 = min(w, o0 + g)
        i0, i1 = max(o0 - kr, 0), min(o1 + kr, w)
        if i0 > b0:                                        # slide the window
            buf[:b1 - i0] = buf[i0 - b0:b1 - b0]
            b0 = i0
        while b1 < i1:
            buf[b1 - b0] = next(cols)[1]
            b1 += 1
        F = filter_block(buf[:i1 - i0], (i0, i1), (o0, o1), w, kernel)
        bs, sg = _row_stats(F.reshape(-1, T), noise_method)
        bs, sg = bs.reshape(o1 - o0, h), sg.reshape(o1 - o0, h)
        F -= bs[:, :, None]
        sg = np.maximum(sg, 1e-12 * (max(float(F.max()), -float(F.min())) + 1))
        base[:, o0:o1], sigma[:, o0:o1] = bs.T, sg.T
        fmax[:, o0:o1] = F.max(axis=2).T
        if keep:
            F_all[:, o0:o1] = F.transpose(1, 0, 2)
        F[F < noise_thr * sg[:, :, None]] = 0.0           # thresholded traces, in place
        _add_pairs(acc, F, prev, o0)
        prev = F[-1].copy()
        del F
    pnr = np.maximum(fmax / sigma, 0).astype(np.float32)
    return PatchStats(base=base, sigma=sigma, pnr=pnr, cn=acc.image(), F=F_all)
