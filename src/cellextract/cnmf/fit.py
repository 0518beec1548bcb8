"""CNMF / CNMF-E model fitting on a CaImAn memmap (or an in-memory ``(P, T)`` array).

Pipeline (1P, ``nb = 0``; Zhou et al. 2018): per-patch initialisation (corr_pnr) ->
combination (duplicates removed or merged) -> ring-model background on the whole FOV
-> ``n_rounds`` rounds of [temporal update with OASIS, merging, spatial update,
background update] -> final merge and temporal update -> unit-norm footprints. With
``init_iter >= 2`` (CaImAn's default) the first round is followed by a *residual search*
(per patch: data - neurons - local ring background searched again by corr_pnr) and the
remaining rounds run with the new components. Before the final temporal update, 1P
components smaller than a quarter of the PSF spot (:func:`min_area`, option ``min_area``)
are dropped, and after it those with an all-zero trace. 2P (``nb > 0``;
Pnevmatikakis et al. 2016): greedy_roi / sparse_nmf initialisation and a low-rank
background ``b f`` updated by HALS, same updates otherwise. ``refit`` re-runs the
updates seeded with the found footprints.

Memory: the data are never held whole; each update streams the memmap in blocks of
pixel rows (contiguous in time) read with plain file reads, accumulating only
``A^T Y`` (K, T) and ``Y C^T`` on each footprint's support mask (plus a ring-model halo). The ring-model fit uses a spatially
(``ssub_B``) and temporally binned copy of the data capped at ``max_bg_frames`` frames.
Patch workers read their patch column by column (:mod:`cellextract.cnmf.patch_movie`) and
hold at most ``patch_bytes`` of filtered data (option, default 48 MB; see
:mod:`cellextract.cnmf.seed_windows`), so their memory does not grow with the movie
length beyond a seed's neighbourhood over all frames; the main process holds (K, T)
traces, the binned background data and one block of pixel rows.

Not used: ``low_rank_background`` (the background of ``nb > 0`` is always updated by
HALS on ``b, f``) and ``nb_patch`` beyond the per-patch initialisation. Deconvolution
uses AR coefficients from ``decay_time`` and ``fr`` (not re-estimated per trace).
"""

from __future__ import annotations

import os
import time

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.background import fit_ring_model, hals_b, hals_f, init_lowrank
from cellextract.cnmf.estimates import Estimates
from cellextract.cnmf.merge import merge_components
from cellextract.cnmf.noise import g_from_decay
from cellextract.cnmf.patches import (RowSource, bin_time, combine_patches, map_patches, patch_grid,
                                      patch_pool, rows_to_frames, stats_pass)
from cellextract.cnmf.residual import duplicate_corr, residual_search
from cellextract.cnmf.spatial import clean_footprints, hals_spatial, support_masks
from cellextract.cnmf.spatial_stats import lowrank_spatial_stats, ring_spatial_stats
from cellextract.cnmf.temporal import (lowrank_temporal_stats, ring_temporal_stats,
                                       update_temporal)
from cellextract.errors import NoComponentsError, ParameterError
from cellextract.log import get_logger

log = get_logger(__name__)

DEFAULTS = dict(
    method_init="corr_pnr", K=None, gSig=(3, 3), gSiz=(7, 7), min_corr=0.85, min_pnr=12.0,
    center_psf=True, tsub=2, ssub=1, ssub_B=2, ring_size_factor=1.4, nb=0, init_iter=2,
    rolling_sum=True, rolling_length=100, normalize_init=False, alpha_snmf=0.5, max_iter_snmf=200,
    rf=40, stride=20, only_init=True, del_duplicates=True, border_pix=0,
    low_rank_background=None, nb_patch=0,
    p=1, bas_nonneg=False, method_deconvolution="oasis", fr=30.0, decay_time=0.4,
    noise_range=(0.25, 0.5), noise_method="mean", merge_thr=0.7,
    update_background_components=True, refit=False,
    n_rounds=2, max_bg_frames=300, block_bytes=64 << 20, patch_bytes=48 << 20, init_fn=None,
    residual_search=True,
    dup_thr=0.6, spatial_box=None, merge_cos_thr=0.85,
    merge_split_corr=-0.2, pnr_noise="psd", min_area=None, dup_traces=True,
)


