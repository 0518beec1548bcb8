"""Piecewise-rigid registration: patch grid, bounded patch shifts, smooth field, warping."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from cellextract.motion.apply import apply_field
from cellextract.motion.piecewise import (
    apply_piecewise,
    patch_grid,
    patch_shifts,
    shift_field,
    template_patch_spectra,
)
from cellextract.motion.register import rigid_shifts, template_spectrum


def test_patch_grid_last_patch_snapped_to_edge():
    g = patch_grid((200, 130), strides=(48, 48), overlaps=(24, 24))
    assert g.size == (72, 72)
    np.testing.assert_array_equal(g.starts_y, [0, 48, 96, 128])
    np.testing.assert_array_equal(g.starts_x, [0, 48, 58])
    assert g.starts_y[-1] + g.size[0] == 200 and g.starts_x[-1] + g.size[1] == 130
    small = patch_grid((50, 40), strides=(48, 48), overlaps=(24, 24))
    assert small.shape == (1, 1) and small.size == (50, 40)


def test_constant_field_equals_rigid_apply():
    g = patch_grid((100, 90), strides=(30, 30), overlaps=(15, 15))
    fy, fx = shift_field(np.full(g.shape + (2,), [1.5, -2.25], np.float32), g)
    np.testing.assert_allclose(fy, 1.5, atol=1e-5)
    np.testing.assert_allclose(fx, -2.25, atol=1e-5)


def _warp(img, fy, fx):
    H, W = img.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    # raw(p) = img(p + f): registering with f gives back img
    return cv2.remap(img, xx + fx.astype(np.float32), yy + fy.astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)


def _deformed_movie(rng, *, size: int, n: int, shift: float, amp: float, offset: float, noise: float):
    """A smooth random image and ``n`` noisy frames warped by smooth fields (rigid part
    uniform in +-``shift``, sinusoidal part of amplitude ``amp``); returns
    ``(img, frames (n, size, size), fields [(fy, fx)])``."""
    H = W = size
    img = (ndimage.gaussian_filter(rng.standard_normal((H, W)), 2) * 300 + offset).astype(np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames, fields = [], []
    for i in range(n):
        a = rng.uniform(-shift, shift, 2)
        fy = a[0] + amp * np.sin(2 * np.pi * xx / (2 * W) + i)
        fx = a[1] + amp * np.cos(2 * np.pi * yy / (2 * H) + i)
        fields.append((fy, fx))
        frames.append(_warp(img, fy, fx))
    return img, np.array(frames) + rng.normal(0, noise, (n, H, W)).astype(np.float32), fields


def test_piecewise_recovers_smooth_deformation():
    H = W = 160
    img, frames, fields = _deformed_movie(np.random.default_rng(0), size=H, n=6, shift=2.5, amp=1.2,
                                          offset=100, noise=2)
    rig = rigid_shifts(frames, template_spectrum(img), max_shifts=(6, 6))
    grid = patch_grid((H, W), strides=(32, 32), overlaps=(24, 24))
    ps = patch_shifts(frames, template_patch_spectra(img, grid), grid, rig, max_deviation_rigid=3)
    assert ps.shape == (6,) + grid.shape + (2,)
    assert np.all(np.abs(ps - rig[:, None, None, :]) <= 3 + 1e-5)
    fy, fx = shift_field(ps, grid)
    m = 28
    err = [np.sqrt(np.mean(((fy[i] - t[0]) ** 2 + (fx[i] - t[1]) ** 2)[m:-m, m:-m] / 2)) for i, t in enumerate(fields)]
    assert max(err) < 0.2, err
    out = apply_piecewise(frames, ps, grid, border_nan="copy")
    before = np.abs(frames - img)[:, m:-m, m:-m].mean()
    after = np.abs(out - img)[:, m:-m, m:-m].mean()
    assert after < 0.1 * before, (before, after)


def test_patch_shifts_bounded_by_max_deviation():
    rng = np.random.default_rng(2)
    big = (ndimage.gaussian_filter(rng.standard_normal((116, 96)), 2) * 100).astype(np.float32)
    img = big[10:106]
    frame = big[5:101][None]  # content moved down by 5: true shift -5 in y
    grid = patch_grid((96, 96), strides=(32, 32), overlaps=(16, 16))
    ps = patch_shifts(frame, template_patch_spectra(img, grid), grid, np.zeros((1, 2), np.float32),
                      max_deviation_rigid=2)
    assert ps[..., 0].min() >= -2 - 1e-5
    ps = patch_shifts(frame, template_patch_spectra(img, grid), grid, np.array([[-4.0, 0.0]], np.float32),
                      max_deviation_rigid=2)
    np.testing.assert_allclose(ps[0, :2, :, 0], -5, atol=0.15)  # last row: clipped at the edge


def test_apply_field_nan_border():
    f = np.ones((40, 50), np.float32)
    out = apply_field(f, np.full((40, 50), 2.5, np.float32), np.zeros((40, 50), np.float32), border_nan=True)
    assert np.isnan(out[:2]).all() and np.isfinite(out[3:]).all()


@pytest.mark.parametrize("decimate", [1, 2])
@pytest.mark.parametrize("gSig_filt", [None, (3, 3)])
def test_patch_shifts_large_deviation_both_lattices(decimate, gSig_filt):
    """Patch deviations up to ~2.5 px from the rigid shift, 72-px patches (decimated or not)."""
    H = W = 240
    img, frames, fields = _deformed_movie(np.random.default_rng(5), size=H, n=4, shift=2, amp=2.5,
                                          offset=500, noise=3)
    rig = rigid_shifts(frames, template_spectrum(img, gSig_filt=gSig_filt), max_shifts=(6, 6), gSig_filt=gSig_filt)
    grid = patch_grid((H, W), strides=(48, 48), overlaps=(24, 24))
    ts = template_patch_spectra(img, grid, gSig_filt=gSig_filt)
    ps = patch_shifts(frames, ts, grid, rig, max_deviation_rigid=3, gSig_filt=gSig_filt, upsample=4,
                      decimate=decimate)
    assert np.all(np.abs(ps - rig[:, None, None, :]) <= 3 + 1e-5)
    cy, cx = grid.centers_y.round().astype(int), grid.centers_x.round().astype(int)
    true = np.stack([np.stack([f[0][np.ix_(cy, cx)], f[1][np.ix_(cy, cx)]], -1) for f in fields])
    err = np.sqrt(np.mean((ps - true) ** 2))
    assert err < 0.1, err


def test_auto_decimation_only_for_smooth_templates():
    from cellextract.motion.piecewise import DECIMATE_MAX_HIGH, _high_band_fraction
    rng = np.random.default_rng(6)
    noise = rng.standard_normal((240, 240))
    sharp = (ndimage.gaussian_filter(noise, 1.0) * 300 + 500).astype(np.float32)  # 2P-like, unfiltered
    smooth = (ndimage.gaussian_filter(noise, 3.0) * 300 + 500).astype(np.float32)  # 1P-like, high-passed
    grid = patch_grid((240, 240), strides=(48, 48), overlaps=(24, 24))
    raw = _high_band_fraction(template_patch_spectra(sharp, grid), grid.size)
    filt = _high_band_fraction(template_patch_spectra(smooth, grid, gSig_filt=(3, 3)), grid.size)
    assert filt < DECIMATE_MAX_HIGH < raw, (filt, raw)
