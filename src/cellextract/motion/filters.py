"""High-pass spatial filter used to register 1P movies (``gSig_filt``).

One-photon frames are dominated by a smooth, bright neuropil background that moves with
the tissue but has little texture; registering them directly is poorly conditioned.
NoRMCorre (Pnevmatikakis & Giovannucci 2017) therefore registers *filtered* frames when
``gSig_filt`` is set: each frame is convolved with a Gaussian of standard deviation
``gSig_filt`` whose mean over its (circular) support is subtracted, which removes the
background and keeps structures of about the neuron size. The shifts found on the filtered
frames are applied to the original frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from cellextract.errors import ParameterError


def _pair(value, key: str) -> tuple[float, float]:
    try:
        if np.ndim(value) == 0:
            a = b = float(value)
        else:
            a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"motion.{key}: expected a number or a pair of numbers, got {value!r}") from None
    return a, b


def highpass_kernel(gSig_filt) -> np.ndarray:
    """Return the mean-centred Gaussian kernel for ``gSig_filt``.

    Parameters
    ----------
    gSig_filt : float or (float, float)
        Gaussian standard deviation in pixels along (rows, cols); must be > 0.

    Returns
    -------
    np.ndarray
        ``(ky, kx)`` float32 kernel, ``k = 2 * floor(3 * g / 2) + 1`` pixels (about 3 sigma
        wide). Inside the elliptic support (distance to the centre <= half-width) the
        Gaussian minus its mean over the support, zero outside; it sums to 0, so the filter
        removes any constant or slowly varying background.
    """
    gy, gx = _pair(gSig_filt, "gSig_filt")
    if not (gy > 0 and gx > 0):
        raise ParameterError(f"motion.gSig_filt: must be > 0, got {gSig_filt!r}")
    hy, hx = int(3 * gy) // 2, int(3 * gx) // 2
    hy, hx = max(hy, 1), max(hx, 1)
    y = np.arange(-hy, hy + 1, dtype=np.float64)[:, None]
    x = np.arange(-hx, hx + 1, dtype=np.float64)[None, :]
    g = np.exp(-0.5 * (y / gy) ** 2 - 0.5 * (x / gx) ** 2)
    support = (y / hy) ** 2 + (x / hx) ** 2 <= 1.0
    k = np.where(support, g - g[support].mean(), 0.0)
    return k.astype(np.float32)


def highpass(frames: np.ndarray, gSig_filt) -> np.ndarray:
    """High-pass filter frames with :func:`highpass_kernel` (OpenCV ``filter2D``).

    Parameters
    ----------
    frames : np.ndarray
        ``(H, W)`` or ``(n, H, W)`` movie, any real dtype.
    gSig_filt : float or (float, float)
        Gaussian standard deviation in pixels.

    Returns
    -------
    np.ndarray
        Same shape, float32; borders handled by reflection (no wrap-around edges). NaN
        pixels are treated as 0.
    """
    k = highpass_kernel(gSig_filt)
    a = np.asarray(frames, dtype=np.float32)
    single = a.ndim == 2
    if single:
        a = a[None]
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        f = a[i]
        if not np.isfinite(f).all():
            f = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        cv2.filter2D(f, cv2.CV_32F, k, dst=out[i], borderType=cv2.BORDER_REFLECT)
    return out[0] if single else out


def highpass_transfer(gSig_filt, dims) -> np.ndarray:
    """Frequency response of :func:`highpass_kernel` on a ``dims`` grid (rfft layout).

    Multiplying a frame's ``rfft2`` by it equals filtering with circular borders; the
    result differs from :func:`highpass` only within the kernel half-width of the edges.

    Returns
    -------
    np.ndarray
        ``(H, W // 2 + 1)`` float32 (the kernel is symmetric, so the response is real).
    """
    import scipy.fft as sfft

    k = highpass_kernel(gSig_filt)
    H, W = int(dims[0]), int(dims[1])
    hy, hx = k.shape[0] // 2, k.shape[1] // 2
    grid = np.zeros((H, W), np.float64)
    ys = np.arange(-hy, hy + 1) % H
    xs = np.arange(-hx, hx + 1) % W
    np.add.at(grid, (ys[:, None], xs[None, :]), k)
    return sfft.rfft2(grid).real.astype(np.float32)
