"""One seed of the ``corr_pnr`` initialisation (:mod:`cellextract.cnmf.init_corr_pnr`, steps
3-4): the footprint from a regression of the raw traces on the seed's trace and the local
ring background, the trace from the filtered data, the rise test, and the subtraction of the
component from the filtered data with the refresh of the PNR / correlation images around it.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

from cellextract.cnmf.filters import filter_image
from cellextract.cnmf.summary import _threshold, neighbour_correlation

__all__ = ["estimate_neuron", "rise_score", "subtract_and_update", "window_rect"]


def _box(center, R, shape):
    r, c = center
    return (slice(max(r - R, 0), min(r + R + 1, shape[0])),
            slice(max(c - R, 0), min(c + R + 1, shape[1])))


def _ring_traces(Yp: np.ndarray, center, R: int, width: int) -> np.ndarray:
    """Local background traces: median raw trace of each side (top, bottom, left, right)
    of the ring of pixels at Chebyshev distance R+1 .. R+width from ``center``.

    Sides cut off by the image border are skipped; if no side remains, the box rim is
    used. ``Yp`` is pixel-major, shape (h, w, T).

    Returns
    -------
    ndarray, shape (n_sides, T), float32
    """
    outer = _box(center, R + width, Yp.shape[:2])
    sub = Yp[outer[0], outer[1]]
    rr = np.arange(outer[0].start, outer[0].stop)[:, None] - center[0]
    cc = np.arange(outer[1].start, outer[1].stop)[None, :] - center[1]
    cheb = np.maximum(np.abs(rr), np.abs(cc))
    sides = [(rr < -R) & (cheb > R), (rr > R) & (cheb > R), (cc < -R) & (cheb > R), (cc > R) & (cheb > R)]
    sides = [m for m in sides if m.sum() >= 3]
    if not sides:
        sides = [cheb >= R - 1]
    out = []
    for m in sides:
        X = np.ascontiguousarray(sub[m].T)  # (T, n)
        k = X.shape[1] // 2
        X.partition(k, axis=1)
        out.append(X[:, k])
    return np.asarray(out, np.float32)


def _regress(Rb: np.ndarray, c: np.ndarray, G: np.ndarray, *, centred: bool = False):
    """Least squares of pixel traces Rb (n, T) on [1, c, G] (G: (m, T) background traces).

    ``centred``: the rows of ``Rb`` already have zero mean (saves a copy of ``Rb``).

    Returns
    -------
    coef_c : ndarray, shape (n,)
        ``c`` coefficients.
    tval : ndarray, shape (n,)
        Their t-values.
    """
    T = Rb.shape[1]
    Rc = Rb if centred else Rb - Rb.mean(axis=1)[:, None]
    D = np.vstack([c[None], G]).astype(np.float32)
    D = D - D.mean(axis=1, keepdims=True)  # (1 + m, T), centred
    Gm = D.astype(np.float64) @ D.T.astype(np.float64)
    Gi = np.linalg.pinv(Gm)
    B = (Rc @ D.T).T.astype(np.float64)  # (1 + m, n)
    coef = Gi @ B
    ss = np.einsum("it,it->i", Rc, Rc).astype(np.float64)
    res_var = np.maximum((ss - (coef * B).sum(axis=0)) / max(T - D.shape[0] - 1, 1), 1e-20)
    se = np.sqrt(res_var * max(Gi[0, 0], 1e-30))
    return coef[0], coef[0] / se


def _clean(a: np.ndarray, tval: np.ndarray, seed_rc) -> np.ndarray:
    """Keep positive, significant coefficients connected to the seed (box images)."""
    if a[seed_rc] <= 0:
        return np.zeros_like(a)
    keep = (a > 0) & (tval > 3.0) & (a >= 0.05 * a.max())
    keep[seed_rc] = True
    lab, _ = ndi.label(keep)
    mask = lab == lab[seed_rc]
    return np.where(mask, a, 0.0)


def _filtered_trace(Fp: np.ndarray, img: np.ndarray, kernel: np.ndarray, kr) -> np.ndarray:
    """Least-squares trace of the filtered data Fp (h, w, T) on the filtered footprint
    ``k * a``. Its weights sum to ~0, so smooth background residue cancels out."""
    rows, cols = np.nonzero(img)
    sl = (slice(max(rows.min() - kr[0], 0), rows.max() + kr[0] + 1),
          slice(max(cols.min() - kr[1], 0), cols.max() + kr[1] + 1))
    af = filter_image(img, kernel)[sl]
    nrm = float((af.astype(np.float64) ** 2).sum())
    return (np.einsum("ij,ijt->t", af, Fp[sl[0], sl[1]]) / max(nrm, 1e-30)).astype(np.float32)


def estimate_neuron(Yb: np.ndarray, boff, c: np.ndarray, window, seed, R: int,
                     kernel: np.ndarray, n_iter: int = 2):
    """Footprint (image of the window's shape), trace and filtered window for one seed;
    None if it fails.

    ``c`` is the seed's filtered trace (baseline removed, found neurons subtracted);
    ``window()`` returns the filtered data on the seed's window (h, w, T) and is called
    only once the first footprint is non-empty (a recomputed window is the costly part).
    ``Yb`` holds the raw (averaged) data, pixel-major, on a rectangle that starts at window
    pixel ``boff`` and covers ``seed +- (R + 2)`` (clipped at the patch edges only). The
    footprint comes from the raw data (regression on ``[1, c, g]``), the trace from the
    filtered data (projection on the filtered footprint), which is free of background.
    """
    Fp = None
    shape = (boff[0] + Yb.shape[0], boff[1] + Yb.shape[1])     # clipping as the window's
    box = _box(seed, R, shape)
    seed_rc = (seed[0] - box[0].start, seed[1] - box[1].start)
    bh, bw = box[0].stop - box[0].start, box[1].stop - box[1].start
    kr = kernel.shape[0] // 2, kernel.shape[1] // 2
    rb = (slice(box[0].start - boff[0], box[0].stop - boff[0]),
          slice(box[1].start - boff[1], box[1].stop - boff[1]))
    Rb = np.array(Yb[rb[0], rb[1]], dtype=np.float32).reshape(bh * bw, -1)   # a copy
    Rb -= Rb.mean(axis=1, keepdims=True)         # centred once for the n_iter regressions
    G = _ring_traces(Yb, (seed[0] - boff[0], seed[1] - boff[1]), R, 2)
    c = np.array(c, dtype=np.float32)
    img = None
    for _ in range(n_iter):
        coef, tval = _regress(Rb, c, G, centred=True)
        a = _clean(coef.reshape(bh, bw), tval.reshape(bh, bw), seed_rc)
        if not a.any():
            return None
        if Fp is None:
            Fp = window()
            img = np.zeros(Fp.shape[:2], np.float32)
        img[:] = 0
        img[box] = a
        c = _filtered_trace(Fp, img, kernel, kr)
    return img, c, Fp


def rise_score(c: np.ndarray, lags=(1, 2, 4, 8)) -> float:
    """Largest rise of a trace relative to noise, over several lags.

    For each lag ``L`` the differences ``d = c[t+L] - c[t]`` are scaled by their robust
    standard deviation (MAD); the score is the largest ``max(d) / sd`` over lags. Calcium
    transients rise within a few frames, giving large scores (about amplitude / noise),
    while slow background waves give at most ~2 whatever their amplitude, and noise ~3-4.
    """
    c = np.asarray(c, dtype=np.float64)
    best = 0.0
    for L in lags:
        if L >= c.size - 2:
            break
        d = c[L:] - c[:-L]
        sd = np.median(np.abs(d - np.median(d))) * 1.4826
        if sd > 0:
            best = max(best, float(d.max() / sd))
    return best


def window_rect(center, margin: int, shape):
    """Rectangle ``(r0, r1, c0, c1)`` of half-width ``margin`` around ``center``, clipped."""
    b = _box(center, margin, shape)
    return b[0].start, b[0].stop, b[1].start, b[1].stop


def subtract_and_update(Fp, img, c, kernel, sigma, noise_thr, cn, pnr):
    """Remove a component from the filtered data Fp (h, w, T) and refresh cn / pnr around
    it (in place). Each filtered trace on the footprint dilated by the kernel radius loses
    its least-squares projection on ``c``.

    Returns
    -------
    cons : float
        Spatial consistency: correlation, over that region, between the filtered
        footprint predicted from the raw footprint (``kernel * img``) and the observed
        projection coefficients of the filtered data on ``c``. Neurons give ~0.8-1;
        background structure (vessel edges, out-of-focus blobs) gives lower values.
    sub : (rows, cols, coef) or None
        The subtraction made: ``coef[i] * c`` at pixel ``(rows[i], cols[i])``.
    """
    hd, wd = img.shape
    kr = kernel.shape[0] // 2, kernel.shape[1] // 2
    rows, cols = np.nonzero(img)
    r0, r1 = max(rows.min() - kr[0], 0), min(rows.max() + kr[0] + 1, hd)
    c0, c1 = max(cols.min() - kr[1], 0), min(cols.max() + kr[1] + 1, wd)
    msk = ndi.binary_dilation(img[r0:r1, c0:c1] > 0,
                              structure=np.ones((2 * kr[0] + 1, 2 * kr[1] + 1), bool))
    sub = Fp[r0:r1, c0:c1]
    cc = float(c @ c)
    cons, done = 0.0, None
    if cc > 0:
        X = sub[msk]  # (n, T) copy
        coef = (X @ c) / cc
        pred = filter_image(img, kernel)[r0:r1, c0:c1][msk]
        if coef.size > 2 and coef.std() > 0 and pred.std() > 0:
            cons = float(np.corrcoef(pred, coef)[0, 1])
        coef = coef.astype(np.float32)
        X -= coef[:, None] * c[None, :]
        sub[msk] = X
        mr, mc = np.nonzero(msk)
        done = (mr + r0, mc + c0, coef)
    pnr[r0:r1, c0:c1] = np.maximum(sub.max(axis=2) / sigma[r0:r1, c0:c1], 0)
    # correlation: recompute on the region + 1 px margin, keep the region's values
    R0, R1, C0, C1 = max(r0 - 1, 0), min(r1 + 1, hd), max(c0 - 1, 0), min(c1 + 1, wd)
    X = _threshold(Fp[R0:R1, C0:C1].copy(), 0, sigma[R0:R1, C0:C1, None], noise_thr)
    cn_sub = neighbour_correlation(X, pixel_major=True)
    cn[r0:r1, c0:c1] = cn_sub[r0 - R0:r0 - R0 + (r1 - r0), c0 - C0:c0 - C0 + (c1 - c0)]
    return cons, done
