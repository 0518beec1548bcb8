"""corr_pnr (CNMF-E) greedy initialisation on a small synthetic one-photon movie."""

import numpy as np
import pytest

from cellextract.cnmf.init_corr_pnr import (downsample_movie, init_corr_pnr, rise_score,
                                            upsample_traces)
from cellextract.errors import ParameterError


def make_1p_movie(T=500, dims=(64, 64), n=6, seed=0, gsig=2.5, noise=5.0, bg_amp=200.0, amp=40.0,
                  rate=0.02, min_dist=9):
    """Gaussian neurons with AR(1) calcium on a strong, smooth, fluctuating background."""
    rng = np.random.default_rng(seed)
    h, w = dims
    rr, cc = np.mgrid[:h, :w]
    centers = []
    while len(centers) < n:
        p = rng.uniform(6, [h - 6, w - 6])
        if all(np.hypot(*(p - q)) >= min_dist for q in centers):
            centers.append(p)
    centers = np.array(centers)
    A = np.stack([np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * gsig ** 2)) for r, c in centers])
    S = (rng.random((n, T)) < rate) * rng.uniform(0.5, 1.5, (n, T))
    g = np.exp(-1 / 8.0)
    C = np.zeros((n, T))
    for t in range(T):
        C[:, t] = (C[:, t - 1] * g if t else 0) + S[:, t]
    C *= amp
    B0 = 800 * np.exp(-((rr - h / 2) ** 2 + (cc - w / 2) ** 2) / (2 * 60.0 ** 2))
    blobs = [np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * s ** 2))
             for r, c, s in zip(rng.uniform(0, h, 3), rng.uniform(0, w, 3), rng.uniform(15, 25, 3))]
    t = np.arange(T)
    f = [bg_amp * (1 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(80, 200) + rng.uniform(0, 6))
                   + 0.2 * np.cumsum(rng.normal(0, 0.1, T))) for _ in blobs]
    Y = (B0[None] + np.einsum("kt,khw->thw", np.array(f), np.array(blobs))
         + np.einsum("kt,khw->thw", C, A))
    Y += rng.normal(0, noise, Y.shape)
    return Y.astype(np.float32), A, C, centers


@pytest.fixture(scope="module")
def movie():
    return make_1p_movie()


def _match(res, centers):
    d = np.hypot(*(res.centers[:, None, :] - centers[None]).transpose(2, 0, 1))
    return d


def _run(Y, **kw):
    kw.setdefault("min_corr", 0.8)
    kw.setdefault("min_pnr", 8)
    return init_corr_pnr(Y, gSig=2.5, gSiz=11, **kw)


def test_finds_neurons_no_false_seeds(movie):
    Y, A, C, centers = movie
    res = _run(Y)
    T, h, w = Y.shape
    assert res.A.shape == (h * w, res.K) and res.C.shape == (res.K, T) and res.C.dtype == np.float32
    assert res.cn.shape == res.pnr.shape == (h, w) and res.dims == (h, w)
    d = _match(res, centers)
    assert (d.min(axis=0) < 2).all()  # every neuron found, centre within 2 px
    assert (d.min(axis=1) >= 2).sum() <= 1  # at most one false seed
    assert res.K <= len(centers) + 1
    norms = np.sqrt(np.asarray(res.A.multiply(res.A).sum(axis=0))).ravel()
    np.testing.assert_allclose(norms, 1, atol=1e-5)
    j = d.argmin(axis=1)
    for i in range(res.K):
        if d[i, j[i]] < 2:
            assert np.corrcoef(res.C[i], C[j[i]])[0, 1] > 0.95
            fp = res.footprints_2d()[i]
            assert np.corrcoef(fp.ravel(), A[j[i]].ravel())[0, 1] > 0.9
            # raw scale: A @ C at the neuron centre ~ the true signal there
            r, c = np.round(centers[j[i]]).astype(int)
            est = fp[r, c] * res.C[i]
            true = A[j[i], r, c] * C[j[i]]
            slope = np.polyfit(true, est, 1)[0]
            assert 0.6 < slope < 1.3


def test_K_cap_takes_best(movie):
    Y, A, C, centers = movie
    res = _run(Y, K=3)
    assert res.K == 3
    assert (_match(res, centers).min(axis=1) < 2).all()


