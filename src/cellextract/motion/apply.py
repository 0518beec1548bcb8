"""Apply registration shifts to frames with OpenCV (bicubic interpolation).

Convention: a shift ``(s_y, s_x)`` maps a raw frame ``f`` to
``registered(y, x) = f(y - s_y, x - s_x)`` (positive = content moves down/right).

Frames are warped with edge replication; pixels whose source lies outside the raw frame
(by more than 0.01 px) are then filled according to ``border_nan`` (CaImAn's meanings):

- ``True``: NaN;
- ``False``: 0;
- ``'copy'``: value of the nearest valid pixel (edge replication);
- ``'min'``: the minimum of the raw frame.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from cellextract.errors import ParameterError

BORDER_CHOICES = (True, False, "copy", "min")


def check_border_nan(border_nan):
    """Validate ``border_nan``; return it normalised (bool or str)."""
    if isinstance(border_nan, (bool, np.bool_)):
        return bool(border_nan)
    if isinstance(border_nan, str) and border_nan in ("copy", "min"):
        return border_nan
    raise ParameterError(f"motion.border_nan: got {border_nan!r}, allowed True, False, 'copy', 'min'")


def _fill_value(frame: np.ndarray, border_nan) -> float | None:
    """Constant for pixels without source, or None to keep the edge replication ('copy')."""
    if border_nan == "copy":
        return None
    if border_nan is True:
        return float("nan")
    if border_nan == "min":
        return float(np.nanmin(frame)) if np.isfinite(frame).any() else float("nan")
    return 0.0


def apply_rigid(frames: np.ndarray, shifts: np.ndarray, *, border_nan="copy", out: np.ndarray | None = None) -> np.ndarray:
    """Translate each frame by its shift (``cv2.warpAffine``, bicubic).

    Parameters
    ----------
    frames : np.ndarray
        ``(n, H, W)`` or ``(H, W)`` raw frames.
    shifts : np.ndarray
        ``(n, 2)`` or ``(2,)`` registration shifts ``(shift_y, shift_x)`` in pixels.
    border_nan : {True, False, 'copy', 'min'}
        Fill of pixels with no source (see module docstring).
    out : np.ndarray, optional
        ``(n, H, W)`` float32 array to write into.

    Returns
    -------
    np.ndarray
        Registered frames, float32, same shape as ``frames``.
    """
    border_nan = check_border_nan(border_nan)
    a = np.asarray(frames, dtype=np.float32)
    single = a.ndim == 2
    if single:
        a = a[None]
    s = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    n, H, W = a.shape
    if out is None:
        out = np.empty_like(a)
    for i in range(n):
        shift_cubic(a[i], s[i, 0], s[i, 1], out=out[i])
        val = _fill_value(a[i], border_nan)
        if val is not None:  # pixels whose source lies more than 0.01 px outside the frame
            y0, y1 = _valid_range(s[i, 0], H)
            x0, x1 = _valid_range(s[i, 1], W)
            out[i, :y0] = val
            out[i, y1:] = val
            out[i, :, :x0] = val
            out[i, :, x1:] = val
    return out[0] if single else out


def cubic_weights(t: float, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights (OpenCV's ``a = -0.75``) of the taps at offsets
    -1, 0, 1, 2 from ``floor(x)`` for fractional position ``t`` in [0, 1)."""
    x = np.array([1.0 + t, t, 1.0 - t, 2.0 - t])
    w = np.where(x <= 1.0, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a)
    return w.astype(np.float32)