# ----------------------------------------------------------------------------- helpers

def _normalize(A, C, *extra):
    A = sp.csc_matrix(A, dtype=np.float32)
    n = np.sqrt(np.asarray(A.multiply(A).sum(axis=0)).ravel()).astype(np.float32)
    n[n == 0] = 1
    A = sp.csc_matrix(A @ sp.diags(1.0 / n))
    out = [A, C * n[:, None]] + [None if e is None else e * (n[:, None] if e.ndim == 2 else n)
                                 for e in extra]
    return out


def _pair(v):
    v = np.atleast_1d(v)
    return (int(v[0]), int(v[-1]))


def _check_opts(o):
    unknown = set(o) - set(DEFAULTS)
    if unknown:
        raise ParameterError(f"unknown CNMF options: {sorted(unknown)}")
    if o["p"] not in (0, 1, 2):
        raise ParameterError(f"temporal.p must be 0, 1 or 2, got {o['p']}")
    if o["method_init"] not in ("corr_pnr", "greedy_roi", "sparse_nmf", "sparse_NMF"):
        raise ParameterError(f"init.method_init {o['method_init']!r} is not supported")
    if (o["method_init"] in ("greedy_roi", "sparse_nmf", "sparse_NMF") and o["K"] is None
            and o["init_fn"] is None):
        raise ParameterError(f"init.K must be set (an integer) for method_init "
                             f"{o['method_init']!r}")


def footprint_areas(A) -> np.ndarray:
    """Pixels of each footprint column above 25 % of its maximum."""
    A = sp.csc_matrix(A)
    out = np.zeros(A.shape[1], int)
    for k in range(A.shape[1]):
        v = A.data[A.indptr[k]:A.indptr[k + 1]]
        if v.size and v.max() > 0:
            out[k] = int((v > 0.25 * v.max()).sum())
    return out


def min_area(o) -> float:
    """Minimum footprint area (px above 25 % of the maximum) of a 1P neuron.

    ``o['min_area']`` when set; otherwise a quarter of the area of the point-spread spot
    itself: a Gaussian of width gSig is above 25 % of its peak on a disc of radius
    ``sqrt(2 ln 4) gSig``, so the floor is ``pi * 2 ln 4 * gSig_r * gSig_c / 4``
    (about 20 px for gSig = 3). A soma blurred by the optics cannot be smaller than the
    blur; such components are residue of background structure (vessel edges).
    """
    if o.get("min_area") is not None:
        return float(o["min_area"])
    gr, gc = (float(v) for v in np.broadcast_to(np.atleast_1d(o["gSig"]), (2,)))
    return float(np.pi * 2 * np.log(4.0) * gr * gc / 4.0)


# ----------------------------------------------------------------------------- init

