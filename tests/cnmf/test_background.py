import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.background import (downsample_operator, fit_ring_model, hals_b, hals_f,
                                         init_lowrank, ring_indices, ring_offsets, ring_radius,
                                         upsample_operator)


def _smooth_background(dims, T, seed):
    """Sum of 6 broad Gaussian blobs with random smooth time courses; (P, T) Fortran order."""
    H, W = dims
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    B = np.zeros((H * W, T), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        s = rng.uniform(10, 18)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s ** 2)).ravel(order="F")
        tc = np.convolve(rng.standard_normal(T + 40), np.ones(20) / 20, "same")[20:T + 20]
        B += np.outer(img, 1.0 + 2.0 * tc).astype(np.float32)
    return B + 1.0


def test_ring_geometry():
    assert ring_radius(gSiz=13, ring_size_factor=1.4, ssub_B=2) == 9   # round(1.4*13/2)
    assert ring_radius(gSiz=12, ring_size_factor=1.4, ssub_B=1) == 18  # gSiz made odd: 13
    off = ring_offsets(5)
    d = np.hypot(off[:, 0], off[:, 1])
    assert (d >= 5).all() and (d < 6).all() and len(off) > 25
    idx = ring_indices((20, 30), 3)
    assert idx.shape[0] == 600 and (idx < 600).all()
    assert (idx[0] == -1).sum() > 0   # corner pixel: part of the ring outside


def test_down_up_operators():
    dims = (7, 9)
    D, U = downsample_operator(dims, 2), upsample_operator(dims, 2)
    assert D.shape == (4 * 5, 63) and U.shape == (63, 20)
    x = np.random.default_rng(0).random(63).astype(np.float32)
    img = x.reshape(9, 7).T
    assert np.isclose((D @ x)[0], img[:2, :2].mean())
    assert np.isclose((D @ x)[-1], img[6, 8])
    assert np.allclose(D @ (U @ (D @ x)), D @ x, atol=1e-6)


def test_ring_model_recovers_smooth_background():
    dims, T = (48, 48), 400
    B = _smooth_background(dims, T, 1)
    rng = np.random.default_rng(2)
    Y = B + 0.05 * rng.standard_normal(B.shape).astype(np.float32)
    A = sp.csc_matrix((48 * 48, 0), dtype=np.float32)
    C = np.zeros((0, T), np.float32)
    D = downsample_operator(dims, 2)
    model = fit_ring_model(D @ Y, A, C, mean_Y=Y.mean(1), mean_C=np.zeros(0), dims=dims,
                           gSiz=7, ring_size_factor=1.4, ssub_B=2)
    assert model.W.shape == (24 * 24, 24 * 24)
    Bh = model.background(Y)
    fl, flh = B - B.mean(1, keepdims=True), Bh - Bh.mean(1, keepdims=True)
    r = np.array([np.corrcoef(fl[i], flh[i])[0, 1] for i in range(0, 48 * 48, 7)])
    assert np.median(r) > 0.95
    err = np.linalg.norm(Bh - B) / np.linalg.norm(fl)
    assert err < 0.2
    # a naive constant background would explain none of the fluctuation
    assert np.linalg.norm(B.mean(1, keepdims=True) - B) / np.linalg.norm(fl) > 0.99


def test_lowrank_hals_fits_rank1():
    rng = np.random.default_rng(3)
    b_true = rng.random((200, 1)).astype(np.float32)
    f_true = (1 + rng.random((1, 300))).astype(np.float32)
    R = b_true @ f_true
    b, f = init_lowrank(R.mean(1), 300, 1)
    for _ in range(10):
        b = hals_b(b, R @ f.T, f @ f.T)
        f = hals_f(f, b.T @ R, b.T @ b)
    assert np.linalg.norm(b @ f - R) / np.linalg.norm(R) < 1e-3