def shift_cubic(frame: np.ndarray, shift_y: float, shift_x: float, *, out: np.ndarray | None = None) -> np.ndarray:
    """Translate one frame by a sub-pixel shift with separable bicubic interpolation.

    ``out(y, x) = frame(y - shift_y, x - shift_x)``, edges replicated. A translation
    makes bicubic interpolation separable with the same 4 weights for every pixel, so it
    is an integer offset plus a 4-tap ``cv2.sepFilter2D`` — exact in the sub-pixel
    position (``warpAffine`` rounds it to 1/32 px) and about 3x faster.

    Parameters
    ----------
    frame : np.ndarray
        ``(H, W)`` float32.
    shift_y, shift_x : float
        Registration shift in pixels.
    out : np.ndarray, optional
        ``(H, W)`` float32 output buffer.

    Returns
    -------
    np.ndarray
        ``(H, W)`` float32.
    """
    H, W = frame.shape
    src_y, src_x = -float(shift_y), -float(shift_x)  # source offset
    iy, ix = int(np.floor(src_y)), int(np.floor(src_x))
    ky, kx = cubic_weights(src_y - iy), cubic_weights(src_x - ix)
    p = max(abs(iy), abs(ix)) + 3
    pad = cv2.copyMakeBorder(frame, p, p, p, p, cv2.BORDER_REPLICATE, dst=_buffer("pad", (H + 2 * p, W + 2 * p)))
    y0, x0 = p + iy - 1, p + ix - 1
    # only the rows/cols needed: window of (H+3, W+3) starting at the first tap
    win = pad[y0:y0 + H + 3, x0:x0 + W + 3]
    f = cv2.sepFilter2D(win, cv2.CV_32F, kx, ky, dst=_buffer("filt", (H + 3, W + 3)), anchor=(0, 0),
                        borderType=cv2.BORDER_REPLICATE)
    if out is None:
        return f[:H, :W].copy()
    out[...] = f[:H, :W]
    return out


_LOCAL = threading.local()


def _buffer(key: str, shape: tuple[int, int]) -> np.ndarray:
    """A float32 work buffer of ``shape`` reused by this thread (saves an allocation and
    page faults per frame)."""
    store = _LOCAL.__dict__.setdefault("buffers", {})
    b = store.get(key)
    if b is None or b.shape != shape:
        b = store[key] = np.empty(shape, np.float32)
    return b


def _valid_range(shift: float, n: int) -> tuple[int, int]:
    """Output index range [lo, hi) whose source ``i - shift`` lies inside ``[0, n - 1]`` (0.01 px slack)."""
    lo = int(np.ceil(shift - 0.01))
    hi = int(np.floor(n - 1 + shift + 0.01)) + 1
    return max(0, min(n, lo)), max(0, min(n, hi))


def apply_field(frame: np.ndarray, field_y: np.ndarray, field_x: np.ndarray, *, border_nan="copy",
                out: np.ndarray | None = None) -> np.ndarray:
    """Warp one frame by a dense shift field (``cv2.remap``, bicubic).

    Parameters
    ----------
    frame : np.ndarray
        ``(H, W)`` raw frame.
    field_y, field_x : np.ndarray
        ``(H, W)`` registration shift at each output pixel, in pixels.
    border_nan : {True, False, 'copy', 'min'}
        Fill of pixels with no source.
    out : np.ndarray, optional
        ``(H, W)`` float32 output buffer.

    Returns
    -------
    np.ndarray
        ``(H, W)`` float32 registered frame: ``out(y, x) = frame(y - field_y, x - field_x)``.
    """
    border_nan = check_border_nan(border_nan)
    f = np.asarray(frame, dtype=np.float32)
    H, W = f.shape
    gy, gx = _grid(H, W)
    map_x = gx - field_x.astype(np.float32, copy=False)
    map_y = gy - field_y.astype(np.float32, copy=False)
    out = cv2.remap(f, map_x, map_y, cv2.INTER_CUBIC, dst=out, borderMode=cv2.BORDER_REPLICATE)
    val = _fill_value(f, border_nan)
    if val is not None:
        outside = (map_x < -0.01) | (map_x > W - 0.99) | (map_y < -0.01) | (map_y > H - 0.99)
        out[outside] = val
    return out


_GRID_CACHE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    g = _GRID_CACHE.get((H, W))
    if g is None:
        gy, gx = np.meshgrid(np.arange(H, dtype=np.float32), np.arange(W, dtype=np.float32), indexing="ij")
        g = _GRID_CACHE[(H, W)] = (gy, gx)
    return g
