"""Greedy ROI initialisation of CNMF (two-photon data), followed by HALS refinement.

Designed after Pnevmatikakis et al., Neuron 2016 ("Initialization"):

1. Optionally average ``tsub`` frames / ``ssub x ssub`` pixels; optionally divide every
   pixel by its median over time (``normalize_init``; undone on ``A`` and ``b`` at the end).
2. Remove each pixel's median (baseline) and the global background (median trace of the
   quieter pixels, :func:`global_background`), and filter every frame with a mean-centred
   Gaussian of width ``gSig`` (or CNMF's plain Gaussian). The "energy" of a pixel is the
   sum over time of its squared positive filtered value, or, with ``rolling_sum``, the
   largest sum over a window of ``rolling_length`` frames (favours sparsely firing
   neurons).
3. ``K`` times: take the pixel of largest energy; in a box around it fit a rank-1
   non-negative factorisation ``a c`` of the (unfiltered, baseline-removed) data with
   ``nIter`` alternating updates, subtract it from the data, and update the filtered data
   and the energy locally. A pick that touches an earlier component and whose trace
   correlates above ``merge_thr`` with it is merged into it (pieces of one extended source).
4. Refine all components together with a non-negative background of rank ``nb`` by
   HALS (hierarchical alternating least squares): footprints restricted to a dilation of
   their box, background unrestricted.

All arrays are pixel-major internally, ``(h, w, T)``.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.ndimage as ndi

from cellextract.cnmf.filters import (as_pair, center_psf_kernel, filter_image, gaussian_kernel, odd_size,
                                      spatial_filter)
from cellextract.cnmf.resample import (downsample_movie, resize_image, to_init_result,
                                       upsample_footprints, upsample_traces)
from cellextract.cnmf.initresult import InitResult
from cellextract.cnmf.pixel_stats import to_frames, to_pixel_major
from cellextract.cnmf.summary import local_correlation
from cellextract.errors import ParameterError
from cellextract.log import get_logger

__all__ = ["init_greedy_roi", "hals", "pixel_median"]

log = get_logger(__name__)


def pixel_median(Yp: np.ndarray) -> np.ndarray:
    """Median over time of pixel-major data ``(h, w, T)`` -> ``(h, w)`` float32."""
    X = np.array(Yp.reshape(-1, Yp.shape[-1]), dtype=np.float32, order="C")
    k = X.shape[1] // 2
    X.partition(k, axis=1)
    return X[:, k].reshape(Yp.shape[:2])


def _energy(Fp: np.ndarray, rolling_sum: bool, L: int) -> np.ndarray:
    """Per-pixel energy of filtered pixel-major data (h, w, T): sum over time (or the
    largest sum over ``L`` consecutive frames) of the squared *positive* part. Neurons
    add positive transients; counting only them keeps negative-going background
    fluctuations, which a non-negative component cannot explain, from attracting picks."""
    P2 = np.square(np.maximum(Fp, 0), dtype=np.float32)
    if not rolling_sum or L >= Fp.shape[2]:
        return P2.sum(axis=2)
    E = np.zeros(Fp.shape[:2] + (Fp.shape[2] + 1,), np.float32)
    np.cumsum(P2, axis=2, out=E[:, :, 1:])
    return (E[:, :, L:] - E[:, :, :-L]).max(axis=2)


def global_background(Rp: np.ndarray, nb: int, *, block: int = 8):
    """Fluctuating global background of baseline-removed pixel-major data.

    The first temporal component is the median, over the quieter half of the pixels
    (smallest 99th percentile relative to their noise), of every frame (neurons and
    dendrites occupy a minority of pixels, so it ignores them); further ones (``nb > 1``)
    are the top right singular vectors of the remaining data averaged in
    ``block x block`` pixel blocks. Each pixel's weights are least-squares coefficients.

    Parameters
    ----------
    Rp : ndarray, shape (h, w, T)
    nb : int

    Returns
    -------
    B : ndarray, shape (h, w, nb); F : ndarray, shape (nb, T)
        ``Rp ~ B @ F`` (any sign), ``F`` rows with unit norm.
    """
    h, w, T = Rp.shape
    if nb <= 0:
        return np.zeros((h, w, 0), np.float32), np.zeros((0, T), np.float32)
    X = Rp.reshape(-1, T)
    # the quieter half of the pixels (lowest excursion over noise) carry little neural signal
    Xs = np.ascontiguousarray(X[:, ::4]) if T >= 400 else X.copy()  # frame subsample
    sd = np.median(np.abs(np.diff(X[:, :min(T, 400)], axis=1)), axis=1) + 1e-12
    q = int(0.99 * (Xs.shape[1] - 1))
    Xs.partition(q, axis=1)
    act = Xs[:, q] / sd
    del Xs
    quiet = act <= np.median(act)
    Xt = np.ascontiguousarray(X[quiet].T)
    m = Xt.shape[1] // 2
    Xt.partition(m, axis=1)
    f1 = Xt[:, m].astype(np.float64)
    del Xt
    F = [f1 / max(np.linalg.norm(f1), 1e-30)]
    if nb > 1:
        bh, bw = max(1, min(block, h // 2)), max(1, min(block, w // 2))
        Z = Rp[:h // bh * bh, :w // bw * bw].reshape(h // bh, bh, w // bw, bw, T).mean(axis=(1, 3))
        Z = Z.reshape(-1, T).astype(np.float64)
        Z -= np.outer(Z @ F[0], F[0])
        _, _, vt = np.linalg.svd(Z, full_matrices=False)
        F.extend(vt[:nb - 1])
    F = np.asarray(F, np.float32)
    B = (X @ F.T) @ np.linalg.pinv((F @ F.T).astype(np.float64)).astype(np.float32)
    return B.reshape(h, w, -1).astype(np.float32), F


def _same_source(img, tr, imgs, traces, thr: float):
    """Index of an earlier component whose footprint touches ``img`` and whose trace
    correlates above ``thr`` with ``tr`` (a piece of the same extended source), or None."""
    if thr is None or thr >= 1 or not imgs:
        return None
    near = ndi.binary_dilation(img > 0, iterations=2)
    best, jbest = thr, None
    for j, (im, t) in enumerate(zip(imgs, traces)):
        if not (near & (im > 0)).any():
            continue
        r = np.corrcoef(tr, t)[0, 1]
        if np.isfinite(r) and r > best:
            best, jbest = r, j
    return jbest


def _ring_trace(Rp: np.ndarray, r: int, c: int, R: int, Rb: int):
    """Local background trace around a candidate at ``(r, c)``: the per-frame median of
    the pixels whose Chebyshev distance from the centre is in ``(R, Rb]`` (a square ring
    just outside the component's box). The median ignores a neighbouring neuron that
    covers less than half of the ring. None when fewer than 8 ring pixels exist."""
    hd, wd = Rp.shape[:2]
    r0, r1, c0, c1 = max(r - Rb, 0), min(r + Rb + 1, hd), max(c - Rb, 0), min(c + Rb + 1, wd)
    rr, cc = np.mgrid[r0:r1, c0:c1]
    ring = np.maximum(np.abs(rr - r), np.abs(cc - c)) > R
    if ring.sum() < 8:
        return None
    Z = Rp[r0:r1, c0:c1][ring]              # (n_ring, T)
    m = Z.shape[0] // 2
    return np.partition(Z, m, axis=0)[m]


def _rank1_nmf(X: np.ndarray, c0: np.ndarray, n_iter: int):
    """Rank-1 NMF X (n, T) ~ a c with a, c >= 0, starting from trace c0."""
    c = np.maximum(c0, 0).astype(np.float32)
    if not c.any():
        c = np.maximum(X.mean(axis=0), 0)
    a = np.zeros(X.shape[0], np.float32)
    for _ in range(max(1, n_iter)):
        cc = float(c @ c)
        if cc <= 0:
            break
        a = np.maximum(X @ c / cc, 0)
        aa = float(a @ a)
        if aa <= 0:
            break
        c = np.maximum(a @ X / aa, 0)
    return a, c


def hals(Y: np.ndarray, A: np.ndarray, C: np.ndarray, b: np.ndarray, f: np.ndarray, *,
         masks: np.ndarray | None = None, n_iter: int = 5, n_fixed_f: int = 0):
    """Non-negative HALS refinement of ``Y ~ A C + b f``.

    Parameters
    ----------
    Y : ndarray, shape (P, T), float32
        Data (pixels x frames).
    A : ndarray, shape (P, K)
        Footprints (>= 0).
    C : ndarray, shape (K, T)
        Traces (>= 0).
    b : ndarray, shape (P, nb); f : ndarray, shape (nb, T)
        Background (>= 0).
    masks : ndarray of bool, shape (P, K), optional
        Allowed support of each footprint.
    n_iter : int
        Alternations (each one sweep over all traces, then over all footprints).
    n_fixed_f : int
        The first ``n_fixed_f`` background traces are kept fixed (e.g. a constant).

    Returns
    -------
    A, C, b, f : updated copies (float32).
    """
    K = A.shape[1]
    W = np.concatenate([A, b], axis=1).astype(np.float32)
    H = np.concatenate([C, f], axis=0).astype(np.float32)
    M = None if masks is None else np.concatenate([masks, np.ones((A.shape[0], b.shape[1]), bool)], axis=1)
    for _ in range(n_iter):
        # traces
        WtY = W.T @ Y
        WtW = W.T @ W
        for k in range(W.shape[1]):
            if WtW[k, k] > 0 and not K <= k < K + n_fixed_f:
                H[k] = np.maximum(H[k] + (WtY[k] - WtW[k] @ H) / WtW[k, k], 0)
        # footprints
        YHt = Y @ H.T
        HHt = H @ H.T
        for k in range(W.shape[1]):
            if HHt[k, k] > 0:
                w = np.maximum(W[:, k] + (YHt[:, k] - W @ HHt[:, k]) / HHt[k, k], 0)
                W[:, k] = w if M is None else w * M[:, k]
    return W[:, :K], H[:K], W[:, K:], H[K:]


def init_greedy_roi(Y: np.ndarray, *, K: int, gSig, gSiz=None, nIter: int = 5,
                    rolling_sum: bool = True, rolling_length: int = 100,
                    normalize_init: bool = True, tsub: int = 1, ssub: int = 1, nb: int = 1,
                    hals_iter: int = 5, seed_mask: np.ndarray | None = None,
                    search_filter: str = "center", merge_thr: float | None = 0.9,
                    local_bg: bool = True, mask_grow: int = 1) -> InitResult:
    """Greedy ROI initialisation (CNMF) with HALS refinement.

    Parameters
    ----------
    Y : ndarray, shape (T, h, w)
        Movie (or patch), raw intensity units.
    K : int
        Number of components (required).
    gSig : float or pair
        Gaussian width of a neuron, pixels (full resolution).
    gSiz : int or pair, optional
        Box / kernel size (full width); default ``2 * gSig + 1``. Boxes have half-width
        ``max(gSiz // 2, ceil(1.5 * gSig))``.
    nIter : int
        Rank-1 NMF iterations per component.
    rolling_sum, rolling_length : bool, int
        Energy = max over windows of ``rolling_length`` frames (at the downsampled rate)
        of the summed squared filtered data; else the sum over all frames.
    normalize_init : bool
        Divide every pixel by its temporal median first (undone on A and b).
    tsub, ssub : int
        Temporal / spatial downsampling for the initialisation.
    nb : int
        Number of fluctuating background terms used during HALS refinement, besides a
        constant one; returned ``b`` / ``f`` have ``nb + 1`` columns / rows, the first
        being the constant term (``f[0] == 1``).
    hals_iter : int
        HALS refinement iterations (0 = none).
    seed_mask : ndarray of bool, shape (h, w), optional
        Component centres only where True.
    search_filter : {'center', 'gaussian'}
        Filter for the energy search: the mean-centred Gaussian (default; suppresses
        neuropil and extended out-of-focus sources, +10 points F1 on the 2P simulator)
        or CNMF's plain Gaussian of width ``gSig``.
    merge_thr : float or None
        A pick whose footprint touches an earlier component's and whose trace correlates
        above ``merge_thr`` with it is merged into it (pieces of one extended source, e.g.
        an out-of-focus blob tiled by boxes) and does not count towards ``K``. None
        disables.
    local_bg : bool
        Before the rank-1 fit of a pick, subtract the local background trace (per-frame
        median of a square ring of pixels just outside the box). Without it a neuron
        sitting on an active out-of-focus blob (neuropil) gets a trace and footprint that
        mix in the blob's activity, and neurons sharing a blob then look correlated and
        get merged. Only ``a c`` (not the ring trace) is removed from the data.
    mask_grow : int
        HALS refinement keeps each footprint inside its box(es) dilated by this many pixels.

    Returns
    -------
    InitResult
        ``A`` unit-norm columns, ``C`` (K, T) raw scale, ``b`` (h*w, nb+1), ``f`` (nb+1, T)
        with ``A @ C + b @ f`` approximating ``Y`` (in pixel-major Fortran order),
        ``cn`` the local correlation image, ``pnr`` zeros, ``b0`` the pixel medians.
    """
    t_start = time.perf_counter()
    if K is None or int(K) <= 0:
        raise ParameterError("greedy_roi initialisation needs a positive K (components per patch); "
                             "K = auto is only supported by method_init 'corr_pnr'")
    K = int(K)
    Y = np.asarray(Y)
    if Y.ndim != 3:
        raise ParameterError(f"init_greedy_roi expects a (T, h, w) movie, got shape {Y.shape}")
    tsub, ssub = max(1, min(int(tsub), Y.shape[0] // 2)), max(1, int(ssub))  # keep >= 2 frames
    T, h, w = Y.shape
    gs = tuple(s / ssub for s in as_pair(gSig, "gSig"))
    gz = odd_size(gSiz if gSiz is not None else tuple(2 * s + 1 for s in as_pair(gSig)), None)
    R = int(max(max(gz) / ssub // 2, np.ceil(1.5 * max(gs))))
    if search_filter == "center":
        kernel = center_psf_kernel(gs, None)
    elif search_filter == "gaussian":
        kernel = gaussian_kernel(gs, odd_size(tuple(max(3.0, z / ssub) for z in gz)))
    else:
        raise ParameterError(f"search_filter must be 'center' or 'gaussian', got {search_filter!r}")
    kr = kernel.shape[0] // 2, kernel.shape[1] // 2
    Rb = R + max(2, int(np.ceil(max(gs) / 2)))  # outer edge of the local-background ring

    Yd = downsample_movie(Y, tsub, ssub)
    Td, hd, wd = Yd.shape
    cn = local_correlation(Yd)
    Yp = to_pixel_major(Yd)
    del Yd
    scale = np.ones((hd, wd), np.float32)
    if normalize_init:
        med = pixel_median(Yp)
        pos = med[med > 0]
        scale = np.where(med > 0, med, pos.mean() if pos.size else 1.0).astype(np.float32)
        Yp /= scale[:, :, None]
    b0 = pixel_median(Yp)
    Rp = Yp - b0[:, :, None]  # working residual (baseline removed)
    Bg, Fg = global_background(Rp, nb, block=max(2 * R + 1, 8))
    if nb > 0:  # greedy search on background-free data
        Rp -= (Bg.reshape(-1, nb) @ Fg).reshape(Rp.shape)
    F = to_frames(Rp)
    Fp = to_pixel_major(spatial_filter(F, kernel, out=F))
    del F
    L = max(1, int(rolling_length) // tsub)
    rho = _energy(Fp, rolling_sum, L)
    allowed = np.ones((hd, wd), bool)
    if seed_mask is not None:
        allowed = downsample_movie(np.asarray(seed_mask, np.float32)[None], 1, ssub)[0] > 0

    imgs, traces, boxes = [], [], []
    n_merged = 0
    for _ in range(3 * K):  # merged picks do not count towards K
        if len(imgs) >= K:
            break
        cand = np.where(allowed, rho, -np.inf)
        r, c = np.unravel_index(int(np.argmax(cand)), cand.shape)
        if not np.isfinite(cand[r, c]):
            break
        box = (slice(max(r - R, 0), min(r + R + 1, hd)), slice(max(c - R, 0), min(c + R + 1, wd)))
        bh, bw = box[0].stop - box[0].start, box[1].stop - box[1].start
        X = Rp[box].reshape(bh * bw, Td)
        if local_bg:  # remove the local (neuropil / out-of-focus) background trace first
            g = _ring_trace(Rp, r, c, R, Rb)
            if g is not None:
                X = X - g[None, :]
        a, tr = _rank1_nmf(X, Fp[r, c], nIter)
        img = np.zeros((hd, wd), np.float32)
        img[box] = a.reshape(bh, bw)
        allowed[r, c] = False
        if not a.any() or not tr.any():
            continue
        Rp[box] -= img[box][:, :, None] * tr[None, None, :]
        # local update of the filtered data and of the energy
        reg = (slice(max(box[0].start - kr[0], 0), min(box[0].stop + kr[0], hd)),
               slice(max(box[1].start - kr[1], 0), min(box[1].stop + kr[1], wd)))
        af = filter_image(img, kernel)[reg]
        Fp[reg] -= af[:, :, None] * tr[None, None, :]
        rho[reg] = _energy(Fp[reg], rolling_sum, L)
        j = _same_source(img, tr, imgs, traces, merge_thr)
        if j is not None:  # another piece of an extended source: grow that component
            gain = float(tr @ traces[j]) / max(float(traces[j] @ traces[j]), 1e-30)
            imgs[j] = imgs[j] + img * gain
            boxes[j].append(box)
            n_merged += 1
            continue
        imgs.append(img)
        traces.append(tr)
        boxes.append([box])

    extra = {"seconds_greedy": time.perf_counter() - t_start, "n_merged_picks": n_merged}
    nK = len(imgs)
    Ad = np.stack([im.ravel() for im in imgs], axis=1) if nK else np.zeros((hd * wd, 0), np.float32)
    Cd = np.stack(traces) if nK else np.zeros((0, Td), np.float32)
    Yflat = Yp.reshape(hd * wd, Td)
    if local_bg and nK and hals_iter > 0:
        # smooth local background (neuropil, out-of-focus blobs) left in the residual:
        # the residual blurred at twice the neuron width; removed from the data the HALS
        # refinement sees, so that refinement does not push it back into the neurons
        sb = 2.0 * max(gs)
        Lb = spatial_filter(to_frames(Rp), gaussian_kernel((sb, sb), odd_size(int(4 * sb) * 2 + 1, None)))
        Yflat = Yflat - to_pixel_major(Lb).reshape(hd * wd, Td)
        del Lb
    # background: a constant term (fixed trace of ones) plus nb non-negative fluctuating
    # terms started from the global background (shifted to be non-negative)
    Fs = Fg * np.sign(Bg.reshape(-1, nb).sum(axis=0) + 1e-30)[:, None] if nb else Fg
    Fs = Fs - Fs.min(axis=1, keepdims=True)
    fd = np.vstack([np.ones((1, Td), np.float32), Fs]).astype(np.float32)
    res = Yflat - Ad @ Cd
    bd = np.maximum(res @ fd.T @ np.linalg.pinv(fd @ fd.T), 0).astype(np.float32)
    if hals_iter > 0:
        masks = np.zeros((hd * wd, nK), bool)
        # support: the pick's box(es) grown by one pixel. Growing by the search kernel's
        # radius let footprints spread thin tails over neuropil / out-of-focus blobs, whose
        # activity then dominated the traces in the full-FOV updates.
        grow = np.ones((2 * mask_grow + 1, 2 * mask_grow + 1), bool)
        for k, bxs in enumerate(boxes):
            m = np.zeros((hd, wd), bool)
            for box in bxs:
                m[box] = True
            masks[:, k] = ndi.binary_dilation(m, structure=grow).ravel()
        Ad, Cd, bd, fd = hals(Yflat, Ad, Cd, bd, fd, masks=masks, n_iter=hals_iter, n_fixed_f=1)
    del Yp, Rp, Fp
    # undo normalisation, back to full resolution
    sflat = scale.ravel()[:, None]
    imgs_up = upsample_footprints((Ad * sflat).T.reshape(-1, hd, wd), (h, w), ssub)
    C_up = upsample_traces(Cd, T, tsub)
    b_img = upsample_footprints((bd * sflat).T.reshape(-1, hd, wd), (h, w), ssub)
    b_full = b_img.transpose(0, 2, 1).reshape(b_img.shape[0], h * w).T.astype(np.float32)
    f_full = upsample_traces(fd, T, tsub)
    b0_img = upsample_footprints((b0 * scale)[None], (h, w), ssub)[0]
    cn_full = resize_image(cn, (h, w)) if ssub > 1 else cn
    extra["seconds"] = time.perf_counter() - t_start
    log.info("greedy_roi init: %d components in %.2f s on %dx%dx%d", nK, extra["seconds"], T, h, w)
    return to_init_result(imgs_up, C_up, (h, w), cn=cn_full, pnr=np.zeros((h, w), np.float32),
                          b=b_full, f=f_full, b0=b0_img.ravel(order="F"), extra=extra)