def init_patch(reader, pdims, *, o: dict):
    """Initialise (and, with ``only_init=False``, fit) one patch.

    Parameters
    ----------
    reader : cellextract.cnmf.patch_movie.PatchReader
        The patch (h*w pixels x T frames, Fortran pixel order). corr_pnr reads it column
        by column (memory bounded by ``o['patch_bytes']``); the other initialisers and
        ``only_init=False`` read it whole.
    pdims : (int, int)
    o : dict
        Options (see ``DEFAULTS``).

    Returns
    -------
    (A (h*w, K) csc, C (K, T), cn (h, w), pnr (h, w))
    """
    cn = pnr = None
    corr_pnr = o["init_fn"] is None and o["method_init"] == "corr_pnr"
    Y = None if corr_pnr else rows_to_frames(reader.read_all(), pdims)
    if o["init_fn"] is not None:
        A, C = o["init_fn"](Y)
    elif corr_pnr:
        from cellextract.cnmf.init_corr_pnr import init_corr_pnr
        r = init_corr_pnr(reader, gSig=o["gSig"], gSiz=o["gSiz"],
                          min_corr=o["min_corr"], min_pnr=o["min_pnr"], K=o["K"],
                          center_psf=o["center_psf"], tsub=o["tsub"], ssub=o["ssub"],
                          pnr_noise=o["pnr_noise"], max_bytes=o["patch_bytes"])
        A, C, cn, pnr = r.A, r.C, r.cn, r.pnr
    elif o["method_init"] == "greedy_roi":
        from cellextract.cnmf.init_greedy import init_greedy_roi
        r = init_greedy_roi(Y, K=o["K"], gSig=o["gSig"], gSiz=o["gSiz"], nIter=5,
                            rolling_length=o["rolling_length"], rolling_sum=o["rolling_sum"], normalize_init=o["normalize_init"],
                            tsub=o["tsub"], ssub=o["ssub"], nb=max(1, int(o["nb_patch"])))
        A, C, cn = r.A, r.C, r.cn
    else:
        from cellextract.cnmf import init_sparse_nmf as m
        r = m.init_sparse_nmf(Y, K=o["K"], alpha=o["alpha_snmf"], max_iter=o["max_iter_snmf"],
                              gSig=o["gSig"], tsub=o["tsub"], ssub=o["ssub"],
                              nb=max(1, int(o["nb_patch"])))
        A, C, cn = r.A, r.C, r.cn
    del Y
    A, C = sp.csc_matrix(A, dtype=np.float32), np.asarray(C, np.float32)
    if not o["only_init"] and A.shape[1] > 0:
        sub = dict(o, only_init=True, rf=None, refit=False)
        Yp = reader.read_all()
        try:
            est = fit_core(RowSource(Yp, Yp.shape[0], Yp.shape[1]), pdims, A, C, sub)
            A, C = est.A, est.C
        except NoComponentsError:                 # nothing survives in this patch
            A = sp.csc_matrix((Yp.shape[0], 0), dtype=np.float32)
            C = np.zeros((0, Yp.shape[1]), np.float32)
    return A, C, cn, pnr


def _stitch(images, patches, dims):
    out = np.zeros(dims, np.float32)
    for img, p in zip(images, patches):
        if img is None:
            continue
        (r0, r1), (c0, c1) = p.core_rows, p.core_cols
        out[r0:r1, c0:c1] = np.asarray(img)[r0 - p.rows[0]:r1 - p.rows[0],
                                            c0 - p.cols[0]:c1 - p.cols[0]]
    return out


def initialize(src, dims, o, n_processes, pool=None):
    """Patch-wise initialisation; returns A (P, K) csc, C (K, T), cn, pnr."""
    patches = patch_grid(dims, rf=o["rf"], stride=o["stride"], border_pix=o["border_pix"])
    log.info("initialisation (%s) over %d patch(es), %d process(es)", o["method_init"],
             len(patches), n_processes)
    parts = map_patches(src, dims, patches, init_patch, n_processes=n_processes, pool=pool, o=o)
    A, C = combine_patches([(a, c) for a, c, _, _ in parts], patches, dims,
                           del_duplicates=o["del_duplicates"], merge_thr=o["merge_thr"],
                           dup_thr=o["dup_thr"], dup_corr=duplicate_corr(o))
    cn = _stitch([q[2] for q in parts], patches, dims)
    pnr = _stitch([q[3] for q in parts], patches, dims)
    if o["border_pix"] > 0 and A.shape[1]:
        H, W = dims
        b = o["border_pix"]
        img = np.zeros(dims, bool)
        img[b:H - b, b:W - b] = True
        A = sp.csc_matrix(sp.diags(img.ravel(order="F").astype(np.float32)) @ A)
    log.info("initialisation: %d components after combining patches", A.shape[1])
    return A, C, cn, pnr


# ----------------------------------------------------------------------------- core

