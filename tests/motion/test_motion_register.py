"""Rigid registration: sub-pixel shift recovery, bounds, filtering, apply modes."""

import numpy as np
import pytest
from scipy import ndimage

from cellextract.errors import ParameterError
from cellextract.motion.apply import apply_rigid
from cellextract.motion.filters import highpass, highpass_kernel
from cellextract.motion.register import rigid_shifts, template_spectrum


def _texture(shape, seed=0, background=0.0):
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 300 + 200
    if background:
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
        img += background * np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) / (2 * (shape[0] / 3) ** 2))
    return img.astype(np.float32)


def _shifted(img, shifts, crop):
    """Frames whose registration shift is ``shifts`` (content moved by -shift), cropped."""
    out = []
    for s in shifts:
        f = ndimage.shift(img, -np.asarray(s), order=3, mode="nearest")
        out.append(f[crop:-crop, crop:-crop])
    return np.array(out, dtype=np.float32)


@pytest.mark.parametrize("gSig_filt", [None, 3])
def test_rigid_subpixel_recovery(gSig_filt):
    rng = np.random.default_rng(1)
    img = _texture((120, 140), background=500.0 if gSig_filt else 0.0)
    true = rng.uniform(-4.5, 4.5, (24, 2))
    frames = _shifted(img, true, 10)
    frames += rng.normal(0, 3, frames.shape).astype(np.float32)
    tmpl = img[10:-10, 10:-10]
    s = rigid_shifts(frames, template_spectrum(tmpl, gSig_filt=gSig_filt), max_shifts=(6, 6), gSig_filt=gSig_filt)
    assert s.shape == (24, 2) and s.dtype == np.float32
    rmse = np.sqrt(np.mean((s - true) ** 2))
    assert rmse < 0.08, rmse


def test_shift_sign_convention_positive_moves_content_down_right():
    big = _texture((100, 100), seed=3)
    img = big[10:90, 10:90]
    frame = big[12:92, 13:93]  # content moved up/left by (2, 3)
    s = rigid_shifts(frame[None], template_spectrum(img), max_shifts=(5, 5))[0]
    np.testing.assert_allclose(s, [2, 3], atol=0.05)
    back = apply_rigid(frame, s, border_nan="copy")
    assert np.abs(back - img)[6:-6, 6:-6].max() < 0.05 * np.ptp(img)


def test_search_bounded_by_max_shifts():
    big = _texture((116, 96), seed=4)
    img = big[10:106]
    frame = big[3:99]  # content moved down by 7: needs shift -7 in y
    s = rigid_shifts(frame[None], template_spectrum(img), max_shifts=(3, 3))[0]
    assert abs(s[0]) <= 3.0 + 1e-6 and abs(s[1]) <= 3.0 + 1e-6
    s = rigid_shifts(frame[None], template_spectrum(img), max_shifts=(8, 8))[0]
    np.testing.assert_allclose(s, [-7, 0], atol=0.05)


def test_highpass_kernel_zero_mean_and_removes_background():
    k = highpass_kernel(3)
    assert k.shape == (9, 9) and abs(float(k.sum())) < 1e-5 and k[4, 4] > 0
    ramp = np.add.outer(np.arange(50.0), np.arange(60.0)).astype(np.float32) * 10
    f = highpass(ramp, 3)
    assert np.abs(f[6:-6, 6:-6]).max() < 1e-2
    with pytest.raises(ParameterError, match="gSig_filt"):
        highpass_kernel(0)


def _frame():
    return np.arange(1, 41, dtype=np.float32)[:, None] * np.ones((1, 30), np.float32) + 5


@pytest.mark.parametrize("mode", [True, False, "copy", "min"])
def test_border_modes(mode):
    f = _frame()
    out = apply_rigid(f, (3.0, 0.0), border_nan=mode)  # content moves down 3 rows
    top = out[0]
    np.testing.assert_allclose(out[10, 5], f[7, 5], atol=1e-3)
    if mode is True:
        assert np.isnan(top).all() and np.isfinite(out[6:]).all()
    elif mode is False:
        np.testing.assert_array_equal(top, 0)
    elif mode == "copy":
        np.testing.assert_allclose(top, f[0], atol=1e-4)
    else:
        np.testing.assert_allclose(top, f.min(), atol=1e-4)


def test_bad_border_mode():
    with pytest.raises(ParameterError, match="border_nan"):
        apply_rigid(_frame(), (1.0, 0.0), border_nan="nearest")
