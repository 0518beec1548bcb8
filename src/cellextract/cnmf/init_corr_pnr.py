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

from cellextract.cnmf.filters import as_pair, odd_size
from cellextract.cnmf.initresult import InitResult, empty_result
from cellextract.cnmf.resample import (downsample_movie, resize_image, to_init_result,
                                       upsample_footprints, upsample_traces)
from cellextract.cnmf.seed_neuron import (estimate_neuron, rise_score, subtract_and_update,
                                          window_rect)
from cellextract.cnmf.summary import summary_kernel
from cellextract.errors import ParameterError
from cellextract.log import get_logger

# rise_score and the resampling helpers are re-exported from their modules (seed_neuron, resample)
__all__ = ["init_corr_pnr", "rise_score", "downsample_movie", "upsample_traces", "upsample_footprints",
           "to_init_result"]

log = get_logger(__name__)


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
        Minimum spatial consistency (see ``subtract_and_update``; not in CNMF-E) between
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
        r0, r1, c0, c1 = window_rect(seed, margin, (hd, wd))
        local = (seed[0] - r0, seed[1] - c0)
        b = window_rect(seed, R + 2, (hd, wd))               # raw data: the box and its ring
        est = estimate_neuron(store.raw(*b), (b[0] - r0, b[2] - c0), store.trace(*seed),
                               lambda: store.window(r0, r1, c0, c1), local, R, kernel)
        if est is None or np.count_nonzero(est[0]) < min_pixel:
            n_rejected += 1
            rejected.append((seed, "footprint"))
            continue
        img_w, c, Fw = est
        # slow, non-transient components (1P background residue) are explained away
        # (subtracted from the search data) but not reported as neurons
        win = (slice(r0, r1), slice(c0, c1))
        cons, sub = subtract_and_update(Fw, img_w, c, kernel, sigma[win], noise_thr, cn[win],
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
    cn_full = resize_image(cn0, (h, w)) if ssub > 1 else cn0
    pnr_full = resize_image(pnr0, (h, w)) if ssub > 1 else pnr0
    extra = {"seeds": np.array(seeds, float).reshape(-1, 2) * ssub + (ssub - 1) / 2.0,
             "n_rejected": n_rejected, "rejected": rejected, "seconds": dt,
             "kept": store.kept, "windows": store.n_computed, "cached": store.n_cached}
    if not imgs:
        return empty_result((h, w), T, cn=cn_full, pnr=pnr_full, extra=extra)
    full = upsample_footprints(np.stack(imgs), (h, w), ssub)
    C = upsample_traces(np.stack(traces), T, movie.tsub)
    return to_init_result(full, C, (h, w), cn=cn_full, pnr=pnr_full, extra=extra)
