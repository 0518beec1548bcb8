"""End-to-end CNMF-E fits on small synthetic 1P movies (project simulator)."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.fit import fit_cnmf, fit_cnmf_array
from cellextract.errors import NoComponentsError
from cellextract.io.memmap import frames_to_columns, memmap_name
from cellextract.simulate import simulate
from cellextract.simulate.score import score

DIMS, T, K = (64, 64), 600, 12
KW = dict(gSig=(3, 3), gSiz=(7, 7), min_corr=0.8, min_pnr=6, tsub=2, rf=None)


@pytest.fixture(scope="module")
def movie():
    sim = simulate(kind="1p", dims=DIMS, frames=T, n_neurons=K, seed=1)
    return sim, frames_to_columns(sim.frames())


def _check_estimates(est, P, T):
    Kf = est.A.shape[1]
    assert sp.isspmatrix_csc(est.A) and est.A.shape == (P, Kf)
    assert np.allclose(np.sqrt(est.A.multiply(est.A).sum(0)), 1, atol=1e-4)
    assert est.A.min() >= 0
    for name in ("C", "S", "YrA"):
        x = getattr(est, name)
        assert x.shape == (Kf, T) and x.dtype == np.float32
    for name in ("bl", "c1", "neurons_sn", "lam"):
        assert getattr(est, name).shape == (Kf,)
    assert est.g.shape == (Kf, 1) and est.sn.shape == (P,)
    assert est.S.min() >= 0


def test_fit_1p_end_to_end(movie):
    sim, Yr = movie
    est = fit_cnmf_array(Yr, DIMS, fr=sim.truth.fr, decay_time=sim.truth.decay_time, **KW)
    _check_estimates(est, DIMS[0] * DIMS[1], T)
    assert est.b0.shape == (DIMS[0] * DIMS[1],)
    assert est.W.shape == (32 * 32, 32 * 32) and est.extra["ssub_B"] == 2
    assert est.Cn.shape == DIMS
    s = score(est.A, DIMS, sim.truth, C_found=est.C)
    assert s["F1"] >= 0.7, s
    assert s["median_trace_corr"] >= 0.85, s


def test_fit_seeded_refines_footprints_and_traces(movie):
    """Seeded with degraded true footprints: the updates recover shapes and traces."""
    sim, Yr = movie
    At = sim.truth.A.toarray()
    rng = np.random.default_rng(0)
    A0 = np.where(At > 0.5 * At.max(0), At, 0) * rng.uniform(0.5, 1.5, At.shape)

    def init_fn(Y):
        return sp.csc_matrix(A0), np.zeros((A0.shape[1], Y.shape[0]), np.float32) + 1.0

    est = fit_cnmf_array(Yr, DIMS, fr=sim.truth.fr, decay_time=sim.truth.decay_time,
                         init_fn=init_fn, **KW)
    s0 = score(sp.csc_matrix(A0), DIMS, sim.truth)
    s = score(est.A, DIMS, sim.truth, C_found=est.C)
    assert s["F1"] >= 0.9, s
    assert s["mean_iou"] > s0["mean_iou"]
    assert s["median_trace_corr"] >= 0.95, s


def test_fit_cnmf_memmap_with_patches(movie, tmp_path):
    sim, Yr = movie
    path = memmap_name(tmp_path / "m", DIMS, T)
    Yr.tofile(path)
    params = SimpleNamespace(
        init=SimpleNamespace(method_init="corr_pnr", K=None, gSig=(3, 3), gSiz=(7, 7),
                             min_corr=0.8, min_pnr=6, center_psf=True, tsub=2, ssub=1,
                             ssub_B=2, ring_size_factor=1.4, nb=0, rolling_sum=True,
                             normalize_init=False),
        patch=SimpleNamespace(rf=20, stride=10, only_init=True, del_duplicates=True,
                              border_pix=0, low_rank_background=None, nb_patch=0),
        temporal=SimpleNamespace(p=1, bas_nonneg=False, method_deconvolution="oasis"),
        preprocess=SimpleNamespace(p=1, noise_method="mean", noise_range=(0.25, 0.5)),
        data=SimpleNamespace(fr=sim.truth.fr, decay_time=sim.truth.decay_time),
        merging=SimpleNamespace(merge_thr=0.7),
        spatial=SimpleNamespace(update_background_components=True),
        workflow=SimpleNamespace(refit=False))
    est = fit_cnmf(path, params=params, n_processes=2)
    _check_estimates(est, DIMS[0] * DIMS[1], T)
    s = score(est.A, DIMS, sim.truth, C_found=est.C)
    assert s["F1"] >= 0.7, s


def test_no_cells_raises_clear_error():
    rng = np.random.default_rng(0)
    Yr = (100 + rng.standard_normal((32 * 32, 300))).astype(np.float32)
    with pytest.raises(NoComponentsError, match="no components"):
        fit_cnmf_array(Yr, (32, 32), **KW)


def _truth_init(sim, frac=0.5, seed=0):
    At = sim.truth.A.toarray()
    rng = np.random.default_rng(seed)
    A0 = np.where(At > frac * At.max(0), At, 0) * rng.uniform(0.5, 1.5, At.shape)

    def init_fn(Y):
        return sp.csc_matrix(A0), np.ones((A0.shape[1], Y.shape[0]), np.float32)
    return init_fn


def test_fit_2p_lowrank_background():
    sim = simulate(kind="2p", dims=(48, 48), frames=500, n_neurons=10, seed=2)
    Yr = frames_to_columns(sim.frames())
    est = fit_cnmf_array(Yr, (48, 48), nb=2, gSig=(4, 4), gSiz=(9, 9), rf=None,
                         fr=sim.truth.fr, decay_time=sim.truth.decay_time,
                         init_fn=_truth_init(sim), del_duplicates=False)
    assert est.b.shape == (48 * 48, 2) and est.f.shape == (2, 500)
    assert est.W is None and (est.b >= 0).all() and (est.f >= 0).all()
    s = score(est.A, (48, 48), sim.truth, C_found=est.C)
    assert s["F1"] >= 0.9 and s["median_trace_corr"] >= 0.9, s


def test_refit_and_patch_fits_keep_accuracy(movie):
    sim, Yr = movie
    kw = dict(KW, init_fn=_truth_init(sim))
    a = fit_cnmf_array(Yr, DIMS, fr=sim.truth.fr, decay_time=sim.truth.decay_time, **kw)
    b = fit_cnmf_array(Yr, DIMS, fr=sim.truth.fr, decay_time=sim.truth.decay_time,
                       refit=True, **kw)
    c = fit_cnmf_array(Yr, DIMS, fr=sim.truth.fr, decay_time=sim.truth.decay_time,
                       only_init=False, **kw)
    f = [score(e.A, DIMS, sim.truth, C_found=e.C)["F1"] for e in (a, b, c)]
    assert f[1] >= f[0] - 0.05 and min(f) >= 0.8, f


def test_restricted_spatial_statistics_match_dense(movie):
    """Y C^T computed only on each component's mask (+ ring halo) equals the dense result."""
    from cellextract.cnmf.background import downsample_operator, fit_ring_model
    from cellextract.cnmf.patches import RowSource
    from cellextract.cnmf.spatial import hals_spatial, support_masks
    from cellextract.cnmf.spatial_stats import ring_spatial_stats
    sim, Yr = movie
    A = sp.csc_matrix(sim.truth.A)
    C = sim.truth.C.astype(np.float32)
    ring = fit_ring_model(downsample_operator(DIMS, 2) @ Yr, A, C, mean_Y=Yr.mean(1),
                          mean_C=C.mean(1), dims=DIMS, gSiz=7, ring_size_factor=1.4, ssub_B=2)
    rows = RowSource(Yr, Yr.shape[0], T)
    masks = support_masks(A, DIMS, dilate=2, box=7)
    q = ring_spatial_stats(rows, A, C, ring, 64 * 4 * T, dims=DIMS, masks=masks)  # 4-col strips
    B = ring.background(Yr - A @ C)
    Qd = (Yr - B) @ C.T
    assert len(q) == len(masks)
    for k, m in enumerate(masks):
        assert q[k].shape == m.shape
        assert np.allclose(q[k], Qd[m, k], rtol=1e-3, atol=1e-4 * np.abs(Qd[:, k]).max())
    Ad = hals_spatial(A, Qd, C @ C.T, masks).toarray()
    As = hals_spatial(A, q, C @ C.T, masks).toarray()
    assert np.allclose(As, Ad, rtol=1e-3, atol=1e-4 * np.abs(Ad).max())