def fit_core(rows: RowSource, dims, A, C, o: dict, *, cache: dict | None = None) -> Estimates:
    """Background estimation and alternating updates from initial ``A`` (P, K), ``C`` (K, T).

    ``cache`` (a dict, optional) keeps the statistics pass between calls on the same data.
    """
    t0 = time.perf_counter()
    bb = o["block_bytes"]
    nb = int(o["nb"])
    gSiz = _pair(o["gSiz"])[0]
    gSig = _pair(o["gSig"])[0]
    box = int(o["spatial_box"] or max(gSiz, 3 * gSig))   # footprint half-width limit, px
    tbin = max(1, int(np.ceil(rows.T / o["max_bg_frames"])))
    cache = {} if cache is None else cache
    if "stats" not in cache:
        cache["stats"] = stats_pass(rows, dims, ssub_B=o["ssub_B"], tbin=tbin, need_ds=nb == 0,
                                    block_bytes=bb, noise_range=o["noise_range"],
                                    noise_method=o["noise_method"])
    mean_Y, sn, Yds = cache["stats"]
    A, C = _normalize(A, C)
    g = g_from_decay(p=o["p"], decay_time=o["decay_time"], fr=o["fr"])
    tkw = dict(p=o["p"], g=g, bas_nonneg=o["bas_nonneg"], noise_range=o["noise_range"],
               noise_method=o["noise_method"], method_deconvolution=o["method_deconvolution"])
    ring = b = f = bTY = None

    def fit_bg(A, C):
        nonlocal ring
        ring = fit_ring_model(Yds, A, bin_time(C, tbin), mean_Y=mean_Y, mean_C=C.mean(1),
                              dims=dims, gSiz=gSiz, ring_size_factor=o["ring_size_factor"],
                              ssub_B=o["ssub_B"])

    if nb == 0:
        fit_bg(A, C)
    else:
        b, f = init_lowrank(mean_Y - A @ C.mean(1), rows.T, nb)
        for _ in range(2):
            _, Yf = lowrank_spatial_stats(rows, A, C, b, f, bb, dims=dims)
            b = hals_b(b, Yf - A @ (C @ f.T), f @ f.T)
            _, bTY = lowrank_temporal_stats(rows, A, C, b, f, bb)
            f = hals_f(f, bTY - (b.T @ A) @ C, b.T @ b)
    log.info("background (%s) estimated, %d components, elapsed %.1f s",
             "ring" if nb == 0 else f"rank {nb}", A.shape[1], time.perf_counter() - t0)

    def temporal(A, C):
        nonlocal bTY
        if nb == 0:
            U = ring_temporal_stats(rows, A, C, ring, bb)
        else:
            U, bTY = lowrank_temporal_stats(rows, A, C, b, f, bb)
        V = np.asarray((A.T @ A).todense(), np.float32)
        return update_temporal(C, U, V, overwrite_C=True, **tkw)   # C: fit_core's own

    for rnd in range(int(o["n_rounds"])):
        tr = temporal(A, C)
        live = np.abs(tr.C).sum(1) > 0
        A, C = sp.csc_matrix(A[:, live]), (tr.C if live.all() else tr.C[live])
        del tr                                   # S, YrA (K, T) are recomputed at the end
        if nb > 0:
            f = hals_f(f, bTY - (b.T @ A) @ C, b.T @ b)
        A, C, groups = merge_components(A, C, merge_thr=o["merge_thr"],
                                        cos_thr=o["merge_cos_thr"],
                                        split_corr=o["merge_split_corr"])
        if A.shape[1] == 0:
            break
        masks = support_masks(A, dims, dilate=max(1, gSig // 2 + 1), box=box)
        if nb == 0:
            Q = ring_spatial_stats(rows, A, C, ring, bb, dims=dims, masks=masks)
        else:
            Q, Yf = lowrank_spatial_stats(rows, A, C, b, f, bb, dims=dims, masks=masks)
        Ad = hals_spatial(A, Q, C @ C.T, masks, n_iter=3)
        del Q
        A, keep = clean_footprints(Ad, dims)
        del Ad
        A, C = _normalize(A[:, keep], C[keep])
        last = rnd == int(o["n_rounds"]) - 1
        if o["update_background_components"] and A.shape[1]:
            if nb > 0:
                b = hals_b(b, Yf - A @ (C @ f.T), f @ f.T)
            elif not last:                # the last round's change of A is small
                fit_bg(A, C)
        log.info("round %d/%d: %d components (%d merges), elapsed %.1f s", rnd + 1,
                 o["n_rounds"], A.shape[1], len(groups), time.perf_counter() - t0)
        if A.shape[1] == 0:
            break
    if A.shape[1] == 0:
        raise NoComponentsError("all components vanished during the CNMF updates "
                                "(no signal left after background removal)")
    A, C, groups = merge_components(A, C, merge_thr=o["merge_thr"], cos_thr=o["merge_cos_thr"],
                                    split_corr=o["merge_split_corr"])
    if groups:
        log.info("final merge: %d groups", len(groups))
    if nb == 0:
        big = footprint_areas(A) >= min_area(o)
        if not big.all():
            log.info("dropped %d component(s) with footprint area < %.0f px",
                     int((~big).sum()), min_area(o))
            A, C = sp.csc_matrix(A[:, big]), C[big]
        if A.shape[1] == 0:
            raise NoComponentsError("all components were smaller than the minimum footprint "
                                    f"area ({min_area(o):.0f} px; see option min_area)")
    tr = temporal(A, C)
    live = np.abs(tr.C).sum(1) > 0
    if nb == 0 and not live.all() and live.any():       # silent components: nothing to report
        log.info("dropped %d component(s) with an all-zero trace", int((~live).sum()))
        A = sp.csc_matrix(A[:, live])
        tr = type(tr)(**{k: (v[live] if isinstance(v, np.ndarray) and v.ndim >= 1
                             and v.shape[0] == live.size else v)
                         for k, v in vars(tr).items()})
    est = Estimates(A=sp.csc_matrix(A), C=tr.C, dims=tuple(int(d) for d in dims), S=tr.S,
                    YrA=tr.YrA, sn=sn, g=tr.g, bl=tr.bl, c1=tr.c1, neurons_sn=tr.neurons_sn,
                    lam=tr.lam)
    if nb == 0:
        est.b0, est.W = ring.b0, sp.csr_matrix(ring.W)
        est.extra.update(ssub_B=int(o["ssub_B"]), ring_radius=int(ring.radius))
    else:
        est.b, est.f = b.astype(np.float32), f.astype(np.float32)
    log.info("CNMF updates done: %d components, elapsed %.1f s", A.shape[1],
             time.perf_counter() - t0)
    return est


def _run(src, dims, T, o, n_processes) -> Estimates:
    _check_opts(o)
    dims = (int(dims[0]), int(dims[1]))
    patches = patch_grid(dims, rf=o["rf"], stride=o["stride"], border_pix=o["border_pix"])
    with patch_pool(src, n_processes, len(patches)) as pool:    # forked while still small
        return _fit(src, dims, T, o, n_processes, pool)


def _fit(src, dims, T, o, n_processes, pool) -> Estimates:
    t0 = time.perf_counter()
    P = dims[0] * dims[1]
    A, C, cn, pnr = initialize(src, dims, o, n_processes, pool)
    if A.shape[1] == 0:
        raise NoComponentsError(
            f"no components found by {o['method_init']} initialisation "
            f"(min_corr={o['min_corr']}, min_pnr={o['min_pnr']}, gSig={o['gSig']}); "
            "try lower min_corr / min_pnr or check the movie")
    rows = RowSource(src, P, T)
    cache: dict = {}
    search = (o["residual_search"] and int(o["init_iter"]) >= 2 and o["method_init"] == "corr_pnr"
              and int(o["nb"]) == 0 and o["init_fn"] is None)
    if search:
        est = fit_core(rows, dims, A, C, dict(o, n_rounds=1), cache=cache)
        A, C = est.A, est.C
        del est                                  # only A, C go on (S, YrA: (K, T) each)
        An, Cn = residual_search(src, dims, A, C, o, n_processes, pool)
        log.info("residual search: %d new components", An.shape[1])
        A = sp.hstack([A, An], format="csc").astype(np.float32)
        C = np.vstack([C, Cn]).astype(np.float32)
        est = fit_core(rows, dims, A, C, dict(o, n_rounds=max(1, int(o["n_rounds"]) - 1)),
                       cache=cache)
    else:
        est = fit_core(rows, dims, A, C, o, cache=cache)
    if o["refit"]:
        log.info("refit: re-running the updates seeded with %d footprints", est.A.shape[1])
        est = fit_core(rows, dims, est.A, est.C, o, cache=cache)
    est.Cn = cn
    est.extra.update(cn=cn, pnr=pnr, fit_seconds=time.perf_counter() - t0)
    log.info("fit: %d components in %.1f s", est.n_components, time.perf_counter() - t0)
    return est


def fit_cnmf_array(Yr: np.ndarray, dims, *, n_processes: int = 1, **kwargs) -> Estimates:
    """Fit CNMF(-E) to an in-memory movie.

    Parameters
    ----------
    Yr : ndarray, shape (H*W, T)
        Movie in memmap layout (Fortran pixel order), float32 (raw intensity units).
    dims : (int, int)
        ``(H, W)``.
    **kwargs
        Options named as CaImAn's parameters (see ``DEFAULTS``): ``gSig, gSiz, min_corr,
        min_pnr, K, rf, stride, p, fr, decay_time, merge_thr, nb, ...``; ``init_fn``
        (callable ``Y (T, h, w) -> (A (h*w, K), C (K, T))``) replaces the initialisation.

    Returns
    -------
    Estimates
    """
    o = dict(DEFAULTS, **kwargs)
    Yr = np.asarray(Yr, dtype=np.float32)
    return _run(Yr, dims, Yr.shape[1], o, 1)


def options_from_params(params) -> dict:
    """Map a ``cellextract.params.Params`` (attributes only) to fit options."""
    i, pa, t, pp = params.init, params.patch, params.temporal, params.preprocess
    o = dict(
        method_init=i.method_init, K=i.K, gSig=_pair(i.gSig), gSiz=_pair(i.gSiz),
        min_corr=i.min_corr, min_pnr=i.min_pnr, center_psf=i.center_psf, tsub=i.tsub,
        ssub=i.ssub, ssub_B=i.ssub_B, ring_size_factor=i.ring_size_factor, nb=i.nb,
        rolling_sum=i.rolling_sum, normalize_init=i.normalize_init,
        rf=pa.rf, stride=pa.stride, only_init=pa.only_init, del_duplicates=pa.del_duplicates,
        border_pix=pa.border_pix, low_rank_background=pa.low_rank_background,
        nb_patch=pa.nb_patch, p=t.p, bas_nonneg=t.bas_nonneg,
        method_deconvolution=t.method_deconvolution, fr=float(params.data.fr),
        decay_time=float(params.data.decay_time), merge_thr=params.merging.merge_thr,
        update_background_components=params.spatial.update_background_components,
        refit=params.workflow.refit,
    )
    for name in ("noise_range", "noise_method"):
        if hasattr(pp, name):
            o[name] = tuple(getattr(pp, name)) if name == "noise_range" else getattr(pp, name)
    for name in ("init_iter", "alpha_snmf", "max_iter_snmf", "rolling_length"):
        if hasattr(i, name):
            o[name] = getattr(i, name)
    return o


def fit_cnmf(mmap_path, *, params, n_processes: int = 1, options: dict | None = None) -> Estimates:
    """Fit CNMF(-E) to a CaImAn memmap.

    Parameters
    ----------
    mmap_path : str or path
        ``..._d1_H_d2_W_d3_1_order_C_frames_T.mmap`` (Yr (H*W, T), float32).
    params : cellextract.params.Params
        Read through attributes only (a ``SimpleNamespace`` tree works).
    n_processes : int
        Worker processes for the patches.
    options : dict, optional
        Overrides of fit options not in ``Params`` (see ``DEFAULTS``), e.g.
        ``{"residual_search": False, "n_rounds": 3}``.

    Returns
    -------
    Estimates
        ``A`` (csc, unit-norm columns), ``C, S, YrA`` (K, T), ``b0, W`` (ring model,
        ``W`` on the ``ssub_B`` grid, see ``extra['ssub_B']``) or ``b, f`` (nb > 0),
        ``sn, g, bl, c1, neurons_sn, lam, dims, Cn``; ``extra`` holds ``cn, pnr``.
    """
    from cellextract.io.memmap import open_memmap

    Yr, dims, T = open_memmap(mmap_path)
    del Yr
    o = dict(DEFAULTS, **options_from_params(params), **(options or {}))
    return _run(os.fspath(mmap_path), dims, T, o, max(1, int(n_processes)))
