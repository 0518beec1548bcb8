"""Shared fixtures: Estimates built by hand (used by the export and preview tests)."""

import numpy as np
import pytest
import scipy.sparse as sp

from cellextract.cnmf.estimates import Estimates


def build_estimates(K=4, T=60, dims=(12, 10), seed=0, evaluated=True):
    """Return an Estimates with K Gaussian blobs (unit-norm columns) and spiky traces."""
    rng = np.random.default_rng(seed)
    H, W = dims
    yy, xx = np.mgrid[0:H, 0:W]
    cols = []
    for k in range(K):
        cy, cx = rng.uniform(2, H - 2), rng.uniform(2, W - 2)
        img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
        img[img < 0.05] = 0
        v = img.ravel(order="F")
        cols.append(v / np.linalg.norm(v))
    A = sp.csc_matrix(np.array(cols).T if K else np.zeros((H * W, 0)), dtype=np.float32)
    S = (rng.random((K, T)) < 0.08) * rng.uniform(0.5, 3, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = (0.9 * C[:, t - 1] if t else 0) + S[:, t]
    YrA = rng.normal(0, 0.1, (K, T))
    est = Estimates(
        A=A, C=C.astype(np.float32), dims=dims, S=S.astype(np.float32),
        YrA=YrA.astype(np.float32), b0=rng.random(H * W).astype(np.float32),
        W=(sp.random(H * W, H * W, density=0.01, random_state=seed, format="csr")
           if H * W <= 2000 else None),
        sn=rng.random(H * W).astype(np.float32), g=np.full((K, 1), 0.9),
        bl=np.zeros(K), c1=np.zeros(K), neurons_sn=np.full(K, 0.1), lam=np.ones(K),
        Cn=rng.random(dims).astype(np.float32),
    )
    if evaluated:
        est.idx_components = np.arange(0, K, 2)
        est.idx_components_bad = np.arange(1, K, 2)
        est.SNR_comp = rng.uniform(1, 10, K)
        est.r_values = rng.uniform(-1, 1, K)
        est.cnn_preds = np.full(K, np.nan)
    return est


@pytest.fixture
def make_estimates():
    """Factory: ``make_estimates(K=4, T=60, dims=(12, 10), seed=0, evaluated=True)``."""
    return build_estimates
