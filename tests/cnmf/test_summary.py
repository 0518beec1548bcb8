"""Summary images (correlation / PNR / local correlation) and spatial filters."""

import cv2
import numpy as np
import pytest

from cellextract.cnmf.filters import center_psf_kernel, gaussian_kernel, spatial_filter
from cellextract.cnmf.summary import (correlation_pnr, correlation_pnr_memmap, local_correlation,
                                      local_correlation_memmap, pilot_runs, search_image)
from cellextract.errors import ParameterError


def _movie(T=600, h=40, w=50, seed=0, center=(20, 25), amp=20.0, background=0.0):
    rng = np.random.default_rng(seed)
    Y = rng.normal(0, 1, (T, h, w)).astype(np.float32) + 100
    spikes = np.zeros(T)
    spikes[rng.choice(T, 15, replace=False)] = amp
    tr = np.convolve(spikes, np.exp(-np.arange(30) / 5.0))[:T]
    rr, cc = np.mgrid[:h, :w]
    a = np.exp(-((rr - center[0]) ** 2 + (cc - center[1]) ** 2) / (2 * 3.0 ** 2))
    Y += (tr[:, None, None] * a[None]).astype(np.float32)
    if background:
        # smooth, strongly fluctuating 1P-like background (a wide Gaussian blob + ramp)
        bg_img = np.exp(-((rr - h / 3) ** 2 + (cc - w / 2) ** 2) / (2 * 15.0 ** 2)) + cc / w
        bg_tr = background * (1 + np.sin(np.arange(T) / 40.0) + 0.3 * rng.normal(size=T))
        Y += (bg_tr[:, None, None] * bg_img[None]).astype(np.float32)
    return Y


def _to_memmap_layout(Y):
    T = Y.shape[0]
    return np.ascontiguousarray(Y.transpose(0, 2, 1).reshape(T, -1).T)


def test_kernels():
    g = gaussian_kernel(3, 13)
    assert g.shape == (13, 13) and abs(g.sum() - 1) < 1e-5 and g[6, 6] == g.max()
    k = center_psf_kernel(3, 13)
    assert abs(k.sum()) < 1e-5 and k[6, 6] == k.max() and k[0, 0] < 0
    assert center_psf_kernel(2, 8).shape == (9, 9)  # made odd
    with pytest.raises(ParameterError):
        gaussian_kernel(-1, 5)


@pytest.mark.parametrize("kernel", [center_psf_kernel((2, 3), (9, 13)), gaussian_kernel(2, 9),
                                    np.arange(35, dtype=np.float32).reshape(7, 5) % 4])
def test_spatial_filter_matches_filter2d(kernel):
    X = np.random.default_rng(1).random((5, 30, 41)).astype(np.float32)
    ref = np.stack([cv2.filter2D(x, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT) for x in X])
    np.testing.assert_allclose(spatial_filter(X, kernel), ref, atol=2e-5)


def test_center_psf_removes_smooth_background():
    rr, cc = np.mgrid[:40, :40]
    img = (3.0 * cc + 2.0 * rr + 500).astype(np.float32)
    out = spatial_filter(img[None], center_psf_kernel(3, 13))[0]
    assert np.abs(out[8:-8, 8:-8]).max() < 1e-2


def test_active_cluster_has_high_cn_pnr_noise_low():
    Y = _movie()
    cn, pnr = correlation_pnr(Y, gSig=3)
    assert cn.shape == pnr.shape == (40, 50)
    assert cn[20, 25] > 0.9 and pnr[20, 25] > 10
    far = np.ones_like(cn, bool)
    far[10:31, 15:36] = False
    assert np.median(cn[far]) < 0.4 and np.percentile(pnr[far], 99) < 6
    s = search_image(cn, pnr)
    # PSD noise grows with the transients' power, so the peak may sit off-centre
    r, c = np.unravel_index(np.argmax(s), s.shape)
    assert abs(r - 20) <= 2 and abs(c - 25) <= 2


def test_pure_noise_low_everything():
    Y = np.random.default_rng(3).normal(50, 2, (500, 30, 30)).astype(np.float32)
    cn, pnr = correlation_pnr(Y, gSig=2)
    assert pnr.max() < 7 and np.percentile(cn, 95) < 0.6


def test_background_does_not_fool_pnr():
    Y = _movie(background=40.0, seed=2)
    cn, pnr = correlation_pnr(Y, gSig=3)
    far = np.ones_like(cn, bool)
    far[10:31, 15:36] = False
    assert pnr[20, 25] > 10 and np.percentile(pnr[far], 99) < 8


