"""Small synthetic movies with known footprints for the evaluation tests (importable helpers;
a uniquely named module, since ``from conftest import`` picks whichever conftest came first)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def gaussian_footprint(dims, center, sigma):
    """Unit-L2 Gaussian footprint image (H, W), truncated at 3 sigma."""
    H, W = dims
    yy, xx = np.mgrid[:H, :W]
    img = np.exp(-((yy - center[0]) ** 2 + (xx - center[1]) ** 2) / (2 * sigma ** 2))
    img[img < np.exp(-4.5)] = 0
    return img / np.linalg.norm(img)


def spike_traces(rng, K, T, *, rate=0.02, tau=8.0, amp=1.0):
    """AR(1)-like calcium traces (K, T) from Poisson spikes."""
    S = (rng.random((K, T)) < rate) * rng.uniform(0.5, 1.5, (K, T)) * amp
    C = np.zeros((K, T))
    g = np.exp(-1.0 / tau)
    for t in range(T):
        C[:, t] = (C[:, t - 1] * g if t else 0) + S[:, t]
    return C


def make_movie(seed=0, *, dims=(40, 44), T=600, centers=((10, 10), (12, 30), (28, 14), (30, 32)),
               sigma=2.0, amp=40.0, noise=1.0, baseline=5.0):
    """Movie Yr (H*W, T) float32 C order, true A (H*W, K) csc, true C (K, T)."""
    rng = np.random.default_rng(seed)
    H, W = dims
    imgs = [gaussian_footprint(dims, c, sigma) for c in centers]
    A = np.stack([im.ravel(order="F") for im in imgs], axis=1)
    C = spike_traces(rng, len(centers), T) * amp
    Y = A @ C + baseline + noise * rng.standard_normal((H * W, T))
    return np.ascontiguousarray(Y, dtype=np.float32), sp.csc_matrix(A), C.astype(np.float32)
