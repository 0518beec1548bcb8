"""CNMF-E greedy initialisation from the correlation and PNR images (``corr_pnr``).

Designed after Zhou et al., eLife 2018 ("Initialization"):

1. Optionally average ``tsub`` frames and ``ssub x ssub`` pixels.
2. Filter every frame with the mean-centred Gaussian (``center_psf``), which removes the
   smooth one-photon background, and remove each pixel's baseline (median). Compute the
   PNR and correlation images of the filtered data (:mod:`cellextract.cnmf.summary`).
3. Greedy loop. The best remaining candidate pixel (``cn >= min_corr``, ``pnr >= min_pnr``,
   largest ``cn * pnr``) is a seed. Its filtered trace ``c`` is the first temporal estimate.
   In a box of half-width ``R = max(gSiz // 2, ceil(2 gSig))`` around the seed each pixel's
   *raw* trace is regressed on ``[1, c, g_1..g_4]``, where the ``g`` are the local
   background: the median raw trace of each side of a ring just outside the box. The ``c``
   coefficient is the footprint; it is kept where positive and significant (t > 3 and
   above 5 % of its maximum) and connected to the seed. The trace is then re-estimated as
   the least-squares projection of the filtered data on the filtered footprint
   ``k * a`` (background-free), and the footprint re-fitted once with it.
4. The component's contribution to the *filtered* data (least-squares coefficient of each
   filtered trace on ``c``, on the footprint dilated by the kernel radius) is subtracted,
   and PNR / correlation are recomputed only in that neighbourhood. It is reported as a
   neuron only if its trace has a fast rise (:func:`rise_score` >= ``min_rise``) and the
   pattern it leaves in the filtered data matches ``k * a`` (spatial consistency >=
   ``min_consistency``); otherwise it was background structure (slow residue, vessel
   edges, out-of-focus blobs), explained away but not reported. These two checks are
   additions to CNMF-E. The search continues until no candidate passes (or ``K``
   neurons are found).
5. Footprints are upsampled to full resolution (block replication), traces linearly
   interpolated to all ``T`` frames, and footprint columns L2-normalised (traces scaled
   accordingly, so ``A @ C`` is unchanged and in raw intensity units).

Memory: the movie is read column by column (:mod:`cellextract.cnmf.patch_movie`) and the
statistics of step 2 come from one streamed sweep (:mod:`cellextract.cnmf.filtered_patch`).
The filtered movie is kept only if it fits in ``max_bytes``; otherwise each seed works on
its neighbourhood (``R + kernel radius + 1`` px) recomputed from the movie, with the
subtractions of step 4 replayed, which gives the same numbers. Memory then depends on the
movie length only through that neighbourhood over all frames.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.ndimage as ndi
import scipy.sparse as sp

from cellextract.cnmf.filters import as_pair, filter_image, odd_size
from cellextract.cnmf.initresult import InitResult, empty_result, footprint_centers
from cellextract.cnmf.summary import (_threshold, fill_nonfinite, neighbour_correlation,
                                      summary_kernel)
from cellextract.errors import ParameterError
from cellextract.log import get_logger

__all__ = ["init_corr_pnr", "rise_score", "downsample_movie", "upsample_traces", "upsample_footprints",
           "to_init_result"]

log = get_logger(__name__)


# --------------------------------------------------------------------------- resampling


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


def _resize_image(img: np.ndarray, dims) -> np.ndarray:
    """Upsample a summary image by block replication and crop to ``dims``."""
    h, w = dims
    fy, fx = -(-h // img.shape[0]), -(-w // img.shape[1])
    return np.repeat(np.repeat(img, fy, axis=0), fx, axis=1)[:h, :w].astype(np.float32)


# --------------------------------------------------------------------------- one neuron


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


def _estimate_neuron(Yb: np.ndarray, boff, c: np.ndarray, window, seed, R: int,
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


# --------------------------------------------------------------------------- main


def _as_movie(Y, rows_dims, tsub: int, ssub: int):
    """An :class:`AveragedMovie` over frames (T, h, w), rows (h*w, T) or a patch reader."""
    from cellextract.cnmf.patch_movie import AveragedMovie, PatchReader
    if hasattr(Y, "iter_avg_columns"):
        reader = Y
    else:
        Y = np.asarray(Y)
        if rows_dims is not None:
            if Y.ndim != 2 or Y.shape[0] != rows_dims[0] * rows_dims[1]:
                raise ParameterError(f"init_corr_pnr: rows of shape {Y.shape} do not match "
                                     f"{rows_dims}")
            rows, dims = Y, (int(rows_dims[0]), int(rows_dims[1]))
        elif Y.ndim != 3:
            raise ParameterError(f"init_corr_pnr expects a (T, h, w) movie, got shape {Y.shape}")
        else:
            rows = np.ascontiguousarray(Y.transpose(2, 1, 0)).reshape(-1, Y.shape[0])
            dims = Y.shape[1:]
        reader = PatchReader(rows, dims, pilot_frames=None)
    T = reader.T
    tsub = max(1, min(int(tsub), T // 2))                        # keep >= 2 frames
    return AveragedMovie(reader, tsub=tsub, ssub=max(1, int(ssub)))


def _window(center, margin: int, shape):
    """Rectangle ``(r0, r1, c0, c1)`` of half-width ``margin`` around ``center``, clipped."""
    b = _box(center, margin, shape)
    return b[0].start, b[0].stop, b[1].start, b[1].stop


def init_corr_pnr(Y, *, gSig, gSiz=None, min_corr: float, min_pnr: float, K: int | None = None,
                  center_psf: bool = True, tsub: int = 1, ssub: int = 1, min_pixel: int = 3,
                  seed_mask: np.ndarray | None = None, noise_thr: float = 3.0,
                  min_rise: float = 5.0, min_consistency: float = 0.4,
                  pnr_noise: str = "psd", rows_dims: tuple[int, int] | None = None,
                  max_bytes: float = 48e6) -> InitResult:
    """CNMF-E greedy initialisation of footprints and traces.

    Parameters
    ----------
    Y : ndarray or patch reader
        Movie (or patch) in raw intensity units: frames (T, h, w); or, with
        ``rows_dims``, memmap layout (h*w, T) (Fortran pixel order); or a reader of
        :mod:`cellextract.cnmf.patch_movie` (``PatchReader``, ``ResidualReader``), read
        column by column so the patch is never held whole.
    gSig : float or pair
        Gaussian width of a neuron (pixels, full resolution).
    gSiz : int or pair, optional
        Neuron box size (full width, pixels); the box half-width used is
        ``max(gSiz // 2, ceil(2 * gSig))``. Default ``2 * ceil(2 * gSig) + 1``.
    min_corr, min_pnr : float
        Seed thresholds on the correlation and PNR images.
    K : int or None
        Maximum number of neurons; None = no cap.
    center_psf : bool
        Mean-centred Gaussian filter (1P). False: plain Gaussian.
    tsub, ssub : int
        Temporal / spatial downsampling for the search (results are at full resolution).
    min_pixel : int
        Minimum footprint size (pixels at the downsampled resolution).
    seed_mask : ndarray of bool, shape (h, w), optional
        Seeds only where True.
    noise_thr : float
        Threshold (noise sigmas) for the correlation image.
    min_rise : float
        Minimum :func:`rise_score` of a neuron's trace (not in CNMF-E): components
        without a fast rise (slow background residue) are subtracted from the search data
        but not reported. 0 disables.
    min_consistency : float
        Minimum spatial consistency (see ``_subtract_and_update``; not in CNMF-E) between
        the raw footprint and the pattern the trace leaves in the filtered data; lower
        components (vessel edges, out-of-focus blobs) are subtracted but not reported.
        -1 disables.
    pnr_noise : {'robust', 'psd', 'mad'}
        Noise estimate of the filtered traces for the PNR
        (:func:`cellextract.cnmf.summary.baseline_noise`).
    rows_dims : (int, int), optional
        ``(h, w)`` when ``Y`` is given as rows (h*w, T).
    max_bytes : float
        Memory budget (bytes) for the filtered movie: it is kept whole when it fits
        (``4 h w T / tsub``), otherwise each seed's neighbourhood is recomputed from the
        movie (same result, more reading); also bounds the block of columns filtered at
        once by the statistics pass (:mod:`cellextract.cnmf.filtered_patch`).

    Returns
    -------
    InitResult
        ``A`` (h*w, K) unit-norm columns, ``C`` (K, T) raw scale, ``cn`` / ``pnr`` the
        initial summary images (full resolution); ``extra["seeds"]`` (K, 2) seed pixels,
        ``extra["kept"]`` whether the filtered movie was held, ``extra["windows"]`` how
        many seed windows were recomputed.
    """
    from cellextract.cnmf.filtered_patch import filtered_statistics
    from cellextract.cnmf.seed_windows import FilteredStore
    t_start = time.perf_counter()
    movie = _as_movie(Y, rows_dims, tsub, ssub)
    h, w = movie.full
    T = movie.T
    ssub = movie.ssub
    if K is not None and int(K) < 0:
        raise ParameterError(f"K must be None or >= 0, got {K}")
    gs = tuple(s / ssub for s in as_pair(gSig, "gSig"))
    gz = as_pair(gSiz if gSiz is not None else odd_size(None, gSig), "gSiz")
    R = int(max(max(gz) / ssub // 2, np.ceil(2 * max(gs))))
    hd, wd = movie.shape

    kernel = summary_kernel(gs, None, center_psf=center_psf)
    st = filtered_statistics(movie, kernel, noise_thr=noise_thr, noise_method=pnr_noise,
                             max_bytes=max_bytes)
    store = FilteredStore(movie, kernel, st)
    sigma = st.sigma
    pnr, cn = st.pnr, st.cn
    cn0, pnr0 = cn.copy(), pnr.copy()
    margin = R + max(kernel.shape) // 2 + 1     # everything one seed reads or changes

    allowed = np.ones((hd, wd), bool)
    if seed_mask is not None:
        m = np.asarray(seed_mask, bool)
        if m.shape != (h, w):
            raise ParameterError(f"seed_mask shape {m.shape} != movie frame shape {(h, w)}")
        allowed = downsample_movie(m[None].astype(np.float32), 1, ssub)[0] > 0
    cand = allowed & (cn >= min_corr) & (pnr >= min_pnr)
    store.fill(np.where(cand, cn * pnr, 0), max_bytes, margin)   # tiles near candidates

    imgs, traces, seeds = [], [], []
    n_rejected = 0
    rejected: list = []
    Kmax = np.inf if K is None else int(K)
    while len(imgs) < Kmax:
        cand = allowed & (cn >= min_corr) & (pnr >= min_pnr)
        if not cand.any():
            break
        s = np.where(cand, cn * pnr, -np.inf)
        seed = np.unravel_index(int(np.argmax(s)), s.shape)
        allowed[seed] = False
        r0, r1, c0, c1 = _window(seed, margin, (hd, wd))
        local = (seed[0] - r0, seed[1] - c0)
        b = _window(seed, R + 2, (hd, wd))               # raw data: the box and its ring
        est = _estimate_neuron(store.raw(*b), (b[0] - r0, b[2] - c0), store.trace(*seed),
                               lambda: store.window(r0, r1, c0, c1), local, R, kernel)
        if est is None or np.count_nonzero(est[0]) < min_pixel:
            n_rejected += 1
            rejected.append((seed, "footprint"))
            continue
        img_w, c, Fw = est
        # slow, non-transient components (1P background residue) are explained away
        # (subtracted from the search data) but not reported as neurons
        win = (slice(r0, r1), slice(c0, c1))
        cons, sub = _subtract_and_update(Fw, img_w, c, kernel, sigma[win], noise_thr, cn[win],
                                         pnr[win])
        if sub is not None:
            store.record(sub[0] + r0, sub[1] + c0, sub[2], c)
        rise = rise_score(c) if min_rise else np.inf
        if rise < min_rise or cons < min_consistency:
            n_rejected += 1
            rejected.append((seed, f"rise {rise:.1f} consistency {cons:.2f}"))
            continue
        img = np.zeros((hd, wd), np.float32)
        img[win] = img_w
        imgs.append(img)
        traces.append(c)
        seeds.append(seed)

    dt = time.perf_counter() - t_start
    log.info("corr_pnr init: %d neurons (%d seeds rejected) in %.2f s on %dx%dx%d (%s)",
             len(imgs), n_rejected, dt, T, h, w,
             "filtered movie kept" if store.kept else
             f"{len(store.tiles)} tiles cached, {store.n_cached} windows from them, "
             f"{store.n_computed} recomputed")
    cn_full = _resize_image(cn0, (h, w)) if ssub > 1 else cn0
    pnr_full = _resize_image(pnr0, (h, w)) if ssub > 1 else pnr0
    extra = {"seeds": np.array(seeds, float).reshape(-1, 2) * ssub + (ssub - 1) / 2.0,
             "n_rejected": n_rejected, "rejected": rejected, "seconds": dt,
             "kept": store.kept, "windows": store.n_computed, "cached": store.n_cached}
    if not imgs:
        return empty_result((h, w), T, cn=cn_full, pnr=pnr_full, extra=extra)
    full = upsample_footprints(np.stack(imgs), (h, w), ssub)
    C = upsample_traces(np.stack(traces), T, movie.tsub)
    return to_init_result(full, C, (h, w), cn=cn_full, pnr=pnr_full, extra=extra)


def _subtract_and_update(Fp, img, c, kernel, sigma, noise_thr, cn, pnr):
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