def test_lowrank_spatial_statistics_on_masks(movie):
    from cellextract.cnmf.patches import RowSource
    from cellextract.cnmf.spatial import support_masks
    from cellextract.cnmf.spatial_stats import lowrank_spatial_stats
    sim, Yr = movie
    A = sp.csc_matrix(sim.truth.A)
    C = sim.truth.C.astype(np.float32)
    rng = np.random.default_rng(0)
    b = rng.random((Yr.shape[0], 2)).astype(np.float32)
    f = rng.random((2, T)).astype(np.float32)
    masks = support_masks(A, DIMS, dilate=2, box=7)
    q, Yf = lowrank_spatial_stats(RowSource(Yr, Yr.shape[0], T), A, C, b, f, 64 * 3 * T,
                                  dims=DIMS, masks=masks)
    Qd = (Yr - b @ f) @ C.T
    np.testing.assert_allclose(Yf, Yr @ f.T, rtol=1e-4)
    for k, m in enumerate(masks):
        assert np.allclose(q[k], Qd[m, k], rtol=1e-3, atol=1e-4 * np.abs(Qd[:, k]).max())
    none, Yf2 = lowrank_spatial_stats(RowSource(Yr, Yr.shape[0], T), A, C, b, f, 1 << 20,
                                      dims=DIMS)
    assert none is None and np.allclose(Yf2, Yf, rtol=1e-5)


