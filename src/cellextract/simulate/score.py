"""Score extracted components and estimated shifts against simulator ground truth.

Footprint matching (:func:`score`)
----------------------------------
1. Each footprint (true and found) is binarised at ``mask_frac`` (default 0.25) of its
   own maximum, giving a mask.
2. For every (true, found) pair the Jaccard index ``IoU = |M_t & M_f| / |M_t | M_f|``
   of the masks is computed.
3. A pair is *admissible* when ``IoU >= iou_thr`` (default 0.3, the criterion of
   CaImAn's ROI registration, cost ``1 - IoU <= 0.7``) and, if ``max_dist`` is given,
   the mask centroids are at most ``max_dist`` px apart.
4. A one-to-one assignment maximising the total IoU over admissible pairs is found with
   the Hungarian algorithm; assigned admissible pairs are true positives. Unmatched
   found components are false positives, unmatched true neurons are misses.

``precision = TP / n_found``, ``recall = TP / n_true``, ``F1 = 2 P R / (P + R)``.
``recall_detectable`` is the recall over true neurons with ``truth.snr >= snr_min``
(single-spike amplitude >= ``snr_min`` times the noise of the footprint-weighted trace)
that fire in at least ``min_events`` frames (a silent neuron cannot be found).

Traces: for each match, Pearson correlation of the found ``C`` with the true calcium.
Spikes: Pearson correlation of the found ``S`` with the true ``S`` after smoothing both
with a Gaussian of ``spike_sigma`` seconds (default 0.1 s, at least 0.5 frame), which
tolerates one-frame timing errors.

Motion (:func:`shift_rmse`): root-mean-square Euclidean error of shifts, optionally after
removing the constant offset between estimate and truth (a template is only defined up to
a translation).

Results on a motion-corrected movie
-----------------------------------
A motion-corrected movie is registered to its template, not to the simulator's unmoved
frame. With the registration convention (:mod:`cellextract.simulate.motion`), estimated
shifts ``e_t`` and true shifts ``s_t`` give ``corrected(p) = unmoved(p + d_t)`` with
``d_t = s_t - e_t``: a neuron at ``q`` in the truth frame sits at ``q - d`` in the
corrected movie. ``d`` is constant up to the registration error, and its median over
frames (:func:`template_offset`) is a robust estimate of the template's offset. For
piecewise-rigid registration the offset varies slowly over the field of view (the
template is the average of deformed frames), so it is best evaluated per found component
at its centroid, from the estimated and true shift fields there. ``score(...,
offset=d)`` translates every found footprint by ``+d`` (sub-pixel, bilinear) before
binarising it, which puts it in the truth frame. ``align=True`` instead estimates one
global integer offset from the masks themselves (phase correlation); use it only when the
shifts are unknown.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from cellextract.errors import ParameterError
from cellextract.simulate.truth import Truth, load_truth

__all__ = ["score", "shift_rmse", "binary_masks", "mask_iou", "match_components",
           "trace_correlations", "template_offset", "translate_footprints"]


def binary_masks(A, *, frac: float = 0.25) -> sp.csc_matrix:
    """Binarise footprints at ``frac`` of each column's maximum.

    Parameters
    ----------
    A : array or sparse matrix, shape (P, K)

    Returns
    -------
    M : scipy.sparse.csc_matrix, shape (P, K), float32 with values 0/1.
    """
    A = sp.csc_matrix(A, dtype=np.float32)
    A.sum_duplicates()
    mx = np.asarray(A.max(axis=0).todense()).ravel() if A.shape[1] else np.zeros(0)
    cols = np.repeat(np.arange(A.shape[1]), np.diff(A.indptr))
    M = A.copy()
    M.data = ((A.data >= frac * mx[cols]) & (A.data > 0)).astype(np.float32)
    M.eliminate_zeros()
    return M


def mask_iou(Mt: sp.spmatrix, Mf: sp.spmatrix) -> np.ndarray:
    """Jaccard index of every pair of masks, (K_true, K_found)."""
    inter = np.asarray((Mt.T @ Mf).todense(), np.float64)
    nt = np.asarray(Mt.sum(0)).ravel()
    nf = np.asarray(Mf.sum(0)).ravel()
    union = nt[:, None] + nf[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _centroids(M: sp.spmatrix, dims) -> np.ndarray:
    """Mask centroids ``(row, col)``, (K, 2); Fortran pixel order."""
    H, _ = dims
    idx = np.arange(M.shape[0])
    rows, cols = idx % H, idx // H
    n = np.maximum(np.asarray(M.sum(0)).ravel(), 1e-12)
    return np.stack([(M.T @ rows) / n, (M.T @ cols) / n], 1)


def _shift_masks(M: sp.csc_matrix, dims, offset) -> sp.csc_matrix:
    """Translate masks by an integer ``(dy, dx)`` (pixels leaving the frame are dropped)."""
    H, W = dims
    dy, dx = (int(round(v)) for v in offset)
    Mc = M.tocoo()
    r, c = Mc.row % H + dy, Mc.row // H + dx
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    return sp.csc_matrix((Mc.data[ok], (r[ok] + c[ok] * H, Mc.col[ok])), shape=M.shape)


def _estimate_offset(Mt, Mf, dims) -> tuple[float, float]:
    """Translation (dy, dx) that moves the found masks onto the true ones."""
    H, W = dims
    it = np.asarray(Mt.sum(1)).reshape(W, H).T.astype(np.float64)
    jf = np.asarray(Mf.sum(1)).reshape(W, H).T.astype(np.float64)
    (sx, sy), _ = cv2.phaseCorrelate(jf, it)
    return float(sy), float(sx)


def template_offset(est, true) -> np.ndarray:
    """Offset of a registration template from the truth frame.

    Parameters
    ----------
    est, true : ndarray, shape (T, 2, ...)
        Estimated and true registration shifts ``(dy, dx)`` (px) of every frame, e.g.
        rigid shifts (T, 2) or field values at ``n`` positions (T, 2, n).

    Returns
    -------
    d : ndarray, shape (2, ...)
        Median over frames of ``true - est`` (px; NaN frames ignored): the translation
        that moves content of the corrected movie into the truth frame (see module
        docstring).
    """
    est, true = np.asarray(est, np.float64), np.asarray(true, np.float64)
    if est.shape != true.shape or est.ndim < 2 or est.shape[1] != 2:
        raise ParameterError(f"template_offset: shapes {est.shape} and {true.shape} must match, (T, 2, ...)")
    return np.nanmedian(true - est, axis=0)


def translate_footprints(A, dims, offset) -> sp.csc_matrix:
    """Translate footprints by sub-pixel offsets (bilinear; mass leaving the frame is lost).

    Parameters
    ----------
    A : array or sparse matrix, shape (H*W, K)
        Footprints, Fortran pixel order.
    dims : (H, W)
    offset : array-like, shape (2,) or (K, 2)
        ``(dy, dx)`` px, one for all columns or one per column; content at ``(y, x)`` moves
        to ``(y + dy, x + dx)``.

    Returns
    -------
    scipy.sparse.csc_matrix, shape (H*W, K), float32
    """
    H, W = (int(d) for d in dims)
    A = sp.csc_matrix(A, dtype=np.float32)
    K = A.shape[1]
    off = np.broadcast_to(np.asarray(offset, np.float64).reshape(-1, 2), (K, 2))
    cols = []
    for k in range(K):
        img = A[:, k].toarray().reshape(W, H).T
        M = np.float64([[1, 0, off[k, 1]], [0, 1, off[k, 0]]])
        moved = cv2.warpAffine(np.ascontiguousarray(img), M, (W, H), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        cols.append(sp.csc_matrix(moved.T.reshape(-1, 1)))
    return sp.hstack(cols, format="csc") if cols else A.copy()


def match_components(iou: np.ndarray, *, iou_thr: float = 0.3, dist=None,
                     max_dist: float | None = None) -> list[tuple[int, int]]:
    """Hungarian one-to-one matching on ``1 - IoU`` over admissible pairs.

    Returns
    -------
    list of (true_index, found_index)
    """
    if iou.size == 0:
        return []
    ok = iou >= iou_thr
    if max_dist is not None and dist is not None:
        ok &= dist <= max_dist
    cost = np.where(ok, 1.0 - iou, 10.0)
    r, c = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(r, c) if ok[i, j]]


def trace_correlations(X: np.ndarray, Y: np.ndarray, pairs, *, sigma: float = 0.0) -> np.ndarray:
    """Pearson correlation of ``X[i]`` and ``Y[j]`` for each pair, optionally smoothed.

    Parameters
    ----------
    X, Y : ndarray, shapes (K1, T) and (K2, T)
    pairs : list of (i, j)
    sigma : float
        Gaussian smoothing (frames) applied to both before correlating.

    Returns
    -------
    r : ndarray, shape (len(pairs),); NaN where a trace is constant.
    """
    out = np.full(len(pairs), np.nan)
    for n, (i, j) in enumerate(pairs):
        a, b = np.asarray(X[i], np.float64), np.asarray(Y[j], np.float64)
        if sigma > 0:
            a, b = gaussian_filter1d(a, sigma), gaussian_filter1d(b, sigma)
        a, b = a - a.mean(), b - b.mean()
        den = np.sqrt((a * a).sum() * (b * b).sum())
        if den > 0:
            out[n] = float((a * b).sum() / den)
    return out


def _median(x) -> float | None:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else None


def score(A_found, dims, truth, *, C_found=None, S_found=None, mask_frac: float = 0.25,
          iou_thr: float = 0.3, max_dist: float | None = None, align: bool = False,
          offset=None, snr_min: float = 3.0, min_events: int = 1, spike_sigma: float = 0.1) -> dict:
    """Compare found components with the ground truth.

    Parameters
    ----------
    A_found : array or sparse matrix, shape (H*W, K_found)
        Found footprints, Fortran pixel order (CaImAn's ``A``).
    dims : (H, W)
        Must equal the truth's dims.
    truth : Truth or path of a truth HDF5 file
    C_found, S_found : ndarray, shape (K_found, T), optional
        Found calcium traces / deconvolved activity (T must equal the truth's).
    mask_frac, iou_thr, max_dist : float
        Matching rule (see module docstring).
    align : bool
        First translate the found masks by the integer offset that best aligns them
        with the true masks (for results on a motion-corrected movie whose template is
        offset from the unmoved frame) when the registration shifts are unknown.
    offset : array-like, shape (2,) or (K_found, 2), optional
        Known translation ``(dy, dx)`` (px, sub-pixel) from the found components' frame
        to the truth frame, one for all or one per component (see
        :func:`template_offset`); applied to the footprints before binarising. Not
        combined with ``align``.
    snr_min : float
        SNR threshold defining "detectable" true neurons.
    min_events : int
        Minimum number of frames with spikes for a true neuron to be "detectable".
    spike_sigma : float
        Smoothing (s) of the spike trains before correlating them.

    Returns
    -------
    dict
        Scalars ``n_true, n_found, TP, FP, FN, precision, recall, F1,
        recall_detectable, n_detectable, mean_iou, median_trace_corr,
        median_spike_corr`` (None when not computable) and lists ``matches`` ([true,
        found] pairs), ``iou``, ``trace_corr``, ``spike_corr``, ``missed``,
        ``false_positives``, ``offset`` (the applied one; the median over components for
        per-component offsets). JSON-serialisable.
    """
    if not isinstance(truth, Truth):
        truth = load_truth(truth)
    dims = tuple(int(d) for d in dims)
    if dims != tuple(truth.dims):
        raise ParameterError(f"score: dims {dims} differ from the truth's {tuple(truth.dims)}")
    A_found = sp.csc_matrix(A_found)
    if A_found.shape[0] != dims[0] * dims[1]:
        raise ParameterError(f"score: A has {A_found.shape[0]} pixels, expected {dims[0] * dims[1]}")
    if offset is not None and align:
        raise ParameterError("score: give either offset or align=True, not both")
    applied = (0.0, 0.0)
    if offset is not None:
        off = np.asarray(offset, np.float64).reshape(-1, 2)
        if off.shape[0] not in (1, A_found.shape[1]):
            raise ParameterError(f"score: offset must be (2,) or ({A_found.shape[1]}, 2), got {np.shape(offset)}")
        A_found = translate_footprints(A_found, dims, off)
        applied = tuple(np.median(off, axis=0)) if off.size else (0.0, 0.0)
    Mt = binary_masks(truth.A, frac=mask_frac)
    Mf = binary_masks(A_found, frac=mask_frac)
    if align and A_found.shape[1]:
        applied = _estimate_offset(Mt, Mf, dims)
        Mf = _shift_masks(Mf, dims, applied)
    iou = mask_iou(Mt, Mf)
    dist = None
    if max_dist is not None:
        ct, cf = _centroids(Mt, dims), _centroids(Mf, dims)
        dist = np.hypot(*(ct[:, None, :] - cf[None, :, :]).transpose(2, 0, 1))
    pairs = match_components(iou, iou_thr=iou_thr, dist=dist, max_dist=max_dist)
    n_true, n_found, tp = truth.n_neurons, int(A_found.shape[1]), len(pairs)
    prec = tp / n_found if n_found else 0.0
    rec = tp / n_true if n_true else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    matched_true = {i for i, _ in pairs}
    det = np.flatnonzero((truth.snr >= snr_min) & ((truth.S > 0).sum(1) >= min_events))
    out = {
        "n_true": n_true, "n_found": n_found, "TP": tp, "FP": n_found - tp, "FN": n_true - tp,
        "precision": prec, "recall": rec, "F1": f1,
        "n_detectable": int(det.size),
        "recall_detectable": (sum(int(i in matched_true) for i in det) / det.size) if det.size else None,
        "mean_iou": float(np.mean([iou[i, j] for i, j in pairs])) if pairs else None,
        "matches": [[i, j] for i, j in pairs],
        "iou": [float(iou[i, j]) for i, j in pairs],
        "missed": sorted(set(range(n_true)) - matched_true),
        "false_positives": sorted(set(range(n_found)) - {j for _, j in pairs}),
        "offset": [float(applied[0]), float(applied[1])],
        "trace_corr": [], "median_trace_corr": None, "spike_corr": [], "median_spike_corr": None,
    }
    if C_found is not None:
        r = trace_correlations(truth.C, _check_T(C_found, truth, "C_found"), pairs)
        out["trace_corr"], out["median_trace_corr"] = [float(v) for v in r], _median(r)
    if S_found is not None:
        sig = max(0.5, spike_sigma * truth.fr)
        r = trace_correlations(truth.S, _check_T(S_found, truth, "S_found"), pairs, sigma=sig)
        out["spike_corr"], out["median_spike_corr"] = [float(v) for v in r], _median(r)
    return out


def _check_T(X, truth, name) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != truth.n_frames:
        raise ParameterError(f"score: {name} must be (K, {truth.n_frames}), got {X.shape}")
    return X


def shift_rmse(est, true, *, remove_offset: bool = True) -> float:
    """Root-mean-square Euclidean shift error.

    Parameters
    ----------
    est, true : ndarray, shape (T, 2) or (T, 2, gh, gw)
        Estimated and true registration shifts ``(dy, dx)`` (px); a field may also be
        compared node by node when both have the same grid.
    remove_offset : bool
        Subtract the mean error (over frames, and nodes for fields) of each axis first.

    Returns
    -------
    float
        ``sqrt(mean over frames/nodes of (ey^2 + ex^2))``; NaN frames are ignored.
    """
    est, true = np.asarray(est, np.float64), np.asarray(true, np.float64)
    if est.shape != true.shape or est.ndim < 2 or est.shape[1] != 2:
        raise ParameterError(f"shift_rmse: shapes {est.shape} and {true.shape} must match, (T, 2, ...)")
    e = est - true
    if remove_offset:
        axes = (0,) + tuple(range(2, e.ndim))
        e = e - np.nanmean(e, axis=axes, keepdims=True)
    return float(np.sqrt(np.nanmean((e ** 2).sum(axis=1))))
