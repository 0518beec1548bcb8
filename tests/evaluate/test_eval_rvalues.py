import numpy as np
import pytest
import scipy.sparse as sp
from eval_synth import gaussian_footprint, make_movie

from cellextract.evaluate.rvalues import (active_frames, background_mode, compute_r_values,
                                          exclusive_frames)


def _shift(A, dims, dx):
    H, W = dims
    imgs = A.toarray().T.reshape(-1, W, H).transpose(0, 2, 1)
    imgs = np.roll(imgs, dx, axis=2)
    return sp.csc_matrix(np.stack([im.ravel(order="F") for im in imgs], axis=1))


def test_matching_vs_shifted_footprint():
    Yr, A, C = make_movie()
    r_true = compute_r_values(Yr, A, C, N=12)
    r_shift = compute_r_values(Yr, _shift(A, (40, 44), 4), C, N=12)
    assert np.all(r_true > 0.95)
    assert np.all(r_shift < 0.3)


def test_block_size_and_threads_do_not_change_the_result():
    Yr, A, C = make_movie(seed=3)
    ref = compute_r_values(Yr, A, C, N=12)
    small = compute_r_values(Yr, A, C, N=12, block_mb=0.01, n_threads=2)
    np.testing.assert_allclose(small, ref, rtol=1e-6)


def test_active_frames_windows_and_flat_trace():
    C = np.zeros((2, 100))
    C[0, 20] = 5.0
    C[0, 60] = 1.0          # below 0.3 x highest: ignored
    fr = active_frames(C, N=4)
    np.testing.assert_array_equal(fr[0], np.arange(18, 25))
    assert fr[1].size == 0


def test_exclusive_frames_drops_overlapping_activity():
    a = gaussian_footprint((20, 20), (10, 8), 2).ravel(order="F")
    b = gaussian_footprint((20, 20), (10, 11), 2).ravel(order="F")
    c = gaussian_footprint((20, 20), (2, 18), 1).ravel(order="F")
    A = sp.csc_matrix(np.stack([a, b, c], axis=1))
    frames = [np.arange(0, 10), np.arange(5, 15), np.arange(0, 10)]
    out = exclusive_frames(frames, A)
    np.testing.assert_array_equal(out[0], np.arange(0, 5))
    np.testing.assert_array_equal(out[1], np.arange(10, 15))
    np.testing.assert_array_equal(out[2], np.arange(0, 10))      # no overlap


def test_background_models():
    dims = (40, 44)
    Yr, A, C = make_movie(seed=1, baseline=0.0)
    P, T = Yr.shape
    rng = np.random.default_rng(0)
    # strong low-rank background with a spatial gradient and a slow temporal drift
    bimg = np.linspace(0, 50, P)[:, None]
    f = (1 + 0.5 * np.sin(np.arange(T) / 30.0))[None]
    Y2 = (Yr + bimg @ f).astype(np.float32)
    assert background_mode(b=bimg, f=f) == "lowrank"
    r_lr = compute_r_values(Y2, A, C, N=12, b=bimg, f=f)
    assert np.all(r_lr > 0.9)
    # ring model: constant background b0, W = 0 -> subtract b0 only
    b0 = rng.uniform(0, 100, P)
    Y3 = (Yr + b0[:, None]).astype(np.float32)
    W = sp.csr_matrix((P, P))
    assert background_mode(b0=b0, W=W) == "ring"
    r_ring = compute_r_values(Y3, A, C, N=12, b0=b0, W=W)
    assert np.all(r_ring > 0.9)
    # the local-mean fallback removes a static background as well
    r_mean = compute_r_values(Y3, A, C, N=12)
    assert np.all(r_mean > 0.9)


def test_ring_model_with_neighbour_weights():
    Yr, A, C = make_movie(seed=2, baseline=10.0)
    P, T = Yr.shape
    H, W = 40, 44
    # W averages the 4 pixels at distance 6 (a crude ring); b0 = 10 everywhere
    rows, cols = [], []
    for c in range(W):
        for r in range(H):
            i = r + c * H
            for dr, dc in ((6, 0), (-6, 0), (0, 6), (0, -6)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < H and 0 <= cc < W:
                    rows.append(i)
                    cols.append(rr + cc * H)
    Wm = sp.csr_matrix((np.full(len(rows), 0.25), (rows, cols)), shape=(P, P))
    r = compute_r_values(Yr, A, C, N=12, b0=np.full(P, 10.0), W=Wm)
    assert np.all(r > 0.8)


def test_ring_model_on_ssub_grid_matches_dense_reference():
    from cellextract.cnmf.background import downsample_operator, upsample_operator
    from cellextract.evaluate.rvalues import _pearson, _support

    dims = (40, 44)
    Yr, A, C = make_movie(seed=4, baseline=10.0)
    P, T = Yr.shape
    rng = np.random.default_rng(1)
    D = downsample_operator(dims, 2)
    U = upsample_operator(dims, 2)
    Pds = D.shape[0]
    Wm = sp.random(Pds, Pds, density=0.02, random_state=2, format="csr") * 0.1
    b0 = rng.uniform(5, 15, P)
    kw = dict(N=12, b0=b0, W=Wm, dims=dims, subtract_neighbours=False)
    r = compute_r_values(Yr, A, C, **kw)                               # ssub_B inferred
    assert np.array_equal(r, compute_r_values(Yr, A, C, ssub_B=2, **kw))
    frames = exclusive_frames(active_frames(C, N=12), A)
    Ad = A.toarray()
    Y = Yr.astype(np.float64)
    for k in range(A.shape[1]):
        F = frames[k]
        # change of Y - B over the active frames w.r.t. the temporal mean, B = b0 + U W D (Y - AC - b0)
        R = Y - Ad @ C - b0[:, None]
        B = b0[:, None] + U @ (Wm @ (D @ R))
        Z = Y - B
        d = Z[:, F].mean(axis=1) - Z.mean(axis=1)
        sup, a = _support(A, k)
        assert r[k] == pytest.approx(_pearson(a, d[sup]), rel=1e-4)
    assert np.all(r > 0.9)


def test_static_structure_with_a_constant_trace_is_not_consistent():
    dims = (40, 44)
    Yr, A, C = make_movie(seed=5)
    blob = gaussian_footprint(dims, (20, 22), 3.0).ravel(order="F")
    Y2 = (Yr + 300.0 * blob[:, None]).astype(np.float32)         # bright, never changes
    rng = np.random.default_rng(0)
    A2 = sp.csc_matrix(np.hstack([A.toarray(), blob[:, None]]))
    C2 = np.vstack([C, 300.0 + rng.normal(0, 1.0, (1, C.shape[1]))]).astype(np.float32)
    for extra in ({}, {"b0": np.full(Yr.shape[0], 0.0), "W": sp.csr_matrix((Yr.shape[0],) * 2)}):
        r = compute_r_values(Y2, A2, C2, N=12, **extra)
        assert np.all(r[:4] > 0.9) and abs(r[4]) < 0.5