@pytest.mark.parametrize("kw", [dict(tsub=2), dict(ssub=2), dict(tsub=2, ssub=2)])
def test_downsampling(movie, kw):
    Y, A, C, centers = movie
    res = _run(Y, **kw)
    assert res.C.shape == (res.K, Y.shape[0]) and res.A.shape[0] == Y.shape[1] * Y.shape[2]
    d = _match(res, centers)
    assert (d.min(axis=0) < 2).all()
    assert (d.min(axis=1) >= 2).sum() <= 1
    j = d.argmin(axis=1)
    assert np.median([np.corrcoef(res.C[i], C[j[i]])[0, 1] for i in range(res.K)]) > 0.9


def test_seed_mask_restricts(movie):
    Y, A, C, centers = movie
    mask = np.zeros(Y.shape[1:], bool)
    mask[:, :32] = True
    res = _run(Y, seed_mask=mask)
    left = centers[:, 1] < 30
    d = _match(res, centers)
    assert (d.min(axis=0)[left] < 2).all()
    assert (res.extra["seeds"][:, 1] < 32).all()


def test_pure_noise_gives_no_components():
    rng = np.random.default_rng(5)
    Y = rng.normal(100, 5, (400, 40, 40)).astype(np.float32)
    res = _run(Y)
    assert res.K == 0 and res.C.shape == (0, 400) and res.A.shape == (1600, 0)


def test_bad_input():
    with pytest.raises(ParameterError):
        init_corr_pnr(np.zeros((10, 10), np.float32), gSig=2, gSiz=9, min_corr=0.8, min_pnr=8)


def test_resampling_helpers():
    Y = np.arange(5 * 5 * 7, dtype=np.float32).reshape(5, 5, 7)
    D = downsample_movie(Y, 2, 2)
    assert D.shape == (3, 3, 4)
    np.testing.assert_allclose(D[0, 0, 0], Y[:2, :2, :2].mean())
    np.testing.assert_allclose(D[-1, -1, -1], Y[4:, 4:, 6:].mean())
    C = np.array([[0.0, 2.0, 4.0]], np.float32)
    up = upsample_traces(C, 6, 2)
    assert up.shape == (1, 6)
    # bin centres at frames 0.5, 2.5, 4.5
    np.testing.assert_allclose(up[0], [0.0, 0.5, 1.5, 2.5, 3.5, 4.0], atol=1e-6)


def test_rise_score_separates_transients_from_waves():
    rng = np.random.default_rng(0)
    t = np.arange(1000)
    wave = 20 * np.sin(2 * np.pi * t / 150) + rng.normal(0, 1, t.size)
    spikes = np.zeros(t.size)
    spikes[[100, 400, 700]] = 10
    transient = np.convolve(spikes, np.exp(-np.arange(50) / 8))[:t.size] + rng.normal(0, 1, t.size)
    assert rise_score(wave) < 5 < rise_score(transient)


def test_vessel_edge_artefacts_rejected_by_consistency():
    """An active out-of-focus source seen through a sharp-edged vessel makes edge
    artefacts; the spatial-consistency check rejects some and keeps every neuron."""
    T = 500
    Y, A, C, centers = make_1p_movie(T=T, seed=0, n=4)
    rng = np.random.default_rng(10)
    rr, cc = np.mgrid[:64, :64]
    blob = np.exp(-((rr - 32) ** 2 + (cc - 32) ** 2) / (2 * 12.0 ** 2))
    s = (rng.random(T) < 0.03) * rng.uniform(0.5, 1.5, T)
    act = np.zeros(T)
    for t in range(T):
        act[t] = (act[t - 1] * np.exp(-1 / 8.0) if t else 0) + s[t]
    tau = np.where(np.abs(cc - 32) < 3, 0.4, 1.0)
    Y = Y + (300 * act[:, None, None] * (blob * tau)[None]).astype(np.float32)
    on, off = _run(Y), _run(Y, min_consistency=-1)
    for res in (on, off):
        assert (_match(res, centers).min(axis=0) < 2).all()
    n_false = [(_match(r, centers).min(axis=1) >= 2).sum() for r in (on, off)]
    assert n_false[0] < n_false[1]
    assert any("consistency" in why and float(why.split()[-1]) < 0.4 for _, why in on.extra["rejected"])


def test_nan_border_still_finds_neurons(movie):
    Y, A, C, centers = movie
    Y = Y.copy()
    Y[:, :, -2:] = np.nan
    res = _run(Y)
    assert (_match(res, centers).min(axis=0) < 2).all() and np.isfinite(res.C).all()


