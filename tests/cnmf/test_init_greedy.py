"""greedy_roi (CNMF) initialisation on a small synthetic two-photon movie."""

import numpy as np
import pytest

from cellextract.cnmf.init_greedy import global_background, hals, init_greedy_roi
from cellextract.errors import ParameterError


def make_2p_movie(T=600, dims=(48, 48), n=5, seed=0, radius=4.0, noise=1.0, amp=4.0, rate=0.03,
                  min_dist=10, baseline=10.0):
    """Disc-like somata with AR(1) calcium and resting fluorescence on a textured,
    globally fluctuating neuropil baseline."""
    rng = np.random.default_rng(seed)
    h, w = dims
    rr, cc = np.mgrid[:h, :w]
    centers = []
    while len(centers) < n:
        p = rng.uniform(6, [h - 6, w - 6])
        if all(np.hypot(*(p - q)) >= min_dist for q in centers):
            centers.append(p)
    centers = np.array(centers)
    A = np.stack([1 / (1 + np.exp((np.hypot(rr - r, cc - c) - radius) / 0.7)) for r, c in centers])
    S = (rng.random((n, T)) < rate) * rng.uniform(0.5, 1.5, (n, T))
    g = np.exp(-1 / 10.0)
    C = np.zeros((n, T))
    for t in range(T):
        C[:, t] = (C[:, t - 1] * g if t else 0) + S[:, t]
    C *= amp
    b = baseline * (0.7 + 0.3 * rng.random((h, w)))
    f = 1 + 0.1 * np.sin(np.arange(T) / 50.0)
    Y = b[None] * f[:, None, None] + np.einsum("kt,khw->thw", C, A) + 2 * A.sum(0)[None]
    Y += rng.normal(0, noise, Y.shape)
    return Y.astype(np.float32), A, C, centers


@pytest.fixture(scope="module")
def movie():
    return make_2p_movie()


def _check(res, Y, A, C, centers, *, trace_min=0.95, fp_min=0.95):
    T, h, w = Y.shape
    assert res.A.shape == (h * w, len(centers)) and res.C.shape == (len(centers), T)
    d = np.hypot(*(res.centers[:, None, :] - centers[None]).transpose(2, 0, 1))
    j = d.argmin(axis=1)
    assert sorted(j) == list(range(len(centers)))  # every neuron exactly once
    assert (d.min(axis=1) < 2).all()
    for i in range(res.K):
        assert np.corrcoef(res.C[i], C[j[i]])[0, 1] > trace_min
        assert np.corrcoef(res.footprints_2d()[i].ravel(), A[j[i]].ravel())[0, 1] > fp_min


def test_finds_K_neurons(movie):
    Y, A, C, centers = movie
    res = init_greedy_roi(Y, K=5, gSig=4)
    _check(res, Y, A, C, centers)
    norms = np.sqrt(np.asarray(res.A.multiply(res.A).sum(axis=0))).ravel()
    np.testing.assert_allclose(norms, 1, atol=1e-5)
    assert (res.C >= 0).all() and res.A.min() >= 0
    # the model (neurons + background) explains the data down to the noise level
    Yr = Y.transpose(0, 2, 1).reshape(Y.shape[0], -1).T
    resid = Yr - res.A @ res.C - res.b @ res.f
    assert res.b.shape[1] == res.f.shape[0] == 2 and np.allclose(res.f[0], 1)
    assert abs(resid.std() - 1.0) < 0.1
    assert res.cn.shape == Y.shape[1:]


@pytest.mark.parametrize("kw", [dict(tsub=2), dict(ssub=2), dict(normalize_init=False),
                                dict(rolling_sum=False)])
def test_options(movie, kw):
    Y, A, C, centers = movie
    _check(init_greedy_roi(Y, K=5, gSig=4, **kw), Y, A, C, centers, trace_min=0.93)


def test_fewer_K_takes_strongest(movie):
    Y, A, C, centers = movie
    res = init_greedy_roi(Y, K=2, gSig=4)
    assert res.K == 2
    d = np.hypot(*(res.centers[:, None, :] - centers[None]).transpose(2, 0, 1))
    assert (d.min(axis=1) < 2).all() and len(set(d.argmin(axis=1))) == 2


def test_K_required():
    with pytest.raises(ParameterError, match="K"):
        init_greedy_roi(np.zeros((10, 8, 8), np.float32), K=None, gSig=2)


