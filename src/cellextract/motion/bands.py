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

import itertools
import os
from dataclasses import dataclass

import cv2
import numpy as np

from cellextract.motion.apply import _valid_range, cubic_weights

BAND_BYTES = 176 << 20  #: float32 buffer of one band (per worker process; ~0.4 GB per worker in all)
MIN_BAND_COLS = 24  #: narrower bands re-read too much margin per frame
FRAMES_PER_READ = 64  #: raw frames read (one band) at a time
SUB_ROWS = 512  #: rows transposed and written together
WINDOW_INPUT_BYTES = 4 << 30  #: raw input bytes of one window of frames at most (page cache)
MIN_BANDS = 4  #: bands at least (work units shared by the processes)


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


def plan_bands(dims, T: int, *, n_workers: int = 1, budget: int | None = None,
               min_cols: int = MIN_BAND_COLS, max_window: int | None = None) -> BandPlan:
    """Choose column bands and the frame window so one band buffer fits ``budget`` bytes.

    Whole-movie bands (one sequential write per band) when at least ``min_cols``
    columns fit; otherwise ``min_cols``-wide bands over windows of frames. At least
    ``MIN_BANDS`` bands (8 px wide at least) for load balance. The plan does not depend
    on ``n_workers`` (accepted for API stability), so the memmap is bit-identical
    whatever the number of processes. ``max_window`` caps the frames of a window (the
    raw frames of one window are re-read once per band and should stay in the page
    cache).
    """
    H, W = int(dims[0]), int(dims[1])
    budget = BAND_BYTES if budget is None else int(budget)
    if max_window is not None and T > max_window:  # plan for windows of at most max_window frames
        plan = plan_bands(dims, int(max_window), budget=budget, min_cols=min_cols)
        return BandPlan(plan.bands, plan.window)
    min_cols = max(1, min(min_cols, W))
    cols = budget // (4 * H * max(T, 1))
    if cols >= min_cols:
        window = T
    else:
        cols = min_cols
        window = max(1, budget // (4 * H * cols))
    cols = int(min(cols, W))
    n = -(-W // cols)
    n = max(n, min(MIN_BANDS, W // 8))
    edges = np.linspace(0, W, max(n, 1) + 1).round().astype(int)
    return BandPlan([(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a], int(min(window, T)))


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
        pwrite_all(fd, rows, p0 * T * 4)
        return
    for j in range(b):
        pwrite_all(fd, rows[j], ((p0 + j) * T + t0) * 4)


def pwrite_all(fd: int, arr: np.ndarray, offset: int) -> None:
    """Write all bytes of ``arr`` at byte ``offset`` of ``fd`` (retrying short writes)."""
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
    t0, t1 : int
        Frames to do (default all); jobs of one band over successive windows let the
        work go window by window over the movie, so a long input is read from the page
        cache (one window at a time) rather than from disk once per band.
    """

    c0: int
    c1: int
    window: int
    margin: int
    border_nan: object
    offset: float
    t0: int = 0
    t1: int | None = None


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
        ``field(t, c0, c1) -> (fy, fx)``: ``(H, bw)`` shift field of frame ``t``, or
        ``(n, H, bw)`` for a slice of frames (piecewise-rigid).

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
    M = job.margin
    s0, s1 = max(0, c0 - M), min(W, c1 + M)
    buf = _scratch("buf", (min(job.window, T), bw * H), np.float32)
    acc = np.zeros(bw * H, np.float64)  # sums in the buffer's (Fortran) pixel order
    cnt = np.zeros(bw * H, np.float64)
    n_clean = 0  # frames summed without NaN checks (counted at the end)
    vmin, vmax = np.inf, -np.inf
    # raw columns with a margin of M on every side, edge-replicated where the frame ends;
    # read in the stored type (uint16: half the bytes), converted block-wise (contiguous)
    shape = (FRAMES_PER_READ, H + 2 * M, s1 - s0 + 2 * M)
    native = _scratch("native", shape, getattr(source, "dtype", np.float32))
    padded = native if native.dtype == np.float32 else _scratch("padded", shape, np.float32)
    rows_out = _scratch("rows", (min(SUB_ROWS, bw * H), min(job.window, T)), np.float32)
    warp = _RigidWarp(shifts, s0, c0, c1, M, H) if field is None else _FieldWarp(field, s0, c0, c1, M, H, W)
    may_nan = frame_nan is None or job.border_nan is True
    t_stop = T if job.t1 is None else min(T, job.t1)
    for t0 in range(job.t0, t_stop, job.window):
        t1 = min(t_stop, t0 + job.window)
        for r0 in range(t0, t1, FRAMES_PER_READ):
            r1 = min(t1, r0 + FRAMES_PER_READ)
            n = r1 - r0
            nat = native[:n]
            missing = source.read_native(r0, r1, s0, s1, out=nat[:, M:M + H, M:M + s1 - s0])
            _replicate_edges(nat, M, left=s0 == 0, right=s1 == W)
            blk = padded[:n]
            if blk is not nat:
                blk[...] = nat
            if missing.any():
                blk[missing] = np.nan
            rows = buf[r0 - t0:r1 - t0]
            if hasattr(warp, "prepare"):
                warp.prepare(r0, r1)
            for i in range(n):
                warp(blk[i], r0 + i, rows[i].reshape(bw, H))
            fmin = frame_min[r0:r1].astype(np.float32)
            empty = ~np.isfinite(fmin)
            if empty.any():
                rows[empty] = np.nan
                fmin = np.where(empty, np.float32(0), fmin)
            np.maximum(rows, fmin[:, None], out=rows)  # bicubic undershoot -> raw minimum
            _fill_borders(rows, warp, r0, job, frame_min, bw, H, W)
            if may_nan or empty.any() or frame_nan[r0:r1].any():
                fin = np.isfinite(rows)
                acc += np.where(fin, rows, 0).sum(axis=0, dtype=np.float64)
                cnt += fin.sum(axis=0)
            else:
                acc += rows.sum(axis=0)
                n_clean += n
        n = t1 - t0
        lo, hi = _finite_range(buf[:n])
        vmin, vmax = min(vmin, lo), max(vmax, hi)
        for j0 in range(0, bw * H, SUB_ROWS):
            j1 = min(bw * H, j0 + SUB_ROWS)
            out_rows = rows_out[:j1 - j0, :n]
            cv2.transpose(buf[:n, j0:j1], dst=out_rows)
            if job.offset:
                out_rows += np.float32(job.offset)
            write_rows(fd, out_rows, c0 * H + j0, T, t0)
    cnt += n_clean
    return {"c0": c0, "c1": c1, "t0": job.t0, "t1": t_stop, "sum": acc.reshape(bw, H).T, "cnt": cnt.reshape(bw, H).T,
            "vmin": vmin + job.offset, "vmax": vmax + job.offset}


_SCRATCH: dict = {}


def _scratch(key: str, shape: tuple, dtype) -> np.ndarray:
    """A work array of ``shape`` reused from band to band in this process (a fresh
    192 MB buffer per band would cost ~50k first-touch page faults each time)."""
    n = int(np.prod(shape))
    dtype = np.dtype(dtype)
    a = _SCRATCH.get(key)
    if a is None or a.dtype != dtype or a.size < n:
        _SCRATCH.pop(key, None)
        a = _SCRATCH[key] = np.empty(n, dtype)
    return a[:n].reshape(shape)


def release_scratch() -> None:
    """Free the work arrays kept by :func:`process_band`."""
    _SCRATCH.clear()


def _replicate_edges(blk: np.ndarray, M: int, *, left: bool, right: bool) -> None:
    """Fill the margin of ``blk (n, H + 2M, w + 2M)`` by edge replication: rows always,
    columns only where the frame ends (elsewhere the margin stays unused)."""
    if M == 0:
        return
    H = blk.shape[1] - 2 * M
    blk[:, :M] = blk[:, M:M + 1]
    blk[:, M + H:] = blk[:, M + H - 1:M + H]
    if left:
        blk[:, :, :M] = blk[:, :, M:M + 1]
    if right:
        blk[:, :, -M:] = blk[:, :, -M - 1:-M]


class _RigidWarp:
    """Exact separable bicubic translation of a band, written transposed into ``dst``."""

    def __init__(self, shifts, s0, c0, c1, M, H):
        self.shifts = np.asarray(shifts, np.float64)
        self.ky, self.kx = _all_weights(self.shifts)
        src = -self.shifts
        self.i = np.floor(src).astype(np.int64)
        self.x_off = M + (c0 - s0)
        self.bw, self.H, self.M = c1 - c0, H, M

    def __call__(self, pad: np.ndarray, t: int, dst: np.ndarray) -> None:
        iy, ix = int(self.i[t, 0]), int(self.i[t, 1])
        H, bw, M = self.H, self.bw, self.M
        if self.shifts[t, 0] == 0.0 and self.shifts[t, 1] == 0.0:
            cv2.transpose(pad[M:M + H, self.x_off:self.x_off + bw], dst=dst)
            return
        y0, x0 = M + iy - 1, self.x_off + ix - 1
        win = pad[y0:y0 + H + 3, x0:x0 + bw + 3]
        f = cv2.sepFilter2D(win, cv2.CV_32F, self.kx[t], self.ky[t], anchor=(0, 0),
                            borderType=cv2.BORDER_REPLICATE)
        cv2.transpose(f[:H, :bw], dst=dst)

    def outside(self, t: int, W: int):
        """Row and column ranges ``(y0, y1, x0, x1)`` (frame coordinates) with a source."""
        y0, y1 = _valid_range(float(self.shifts[t, 0]), self.H)
        x0, x1 = _valid_range(float(self.shifts[t, 1]), W)
        return y0, y1, x0, x1


class _FieldWarp:
    """Bicubic remap of a band by the spline shift field, written transposed into ``dst``."""

    def __init__(self, field, s0, c0, c1, M, H, W):
        self.field, self.c0, self.c1, self.M, self.W = field, c0, c1, M, W
        self.ys = np.arange(H, dtype=np.float32)[:, None]
        self.xs = np.arange(c0, c1, dtype=np.float32)[None, :]
        self.shift_x = np.float32(M - s0)

    def prepare(self, r0: int, r1: int) -> None:
        """Sampling maps of frames ``r0:r1`` in padded-block coordinates (one batched
        spline evaluation per block instead of one per frame)."""
        fy, fx = self.field(slice(r0, r1), self.c0, self.c1)  # (n, H, bw)
        self.r0 = r0
        self.map_x = (self.xs - fx) + self.shift_x
        self.map_y = (self.ys - fy) + np.float32(self.M)

    def __call__(self, pad: np.ndarray, t: int, dst: np.ndarray) -> None:
        i = t - self.r0
        out = cv2.remap(pad, self.map_x[i], self.map_y[i], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        cv2.transpose(out, dst=dst)


def _fill_borders(rows: np.ndarray, warp, r0: int, job: BandJob, frame_min, bw: int, H: int, W: int) -> None:
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
        if isinstance(warp, _RigidWarp):
            y0, y1, x0, x1 = warp.outside(r0 + i, W)
            img_t[:, :y0] = val
            img_t[:, y1:] = val
            a, b = max(0, x0 - job.c0), min(bw, max(0, x1 - job.c0))
            img_t[:a] = val
            img_t[b:] = val
        else:
            warp_mask = _field_outside(warp, r0 + i)
            img_t[warp_mask.T] = val


def _field_outside(warp: _FieldWarp, t: int) -> np.ndarray:
    fy, fx = warp.field(t, warp.c0, warp.c1)
    map_x = warp.xs - fx
    map_y = warp.ys - fy
    H = map_y.shape[0]
    return (map_x < -0.01) | (map_x > warp.W - 0.99) | (map_y < -0.01) | (map_y > H - 0.99)


def _all_weights(shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _finite_range(a: np.ndarray) -> tuple[float, float]:
    lo, hi = float(a.min()), float(a.max())
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    fin = a[np.isfinite(a)]
    return (float(fin.min()), float(fin.max())) if fin.size else (np.inf, -np.inf)