@pytest.mark.parametrize("tsub,ssub", [(1, 1), (2, 1), (3, 2)])
def test_memmap_rows_input_matches_frames(movie, tsub, ssub):
    """Rows (h*w, T) in Fortran pixel order (``rows_dims``) give the same result as frames;
    an odd number of frames leaves a partial last bin."""
    Y = movie[0][:-1]
    T, h, w = Y.shape
    rows = np.ascontiguousarray(Y.transpose(2, 1, 0).reshape(h * w, T))
    a = _run(Y, tsub=tsub, ssub=ssub)
    b = _run(rows, rows_dims=(h, w), tsub=tsub, ssub=ssub)
    assert a.A.shape == b.A.shape and a.A.shape[1] > 0
    np.testing.assert_allclose(a.pnr, b.pnr, rtol=1e-3, atol=1e-4)   # float32 sum order
    np.testing.assert_allclose(a.A.toarray(), b.A.toarray(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(a.C, b.C, rtol=1e-3, atol=1e-2)
    with pytest.raises(ParameterError):
        _run(rows, rows_dims=(h + 1, w))


# Seeds found by the whole-movie implementation (before the streamed one, commit d08ca7d)
# on the default movie with _run's thresholds: the streamed search must find the same.
_SEEDS_BEFORE = {
    (1, 1): [[38, 45], [49, 6], [34, 54], [39, 19], [8, 7], [48, 53]],
    (2, 1): [[48, 7], [39, 20], [38, 45], [8, 8], [48, 54], [35, 54]],
    (1, 2): [[38.5, 44.5], [48.5, 6.5], [34.5, 54.5], [8.5, 6.5], [38.5, 20.5], [48.5, 54.5]],
    (3, 2): [[38.5, 44.5], [48.5, 6.5], [38.5, 20.5], [30.5, 56.5], [8.5, 6.5], [48.5, 54.5]],
}


@pytest.mark.parametrize("tsub,ssub", list(_SEEDS_BEFORE))
def test_streamed_search_matches_whole_movie_and_recomputed_windows(movie, tsub, ssub):
    """The filtered movie kept in memory, or each seed's window recomputed from the movie
    in chunks of frames (tiny memory budget): the same result (up to float rounding of
    the BLAS products), and the seeds of the in-memory version."""
    Y = movie[0]
    kept = _run(Y, tsub=tsub, ssub=ssub)
    lazy = _run(Y, tsub=tsub, ssub=ssub, max_bytes=2e5)
    assert kept.extra["kept"] and not lazy.extra["kept"] and lazy.extra["windows"] >= lazy.K
    np.testing.assert_array_equal(kept.extra["seeds"], _SEEDS_BEFORE[(tsub, ssub)])
    np.testing.assert_array_equal(lazy.extra["seeds"], kept.extra["seeds"])
    np.testing.assert_allclose(lazy.A.toarray(), kept.A.toarray(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lazy.C, kept.C, rtol=1e-4, atol=1e-4 * np.abs(kept.C).max())
    # same sweep: cn is the correlation of the data thresholded at 3 noise levels, so a pixel
    # whose values sit at the threshold can flip with the rounding of the BLAS products (which
    # depends on the CPU's kernels): nearly all pixels agree, a few may not
    dcn = np.abs(lazy.cn - kept.cn)
    assert np.mean(dcn > 1e-3) < 0.01 and np.median(dcn) < 1e-5
    np.testing.assert_allclose(lazy.pnr, kept.pnr, rtol=1e-3)


def test_patch_reader_from_memmap_file(movie, tmp_path):
    """A memmap file read column by column gives the in-memory result."""
    from cellextract.cnmf.patch_movie import PatchReader
    Y = movie[0]
    T, h, w = Y.shape
    rows = np.ascontiguousarray(Y.transpose(2, 1, 0)).reshape(h * w, T)
    path = tmp_path / "m.mmap"
    rows.tofile(path)
    a = _run(Y, tsub=2, max_bytes=1e5)
    b = _run(PatchReader(str(path), (h, w), T=T), tsub=2, max_bytes=1e5)
    np.testing.assert_allclose(a.A.toarray(), b.A.toarray(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a.C, b.C, rtol=1e-5, atol=1e-5 * np.abs(a.C).max())
