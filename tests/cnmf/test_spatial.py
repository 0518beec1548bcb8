import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.spatial import (centers_of_mass, clean_footprints, hals_spatial,
                                      support_masks)


def _blobs(dims, centers, sig=2.0):
    H, W = dims
    yy, xx = np.mgrid[:H, :W]
    A = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * sig ** 2)).ravel(order="F")
                  for r, c in centers], axis=1)
    A[A < 0.05] = 0
    return (A / np.linalg.norm(A, axis=0)).astype(np.float32)


def _traces(K, T, seed):
    rng = np.random.default_rng(seed)
    S = (rng.random((K, T)) < 0.05) * rng.uniform(0.5, 2, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = (0.9 * C[:, t - 1] if t else 0) + S[:, t]
    return C.astype(np.float32)


def test_spatial_update_recovers_footprints_given_true_traces():
    dims, T = (40, 40), 500
    centers = [(10, 10), (13, 14), (28, 25), (30, 8)]   # first two overlap
    A = _blobs(dims, centers)
    C = 5 * _traces(4, T, 0)
    rng = np.random.default_rng(1)
    Y = A @ C + 0.3 * rng.standard_normal((1600, T)).astype(np.float32)
    # start from shrunken, shifted footprints
    A0 = _blobs(dims, [(r + 1, c - 1) for r, c in centers], sig=1.2)
    masks = support_masks(sp.csc_matrix(A0), dims, dilate=4, box=8)
    Ah = hals_spatial(A0, Y @ C.T, C @ C.T, masks, n_iter=20).toarray()
    for k in range(4):
        assert np.corrcoef(Ah[:, k], A[:, k])[0, 1] > 0.95
        assert (Ah[:, k] >= 0).all()
        out = np.ones(1600, bool); out[masks[k]] = False
        assert (Ah[out, k] == 0).all()


def test_masks_and_centers():
    dims = (30, 30)
    A = sp.csc_matrix(_blobs(dims, [(5, 20), (25, 3)]))
    cm = centers_of_mass(A, dims)
    assert np.allclose(cm, [(5, 20), (25, 3)], atol=0.3)
    m = support_masks(A, dims, dilate=2, box=4)
    r, c = m[0] % 30, m[0] // 30
    assert np.abs(r - 5).max() <= 4 and np.abs(c - 20).max() <= 4


def test_clean_keeps_largest_piece_and_drops_empty():
    dims = (20, 20)
    img = np.zeros(dims, np.float32)
    img[3:7, 3:7] = 1.0
    img[15, 15] = 0.5                 # stray pixel
    A = np.stack([img.ravel(order="F"), np.zeros(400, np.float32)], axis=1)
    out, keep = clean_footprints(A, dims)
    assert keep.tolist() == [True, False]
    col = out[:, 0].toarray().ravel().reshape(20, 20, order="F")
    assert col[15, 15] == 0 and col[3:7, 3:7].min() == 1.0
