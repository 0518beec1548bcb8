"""Second pass of motion correction: warp column bands and write the pixel-major memmap.

The CaImAn memmap ``(H*W, T)`` stores pixels in Fortran order, so image columns
``c0:c1`` are the contiguous rows ``c0*H : c1*H`` of the file. A band of columns is
warped for every frame (from the raw columns ``c0 - margin : c1 + margin``), transposed
into a buffer ``(frames, band pixels)`` and written as whole rows: when the buffer holds
all ``T`` frames (the usual case) the band is one sequential write of contiguous bytes,
so every byte of the memmap is written exactly once, with no scratch file and no
re-reading. Longer movies are done in windows of frames (row segments of a few kB).

Warps (``out(y, x) = raw(y - s_y, x - s_x)``, see :mod:`cellextract.motion.apply`):
rigid — exact separable bicubic (integer offset + 4-tap ``cv2.sepFilter2D``), the same
values as :func:`cellextract.motion.apply.shift_cubic` on the whole frame;
piecewise-rigid — ``cv2.remap`` (bicubic) with the spline shift field evaluated on the
band only. Values below the raw frame's minimum (bicubic undershoot) are raised to it,
so the written movie plus the offset is non-negative whatever the interpolation does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from cellextract.motion.apply import _valid_range, cubic_weights

BAND_BYTES = 192 << 20  #: float32 buffer of one band (per worker process)
MIN_BAND_COLS = 24  #: narrower bands re-read too much margin per frame
FRAMES_PER_READ = 64  #: raw frames read (one band) at a time
SUB_ROWS = 512  #: rows transposed and written together


@dataclass(frozen=True)
class BandPlan:
    """How the memmap is cut into work.

    Attributes
    ----------
    bands : list of (int, int)
        Column ranges ``[c0, c1)``.
    window : int
        Frames buffered per band (``T`` unless the movie is very long).
    """

    bands: list
    window: int


def plan_bands(dims, T: int, *, n_workers: int = 1, budget: int = BAND_BYTES,
               min_cols: int = MIN_BAND_COLS) -> BandPlan:
    """Choose column bands and the frame window so one band buffer fits ``budget`` bytes.

    Whole-movie bands (one sequential write per band) when at least ``min_cols``
    columns fit; otherwise ``min_cols``-wide bands over windows of frames. At least
    ``2 * n_workers`` bands when the width allows, for load balance.
    """
    H, W = int(dims[0]), int(dims[1])
    min_cols = max(1, min(min_cols, W))
    cols = budget // (4 * H * max(T, 1))
    if cols >= min_cols:
        window = T
    else:
        cols = min_cols
        window = max(1, budget // (4 * H * cols))
    cols = int(min(cols, W))
    n = -(-W // cols)
    want = 2 * max(1, n_workers)
    if n < want:
        n = max(n, min(want, W // max(1, min(min_cols, 8))))
    edges = np.linspace(0, W, max(n, 1) + 1).round().astype(int)
    return BandPlan([(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a], int(min(window, T)))


def warp_rigid_band(raw: np.ndarray, s0: int, c0: int, c1: int, shift, *, weights=None) -> np.ndarray:
    """Columns ``c0:c1`` of a frame translated by ``shift`` (exact separable bicubic).

    Parameters
    ----------
    raw : np.ndarray
        ``(H, n)`` float32 raw columns ``s0 : s0 + n`` of the frame, covering
        ``c0 - |shift| - 3 : c1 + |shift| + 3`` where the frame has them.
    s0 : int
        First column of ``raw`` in the frame.
    c0, c1 : int
        Output columns.
    shift : (float, float)
        ``(shift_y, shift_x)`` in pixels.
    weights : (np.ndarray, np.ndarray), optional
        Precomputed ``(ky, kx)`` 4-tap weights of the shift's fractional parts.

    Returns
    -------
    np.ndarray
        ``(H, c1 - c0)`` float32; edges replicated like the whole-frame warp.
    """
    H = raw.shape[0]
    src_y, src_x = -float(shift[0]), -float(shift[1])
    iy, ix = int(np.floor(src_y)), int(np.floor(src_x))
    ky, kx = weights if weights is not None else (cubic_weights(src_y - iy), cubic_weights(src_x - ix))
    p = max(abs(iy), abs(ix)) + 3
    pad = cv2.copyMakeBorder(raw, p, p, p, p, cv2.BORDER_REPLICATE)
    y0, x0 = p + iy - 1, p + (c0 - s0) + ix - 1
    bw = c1 - c0
    win = pad[y0:y0 + H + 3, x0:x0 + bw + 3]
    f = cv2.sepFilter2D(win, cv2.CV_32F, kx, ky, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    return f[:H, :bw]


def warp_field_band(raw: np.ndarray, s0: int, c0: int, field_y: np.ndarray, field_x: np.ndarray,
                    W: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns ``c0 : c0 + bw`` warped by a dense shift field (``cv2.remap``, bicubic).

    Parameters
    ----------
    raw : np.ndarray
        ``(H, n)`` float32 raw columns ``s0 : s0 + n`` (with a margin of the largest
        shift + 3 where the frame has it).
    s0, c0 : int
        First column of ``raw`` / of the output in the frame.
    field_y, field_x : np.ndarray
        ``(H, bw)`` shifts at the output pixels.
    W : int
        Frame width.

    Returns
    -------
    out : np.ndarray
        ``(H, bw)`` float32.
    outside : np.ndarray
        ``(H, bw)`` bool, pixels whose source lies outside the frame.
    """
    H, bw = field_y.shape
    ys = np.arange(H, dtype=np.float32)[:, None]
    xs = np.arange(c0, c0 + bw, dtype=np.float32)[None, :]
    map_x = xs - field_x
    map_y = ys - field_y
    outside = (map_x < -0.01) | (map_x > W - 0.99) | (map_y < -0.01) | (map_y > H - 0.99)
    out = cv2.remap(raw, map_x - np.float32(s0), map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return out, outside


def fill_value(frame_min: float, border_nan) -> float | None:
    """Constant for pixels without source (None: keep the edge replication, 'copy')."""
    if border_nan == "copy":
        return None
    if border_nan is True:
        return float("nan")
    if border_nan == "min":
        return float(frame_min)
    return 0.0


def write_rows(fd: int, rows: np.ndarray, p0: int, T: int, t0: int) -> None:
    """Write ``rows (b, n)`` as memmap rows ``p0 : p0 + b``, frames ``t0 : t0 + n``."""
    b, n = rows.shape
    if n == T:  # whole rows: one contiguous write
        _pwrite_all(fd, rows, p0 * T * 4)
        return
    for j in range(b):
        _pwrite_all(fd, rows[j], ((p0 + j) * T + t0) * 4)


def _pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    buf = memoryview(np.ascontiguousarray(arr)).cast("B")
    done = 0
    while done < len(buf):
        done += os.pwrite(fd, buf[done:], offset + done)


@dataclass
class BandJob:
    """Everything a worker needs to warp and write one band.

    Attributes
    ----------
    c0, c1 : int
        Output columns.
    window : int
        Frames buffered at once.
    margin : int
        Extra raw columns read on each side (largest shift + 3).
    border_nan : bool or str
        Fill mode.
    offset : float
        Added to every written value.
    """

    c0: int
    c1: int
    window: int
    margin: int
    border_nan: object
    offset: float


def process_band(job: BandJob, source, fd: int, *, shifts: np.ndarray, frame_min: np.ndarray,
                 frame_nan: np.ndarray | None = None, field=None) -> dict:
    """Warp columns ``job.c0:job.c1`` of every frame and write them to the memmap.

    Parameters
    ----------
    job : BandJob
        The band.
    source : cellextract.motion.source.RawSource
        Raw frames.
    fd : int
        Memmap file opened for writing.
    shifts : np.ndarray
        ``(T, 2)`` rigid shifts (used when ``field`` is None).
    frame_min : np.ndarray
        ``(T,)`` minimum of each raw frame (NaN for empty frames).
    frame_nan : np.ndarray, optional
        ``(T,)`` bool, frames with non-finite pixels (default: assume any frame may).
    field : callable, optional
        ``field(t, c0, c1) -> (fy, fx)`` ``(H, bw)`` shift field of frame ``t``
        (piecewise-rigid).

    Returns
    -------
    dict
        ``sum``, ``cnt`` ``(H, bw)`` sums / counts of finite written values (before the
        offset), ``vmin``, ``vmax`` over finite values (after the offset).
    """
    H, W = source.dims
    T = source.n_frames
    c0, c1 = job.c0, job.c1
    bw = c1 - c0
    s0, s1 = max(0, c0 - job.margin), min(W, c1 + job.margin)
    buf = np.empty((min(job.window, T), bw * H), np.float32)
    acc = np.zeros((H, bw), np.float64)
    cnt = np.zeros((H, bw), np.float64)
    clean, n_done = frame_nan is not None, 0  # no NaN so far: counts are the number of frames
    vmin, vmax = np.inf, -np.inf
    raw = np.empty((FRAMES_PER_READ, H, s1 - s0), np.float32)
    weights = _all_weights(shifts) if field is None else None
    for t0 in range(0, T, job.window):
        t1 = min(T, t0 + job.window)
        for r0 in range(t0, t1, FRAMES_PER_READ):
            r1 = min(t1, r0 + FRAMES_PER_READ)
            block = source.read_cols(r0, r1, s0, s1, out=raw[:r1 - r0])
            for t in range(r0, r1):
                img = _warp_one(block[t - r0], t, job, s0, W, shifts, frame_min, field, weights)
                row = buf[t - t0].reshape(bw, H)
                cv2.transpose(img, dst=row)
                if clean and not (frame_nan is not None and frame_nan[t]) and job.border_nan is not True:
                    cv2.accumulate(img, acc)
                else:  # NaN frame or NaN pixels: count finite values only
                    if clean:
                        cnt[...] = n_done
                        clean = False
                    fin = np.isfinite(img)
                    acc += np.where(fin, img, 0.0)
                    cnt += fin
                n_done += 1
        n = t1 - t0
        lo, hi = _finite_range(buf[:n])
        vmin, vmax = min(vmin, lo), max(vmax, hi)
        for j0 in range(0, bw * H, SUB_ROWS):
            j1 = min(bw * H, j0 + SUB_ROWS)
            rows = cv2.transpose(buf[:n, j0:j1])
            if job.offset:
                rows += np.float32(job.offset)
            write_rows(fd, rows, c0 * H + j0, T, t0)
    if clean:
        cnt[...] = T
    return {"c0": c0, "c1": c1, "sum": acc, "cnt": cnt, "vmin": vmin + job.offset, "vmax": vmax + job.offset}


def _all_weights(shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 4)`` bicubic tap weights along y and x for every frame's rigid shift."""
    src = -np.asarray(shifts, np.float64)
    frac = src - np.floor(src)
    ky = np.stack([cubic_weights(f) for f in frac[:, 0]]) if len(frac) else np.zeros((0, 4), np.float32)
    kx = np.stack([cubic_weights(f) for f in frac[:, 1]]) if len(frac) else np.zeros((0, 4), np.float32)
    return ky, kx


def _warp_one(raw: np.ndarray, t: int, job: BandJob, s0: int, W: int, shifts, frame_min, field,
              weights=None) -> np.ndarray:
    """Warp, clamp and fill one frame's band ``(H, bw)``."""
    H = raw.shape[0]
    c0, c1 = job.c0, job.c1
    fmin = float(frame_min[t])
    if not np.isfinite(fmin):  # nothing finite in the frame
        return np.full((H, c1 - c0), np.nan, np.float32)
    val = fill_value(fmin, job.border_nan)
    if field is None:
        sy, sx = float(shifts[t, 0]), float(shifts[t, 1])
        if sy == 0.0 and sx == 0.0:
            return np.ascontiguousarray(raw[:, c0 - s0:c1 - s0])
        img = warp_rigid_band(raw, s0, c0, c1, (sy, sx),
                              weights=None if weights is None else (weights[0][t], weights[1][t]))
        np.maximum(img, np.float32(fmin), out=img)
        if val is not None:
            y0, y1 = _valid_range(sy, H)
            x0, x1 = _valid_range(sx, W)
            img[:y0] = val
            img[y1:] = val
            a, b = max(0, x0 - c0), min(c1 - c0, max(0, x1 - c0))
            img[:, :a] = val
            img[:, b:] = val
        return img
    fy, fx = field(t, c0, c1)
    img, outside = warp_field_band(raw, s0, c0, fy, fx, W)
    np.maximum(img, np.float32(fmin), out=img)
    if val is not None:
        img[outside] = val
    return img


def _finite_range(a: np.ndarray) -> tuple[float, float]:
    lo, hi = float(a.min()), float(a.max())
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    fin = a[np.isfinite(a)]
    return (float(fin.min()), float(fin.max())) if fin.size else (np.inf, -np.inf)