def test_min_area_from_gsig_and_footprint_areas():
    import numpy as np
    import scipy.sparse as sp
    from cellextract.cnmf.fit import footprint_areas, min_area
    assert 18 < min_area({"gSig": (3, 3), "min_area": None}) < 22
    assert min_area({"gSig": 3, "min_area": 7}) == 7
    A = np.zeros((100, 2), np.float32)
    A[:30, 0] = 1.0
    A[:3, 1] = 1.0
    A[3:50, 1] = 0.1                        # below 25 % of the maximum
    np.testing.assert_array_equal(footprint_areas(sp.csc_matrix(A)), [30, 3])


def test_masked_ring_statistics_odd_dims_and_block_size():
    """Partial ssub_B blocks at the edges and masks touching the border stay exact."""
    from cellextract.cnmf.background import downsample_operator, fit_ring_model
    from cellextract.cnmf.patches import RowSource
    from cellextract.cnmf.spatial import support_masks
    from cellextract.cnmf.spatial_stats import ring_spatial_stats
    dims, T = (35, 29), 120
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:dims[0], :dims[1]]
    cen = [(2, 3), (17, 14), (33, 27), (20, 1)]
    A = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).ravel(order="F") for r, c in cen], 1)
    A = sp.csc_matrix(np.where(A > 0.05, A, 0).astype(np.float32))
    C = rng.random((len(cen), T)).astype(np.float32)
    Yr = (A @ C + 10 + rng.random((dims[0] * dims[1], T))).astype(np.float32)
    ring = fit_ring_model(downsample_operator(dims, 3) @ Yr, A, C, mean_Y=Yr.mean(1),
                          mean_C=C.mean(1), dims=dims, gSiz=5, ring_size_factor=1.4, ssub_B=3)
    masks = support_masks(A, dims, dilate=2, box=6)
    q = ring_spatial_stats(RowSource(Yr, Yr.shape[0], T), A, C, ring, 7 * 4 * T, dims=dims,
                           masks=masks)
    Qd = (Yr - ring.background(Yr - A @ C)) @ C.T
    for k, m in enumerate(masks):
        np.testing.assert_allclose(q[k], Qd[m, k], rtol=1e-4, atol=1e-4 * np.abs(Qd[:, k]).max())


def test_streamed_residual_search_matches_in_memory_residual(movie):
    """residual_init_patch (residual computed column by column as corr_pnr reads it, any
    memory budget) finds what corr_pnr finds on the whole residual computed in memory."""
    from cellextract.cnmf.background import downsample_operator, fit_ring_model
    from cellextract.cnmf.fit import DEFAULTS
    from cellextract.cnmf.init_corr_pnr import init_corr_pnr
    from cellextract.cnmf.patch_movie import PatchReader
    from cellextract.cnmf.patches import bin_time
    from cellextract.cnmf.residual import residual_init_patch
    sim, Yr = movie
    known = np.arange(0, K, 2)                                  # half the neurons known
    A = sp.csc_matrix(sim.truth.A)[:, known].astype(np.float32)
    C = sim.truth.C[known].astype(np.float32)
    o = dict(DEFAULTS, **KW, fr=sim.truth.fr, decay_time=sim.truth.decay_time)
    tbin = int(np.ceil(T / o["max_bg_frames"]))
    ring = fit_ring_model(downsample_operator(DIMS, 2) @ bin_time(Yr, tbin), A,
                          bin_time(C, tbin), mean_Y=Yr.mean(1), mean_C=C.mean(1), dims=DIMS,
                          gSiz=7, ring_size_factor=1.4, ssub_B=2)
    R = Yr - A @ C
    R = (R - ring.background(R)).astype(np.float32)
    ref = init_corr_pnr(R, rows_dims=DIMS, gSig=(3, 3), gSiz=(7, 7), min_corr=0.8, min_pnr=6,
                        tsub=2, center_psf=True)
    assert ref.K > 0
    for budget in (1 << 30, 1 << 18):
        An, Cn, _, _ = residual_init_patch(PatchReader(Yr, DIMS, pilot_frames=None), DIMS,
                                           A_p=A, C_p=C, o=dict(o, patch_bytes=budget))
        assert An.shape[1] == ref.K
        np.testing.assert_allclose(An.toarray(), ref.A.toarray(), atol=1e-4)
        np.testing.assert_allclose(Cn, ref.C, rtol=1e-3, atol=1e-2 * np.abs(ref.C).max())
