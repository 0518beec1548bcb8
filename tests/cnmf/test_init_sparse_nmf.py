"""sparse_nmf initialisation recovers elongated (dendrite-like) shapes."""

import numpy as np
import pytest

from cellextract.cnmf.init_sparse_nmf import init_sparse_nmf, sparse_nmf
from cellextract.errors import ParameterError


def _segment(dims, p0, p1, width=1.2):
    rr, cc = np.mgrid[:dims[0], :dims[1]].astype(float)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = np.clip(((rr - p0[0]) * d[0] + (cc - p0[1]) * d[1]) / (d @ d), 0, 1)
    dist = np.hypot(rr - (p0[0] + t * d[0]), cc - (p0[1] + t * d[1]))
    return np.exp(-dist ** 2 / (2 * width ** 2))


def make_dendrite_movie(T=800, dims=(40, 40), seed=0, noise=1.0, amp=6.0):
    rng = np.random.default_rng(seed)
    A = np.stack([_segment(dims, (5, 4), (34, 20)), _segment(dims, (6, 34), (30, 26))])
    S = (rng.random((2, T)) < 0.03) * rng.uniform(0.5, 1.5, (2, T))
    C = np.zeros((2, T))
    for t in range(T):
        C[:, t] = (C[:, t - 1] * 0.9 if t else 0) + S[:, t]
    C *= amp
    Y = 20 + np.einsum("kt,khw->thw", C, A) + rng.normal(0, noise, (T,) + dims)
    return Y.astype(np.float32), A, C


@pytest.fixture(scope="module")
def movie():
    return make_dendrite_movie()


def _assert_recovered(res, A, C, *, thr=0.9):
    fps = res.footprints_2d()
    corr = np.array([[np.corrcoef(f.ravel(), a.ravel())[0, 1] for a in A] for f in fps])
    j = corr.argmax(axis=1)
    assert sorted(j) == [0, 1]
    for i in range(2):
        assert corr[i, j[i]] > thr
        assert np.corrcoef(res.C[i], C[j[i]])[0, 1] > thr


def test_recovers_two_elongated_shapes(movie):
    Y, A, C = movie
    res = init_sparse_nmf(Y, K=2)
    assert res.A.shape == (40 * 40, 2) and res.C.shape == (2, Y.shape[0])
    _assert_recovered(res, A, C)
    fps = res.footprints_2d()
    # sparse: pixels far from both segments are exactly zero
    far = (A.max(axis=0) < 1e-3)
    assert (fps[:, far] == 0).mean() > 0.9
    # raw scale: A @ C reproduces the neural signal at the segment midpoints
    est = (res.A @ res.C).reshape(40, 40, -1, order="F")
    true = np.einsum("kt,khw->hwt", C, A)
    for r, c in [(20, 12), (18, 30)]:
        slope = np.polyfit(true[r, c], est[r, c], 1)[0]
        assert 0.7 < slope < 1.2


def test_sparsity_weight_matters(movie):
    Y, A, C = movie
    dense = init_sparse_nmf(Y, K=2, alpha=0.0).A.nnz
    sparse = init_sparse_nmf(Y, K=2, alpha=3.0).A.nnz
    assert sparse < 0.7 * dense


@pytest.mark.parametrize("kw", [dict(tsub=2), dict(ssub=2)])
def test_downsampling(movie, kw):
    Y, A, C = movie
    res = init_sparse_nmf(Y, K=2, **kw)
    assert res.C.shape == (2, Y.shape[0]) and res.dims == (40, 40)
    _assert_recovered(res, A, C, thr=0.85)


def test_core_objective_decreases():
    rng = np.random.default_rng(3)
    R = (rng.random((60, 3)) @ rng.random((3, 100))).astype(np.float32)
    A1, C1, _, _ = sparse_nmf(R, 3, lam=0.0, max_iter=5)
    A2, C2, _, _ = sparse_nmf(R, 3, lam=0.0, max_iter=200, tol=1e-9)
    e1, e2 = np.linalg.norm(R - A1 @ C1), np.linalg.norm(R - A2 @ C2)
    assert e2 <= e1 and e2 < 0.05 * np.linalg.norm(R)
    np.testing.assert_allclose(np.linalg.norm(C2, axis=1), 1, atol=1e-5)


def test_K_required():
    with pytest.raises(ParameterError):
        init_sparse_nmf(np.zeros((20, 8, 8), np.float32), K=0)