def test_hals_reduces_error():
    rng = np.random.default_rng(1)
    A = rng.random((50, 3)) * (rng.random((50, 3)) < 0.3)
    C = rng.random((3, 200))
    b, f = rng.random((50, 1)), np.ones((1, 200))
    Y = (A @ C + b @ f + 0.01 * rng.normal(size=(50, 200))).astype(np.float32)
    A0 = np.maximum(A + 0.1 * rng.normal(size=A.shape), 0) * (A > 0)
    C0 = np.maximum(C + 0.3 * rng.normal(size=C.shape), 0)
    A1, C1, b1, f1 = hals(Y, A0, C0, b * 0.5, f, masks=A > 0, n_iter=30, n_fixed_f=1)
    e0 = np.linalg.norm(Y - A0 @ C0 - 0.5 * b @ f)
    e1 = np.linalg.norm(Y - A1 @ C1 - b1 @ f1)
    assert e1 < 0.2 * e0 and (A1[A == 0] == 0).all() and np.allclose(f1, 1)


def test_global_background_recovers_rank1():
    rng = np.random.default_rng(2)
    B = rng.random((20, 30, 1))
    F = np.sin(np.arange(300) / 20.0)[None]
    Rp = (B.reshape(-1, 1) @ F).reshape(20, 30, 300).astype(np.float32)
    Bh, Fh = global_background(Rp, 1, block=5)
    err = np.linalg.norm((Bh.reshape(-1, 1) @ Fh).reshape(Rp.shape) - Rp) / np.linalg.norm(Rp)
    assert err < 0.03


def test_extended_active_source_takes_one_component():
    """A large out-of-focus source with calcium-like activity costs one component, so
    all neurons are still found with K = neurons + 1."""
    T = 600
    Y, A, C, centers = make_2p_movie(T=T, seed=1, n=4)
    rng = np.random.default_rng(6)
    rr, cc = np.mgrid[:48, :48]
    blob = np.exp(-((rr - 4) ** 2 + (cc - 44) ** 2) / (2 * 6.0 ** 2))
    s = (rng.random(T) < 0.03) * rng.uniform(0.5, 1.5, T)
    act = np.zeros(T)
    for t in range(T):
        act[t] = (act[t - 1] * np.exp(-1 / 10.0) if t else 0) + s[t]
    Y = Y + (8 * act[:, None, None] * blob[None]).astype(np.float32)
    res = init_greedy_roi(Y, K=5, gSig=4)
    d = np.hypot(*(res.centers[:, None, :] - centers[None]).transpose(2, 0, 1))
    assert (d.min(axis=0) < 2).all()
    far = d.min(axis=1) >= 2
    assert far.sum() == 1 and np.hypot(*(res.centers[far][0] - (4, 44))) < 6


def test_neuron_on_active_blob_keeps_its_own_trace():
    """A neuron sitting on an active out-of-focus blob: the local ring background keeps
    the blob's activity out of the neuron's trace and confines its footprint."""
    T = 600
    Y, A, C, centers = make_2p_movie(T=T, seed=4, n=3)
    rng = np.random.default_rng(9)
    rr, cc = np.mgrid[:48, :48]
    r0, c0 = centers[0]
    blob = np.exp(-((rr - r0 - 3) ** 2 + (cc - c0 + 2) ** 2) / (2 * 12.0 ** 2))
    s = (rng.random(T) < 0.03) * rng.uniform(0.5, 1.5, T)
    act = np.zeros(T)
    for t in range(T):
        act[t] = (act[t - 1] * np.exp(-1 / 15.0) if t else 0) + s[t]
    Y = Y + (3 * act[:, None, None] * blob[None]).astype(np.float32)
    corr = {}
    for local_bg in (False, True):
        res = init_greedy_roi(Y, K=4, gSig=4, local_bg=local_bg)
        d = np.hypot(*(res.centers - centers[0]).T)
        i = int(d.argmin())
        assert d[i] < 2
        corr[local_bg] = np.corrcoef(res.C[i], C[0])[0, 1]
        fp = res.footprints_2d()[i]
        assert (fp > 0).sum() <= (2 * 6 + 3) ** 2  # box (half-width 6) grown by one pixel
    assert corr[True] > 0.9 and corr[True] > corr[False] + 0.2, corr
