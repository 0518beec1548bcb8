import numpy as np

from cellextract.cnmf.temporal import update_temporal


def _setup(T=1000, seed=0):
    rng = np.random.default_rng(seed)
    H = W = 30
    yy, xx = np.mgrid[:H, :W]
    centers = [(8, 8), (11, 11), (22, 20)]
    A = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 8.0).ravel(order="F")
                  for r, c in centers], 1).astype(np.float32)
    A /= np.linalg.norm(A, axis=0)
    S = (rng.random((3, T)) < 0.015) * rng.uniform(0.5, 2, (3, T))
    C = np.zeros((3, T))
    for t in range(T):
        C[:, t] = (0.92 * C[:, t - 1] if t else 0) + S[:, t]
    C = (4 * C).astype(np.float32)
    base = np.array([2.0, -1.0, 0.5], np.float32)
    Y = A @ (C + base[:, None]) + 0.3 * rng.standard_normal((H * W, T)).astype(np.float32)
    return A, C, S, base, Y


def test_temporal_update_recovers_traces_given_true_footprints():
    A, C, S, base, Y = _setup()
    C0 = np.maximum(A.T @ Y, 0) * 0.5        # crude start
    res = update_temporal(C0, A.T @ Y, A.T @ A, p=1, g=[0.92], bas_nonneg=False, n_iter=3)
    for k in range(3):
        assert np.corrcoef(res.C[k], C[k])[0, 1] > 0.97
        assert np.corrcoef(res.S[k], S[k])[0, 1] > 0.6
    # CaImAn convention: C + YrA is the raw (baseline-containing) trace
    # with the other components' final traces removed
    U, V = A.T @ Y, A.T @ A
    d = np.diag(V)
    raw = (U - (V - np.diag(d)) @ res.C) / d[:, None]
    assert np.allclose(res.C + res.YrA, raw, atol=1e-3)
    # the isolated component's raw trace is its true calcium + baseline + noise
    assert np.corrcoef(res.C[2] + res.YrA[2], C[2])[0, 1] > 0.95
    assert abs(res.bl[2] - base[2]) < 0.3   # isolated component: baseline recovered
    assert res.g.shape == (3, 1) and res.neurons_sn.shape == (3,)
    assert (res.neurons_sn > 0).all()


def test_temporal_p0_and_estimated_g():
    A, C, S, base, Y = _setup(T=800, seed=1)
    r0 = update_temporal(np.zeros((3, 800), np.float32), A.T @ Y, A.T @ A, p=0, n_iter=2)
    assert r0.g.shape == (3, 0)
    assert min(np.corrcoef(r0.C[k], C[k])[0, 1] for k in range(3)) > 0.85
    r2 = update_temporal(np.zeros((3, 800), np.float32), A.T @ Y, A.T @ A, p=1, g=None)
    assert np.all((r2.g[:, 0] > 0.8) & (r2.g[:, 0] < 1.0))
