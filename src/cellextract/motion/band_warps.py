"""Warps of one column band (see :mod:`cellextract.motion.bands`): the exact separable bicubic
translation (rigid) and the bicubic remap by the spline shift field (piecewise-rigid), both
floored at the raw frame minimum and written transposed, plus the ``border_nan`` filling of
pixels whose source lies outside the frame."""

from __future__ import annotations

import cv2
import numpy as np

from cellextract.motion.apply import _valid_range

__all__ = ["RigidWarp", "FieldWarp", "fill_value", "fill_borders", "tap_weights",
           "cubic_weights_many", "finite_range", "floor_to"]


def fill_value(frame_min: float, border_nan) -> float | None:
    """Constant for pixels without source (None: keep the edge replication, 'copy')."""
    if border_nan == "copy":
        return None
    if border_nan is True:
        return float("nan")
    if border_nan == "min":
        return float(frame_min)
    return 0.0


class RigidWarp:
    """Exact separable bicubic translation of a band, floored and written transposed."""

    def __init__(self, ctx, c0, c1, M, H):
        self.shifts = ctx.shifts
        self.ky, self.kx, self.i = ctx.weights
        self.bw, self.H, self.M = c1 - c0, H, M

    def __call__(self, pad: np.ndarray, t: int, dst: np.ndarray, low: float, has_nan: bool) -> None:
        """Warp frame ``t`` from ``pad`` (``(H + 2M, bw + 2M)`` float32) into ``dst``
        (``(bw, H)`` float32), values below ``low`` raised to it (NaN kept if ``has_nan``)."""
        H, bw, M = self.H, self.bw, self.M
        if self.shifts[t, 0] == 0.0 and self.shifts[t, 1] == 0.0:
            cv2.transpose(pad[M:M + H, M:M + bw], dst=dst)
            return
        y0, x0 = M + int(self.i[t, 0]) - 1, M + int(self.i[t, 1]) - 1
        # (no dst: OpenCV is faster allocating its own output here)
        f = cv2.sepFilter2D(pad[y0:y0 + H + 3, x0:x0 + bw + 3], cv2.CV_32F, self.kx[t], self.ky[t],
                            anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[:H, :bw]
        floor_to(f, low, has_nan)
        cv2.transpose(f, dst=dst)

    def outside(self, t: int, W: int):
        """Row and column ranges ``(y0, y1, x0, x1)`` (frame coordinates) with a source."""
        y0, y1 = _valid_range(float(self.shifts[t, 0]), self.H)
        x0, x1 = _valid_range(float(self.shifts[t, 1]), W)
        return y0, y1, x0, x1


class FieldWarp:
    """Bicubic remap of a band by the spline shift field, floored and written transposed."""

    def __init__(self, field, c0, c1, M, H, W):
        self.field, self.c0, self.c1, self.M, self.W = field, c0, c1, M, W
        self.ys = np.arange(H, dtype=np.float32)[:, None]
        self.xs = np.arange(c0, c1, dtype=np.float32)[None, :]
        self.shift_x = np.float32(M - c0)
        self.out = np.empty((H, c1 - c0), np.float32)

    def prepare(self, r0: int, r1: int) -> None:
        """Sampling maps of frames ``r0:r1`` in padded-band coordinates (one batched
        spline evaluation per block instead of one per frame)."""
        fy, fx = self.field(slice(r0, r1), self.c0, self.c1)  # (n, H, bw)
        self.r0 = r0
        self.map_x = (self.xs - fx) + self.shift_x
        self.map_y = (self.ys - fy) + np.float32(self.M)

    def __call__(self, pad: np.ndarray, t: int, dst: np.ndarray, low: float, has_nan: bool) -> None:
        """Warp frame ``t`` from ``pad`` into ``dst`` (see :meth:`RigidWarp.__call__`)."""
        i = t - self.r0
        out = cv2.remap(pad, self.map_x[i], self.map_y[i], cv2.INTER_CUBIC, dst=self.out,
                        borderMode=cv2.BORDER_REPLICATE)
        floor_to(out, low, has_nan)
        cv2.transpose(out, dst=dst)


def floor_to(a: np.ndarray, low: float, has_nan: bool) -> None:
    """Raise values of ``a`` below ``low`` to it, in place (``cv2.max`` is 3x faster than
    NumPy here but turns NaN into ``low``, so NumPy when the frame may hold NaN)."""
    if has_nan:
        np.maximum(a, np.float32(low), out=a)
    else:
        cv2.max(a, float(low), dst=a)


def fill_borders(rows: np.ndarray, warp, r0: int, job, frame_min, bw: int, H: int, W: int) -> None:
    """Apply ``border_nan`` to pixels whose source lies outside the frame (rows in
    transposed band layout ``(n, bw*H)``)."""
    if job.border_nan == "copy":
        return
    for i in range(rows.shape[0]):
        fmin = float(frame_min[r0 + i])
        if not np.isfinite(fmin):
            continue
        val = fill_value(fmin, job.border_nan)
        img_t = rows[i].reshape(bw, H)  # (x, y)
        if isinstance(warp, RigidWarp):
            y0, y1, x0, x1 = warp.outside(r0 + i, W)
            img_t[:, :y0] = val
            img_t[:, y1:] = val
            a, b = max(0, x0 - job.c0), min(bw, max(0, x1 - job.c0))
            img_t[:a] = val
            img_t[b:] = val
        else:
            warp_mask = field_outside(warp, r0 + i)
            img_t[warp_mask.T] = val


def field_outside(warp: FieldWarp, t: int) -> np.ndarray:
    fy, fx = warp.field(t, warp.c0, warp.c1)
    map_x = warp.xs - fx
    map_y = warp.ys - fy
    H = map_y.shape[0]
    return (map_x < -0.01) | (map_x > warp.W - 0.99) | (map_y < -0.01) | (map_y > H - 0.99)


def tap_weights(shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 4)`` bicubic tap weights along y and x for every frame's rigid shift."""
    src = -np.asarray(shifts, np.float64).reshape(-1, 2)
    frac = src - np.floor(src)
    return cubic_weights_many(frac[:, 0]), cubic_weights_many(frac[:, 1])


def cubic_weights_many(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """``(n, 4)`` Keys cubic weights (as :func:`cellextract.motion.apply.cubic_weights`)
    for fractional positions ``t (n,)`` in [0, 1)."""
    x = np.abs(np.asarray(t, np.float64)[:, None] - np.array([-1.0, 0.0, 1.0, 2.0]))
    near = (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    far = a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return np.where(x <= 1.0, near, far).astype(np.float32)


def finite_range(a: np.ndarray) -> tuple[float, float]:
    lo, hi = float(a.min()), float(a.max())
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    fin = a[np.isfinite(a)]
    return (float(fin.min()), float(fin.max())) if fin.size else (np.inf, -np.inf)