def test_memmap_equals_in_memory():
    Y = _movie(T=450, seed=4, background=10.0)
    Yr = _to_memmap_layout(Y)
    for kw in (dict(), dict(stats_frames=200)):
        cn, pnr = correlation_pnr(Y, gSig=3, chunk_frames=None, **kw)
        cn2, pnr2 = correlation_pnr_memmap(Yr, (40, 50), gSig=3, chunk_frames=64, **kw)
        np.testing.assert_allclose(pnr2, pnr, rtol=1e-3, atol=1e-3)
        # rounding can flip a thresholded sample in noise pixels; active pixels agree exactly
        assert np.mean(np.abs(cn - cn2) > 1e-3) < 0.05
        np.testing.assert_allclose(cn2[pnr > 10], cn[pnr > 10], atol=2e-3)


def test_memmap_frame_step_and_small_blocks():
    Y = _movie(T=600, seed=5)
    Yr = _to_memmap_layout(Y)
    cn, pnr = correlation_pnr(Y[::2], gSig=3)
    cn2, pnr2 = correlation_pnr_memmap(Yr, (40, 50), gSig=3, frame_step=2, chunk_frames=20)
    np.testing.assert_allclose(pnr2, pnr, rtol=1e-3, atol=1e-3)
    assert np.mean(np.abs(cn - cn2) > 1e-3) < 0.01


def test_local_correlation():
    Y = _movie(T=400, seed=6)
    lc = local_correlation(Y)
    assert lc[20, 25] > 0.9 and abs(np.median(lc)) < 0.1
    lc2 = local_correlation_memmap(_to_memmap_layout(Y), (40, 50), chunk_frames=50)
    np.testing.assert_allclose(lc2, lc, atol=1e-4)


def test_pilot_runs_cover_and_spread():
    assert pilot_runs(150, 1000) == [(0, 150)]
    runs = pilot_runs(10000, 1000)
    assert sum(b - a for a, b in runs) >= 900 and runs[0][0] == 0 and runs[-1][1] == 10000
    assert all(b - a == 200 for a, b in runs)


def test_psd_noise_matches_white_noise_std():
    from cellextract.cnmf.summary import psd_noise
    X = np.random.default_rng(7).normal(0, 2.5, (50, 400)).astype(np.float32)
    s = psd_noise(X)
    assert abs(np.median(s) - 2.5) < 0.1


def test_nan_borders_do_not_poison_images():
    Y = _movie(T=300, seed=8)
    Y[:, :2, :] = np.nan  # motion-correction border left as NaN
    cn, pnr = correlation_pnr(Y, gSig=3)
    assert np.isfinite(cn).all() and np.isfinite(pnr).all()
    assert cn[20, 25] > 0.9 and pnr[20, 25] > 10
    assert np.isfinite(local_correlation(Y)).all()


def test_real_memmap_file(tmp_path):
    from cellextract.io.memmap import create_memmap, memmap_name, open_memmap
    Y = _movie(T=240, seed=9)
    T, h, w = Y.shape
    path = memmap_name(tmp_path / "m", (h, w), T)
    Yr = create_memmap(path, (h, w), T)
    Yr[:] = _to_memmap_layout(Y)
    Yr.flush()
    del Yr
    Yr, dims, T2 = open_memmap(path)
    cn, pnr = correlation_pnr(Y, gSig=3)
    cn2, pnr2 = correlation_pnr_memmap(Yr, dims, gSig=3, chunk_frames=100)
    np.testing.assert_allclose(pnr2, pnr, rtol=1e-3, atol=1e-3)
    assert np.mean(np.abs(cn - cn2) > 1e-3) < 0.05
    np.testing.assert_allclose(local_correlation_memmap(Yr, dims), local_correlation(Y), atol=1e-4)


def test_baseline_noise_robust_ignores_fast_transients():
    from cellextract.cnmf.summary import baseline_noise
    rng = np.random.default_rng(1)
    T = 2000
    s = (rng.random(T) < 0.02) * 20.0
    c = np.zeros(T)
    for t in range(1, T):                     # decay of ~2 frames: power up to Nyquist
        c[t] = 0.6 * c[t - 1] + s[t]
    F = (c + rng.normal(0, 1.0, T)).astype(np.float32)[:, None, None]
    _, s_psd = baseline_noise(F, noise_method="psd")
    _, s_rob = baseline_noise(F, noise_method="robust")
    assert s_psd[0, 0] > 1.3
    assert abs(s_rob[0, 0] - 1.0) < 0.15
    noise = rng.normal(0, 2.0, (T, 3, 3)).astype(np.float32)   # white noise: both agree
    _, a = baseline_noise(noise, noise_method="psd")
    _, b = baseline_noise(noise, noise_method="robust")
    np.testing.assert_allclose(a, 2.0, rtol=0.1)
    np.testing.assert_allclose(b, 2.0, rtol=0.12)
