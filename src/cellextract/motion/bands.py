"""Second pass of motion correction: warp column bands and write the pixel-major memmap.

The CaImAn memmap ``(H*W, T)`` stores pixels in Fortran order, so image columns
``c0:c1`` are the contiguous rows ``c0*H : c1*H`` of the file. A band of columns is
warped for every frame (from the raw columns ``c0 - margin : c1 + margin``), transposed
into a buffer ``(frames, band pixels)`` and written as whole rows: when the buffer holds
all ``T`` frames (the usual case) the band is one sequential write of contiguous bytes,
so every byte of the memmap is written exactly once, with no scratch file and no
re-reading. Longer movies are done in windows of frames (row segments of a few kB).

Warps (``out(y, x) = raw(y - s_y, x - s_x)``, see :mod:`cellextract.motion.apply`; the band
versions are in :mod:`cellextract.motion.band_warps`):
rigid — exact separable bicubic (integer offset + 4-tap ``cv2.sepFilter2D``), the same
values as :func:`cellextract.motion.apply.shift_cubic` on the whole frame;
piecewise-rigid — ``cv2.remap`` (bicubic) with the spline shift field evaluated on the
band only. Values below the raw frame's minimum (bicubic undershoot) are raised to it,
so the written movie plus the offset is non-negative whatever the interpolation does.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from cellextract.motion.band_warps import (FieldWarp, RigidWarp, fill_borders, finite_range,
                                            tap_weights)
from cellextract.motion.buffers import PAGE, aligned_view
from cellextract.motion.buffers import scratch as _scratch
from cellextract.motion.output import pwrite_all

BAND_BYTES = 448 << 20  #: float32 buffer of the band being written (one, shared by the worker threads)
MIN_BAND_COLS = 24  #: narrower bands re-read too much margin per frame
FRAMES_PER_READ = 64  #: raw frames read (one band) at a time
BLOCK_BYTES = 3 << 20  #: bytes of memmap rows transposed and written together (one write slot)
WRITE_SLOTS = 8  #: blocks in flight per thread (their writes overlap the next band's warps)
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


def write_rows(out, rows: np.ndarray, p0: int, T: int, t0: int) -> None:
    """Write ``rows (b, n)`` as memmap rows ``p0 : p0 + b``, frames ``t0 : t0 + n``
    (``out``: a :class:`cellextract.motion.output.RowWriter` or a file descriptor)."""
    b, n = rows.shape
    write = out.write if hasattr(out, "write") else (lambda a, off: pwrite_all(out, a, off))
    if n == T:  # whole rows: one contiguous write
        write(rows, p0 * T * 4)
        return
    for j in range(b):
        write(rows[j], ((p0 + j) * T + t0) * 4)


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


@dataclass
class BandContext:
    """What every block of every band needs, shared (read-only) by the worker threads.

    Attributes
    ----------
    source : cellextract.motion.source.RawSource
        Raw frames.
    shifts : np.ndarray
        ``(T, 2)`` rigid shifts (used when ``field`` is None).
    frame_min : np.ndarray
        ``(T,)`` minimum of each raw frame (NaN for empty frames).
    frame_nan : np.ndarray or None
        ``(T,)`` bool, frames with non-finite pixels (None: any frame may have them).
    field : callable or None
        ``field(t, c0, c1) -> (fy, fx)``: ``(H, bw)`` shift field of frame ``t``, or
        ``(n, H, bw)`` for a slice of frames (piecewise-rigid).
    qc : cellextract.motion.correct.QCGrid or None
        QC sample points: per-frame sums of the written values there are returned (see
        :func:`cellextract.motion.correct.pearson_from_sums`).
    """

    source: object
    shifts: np.ndarray
    frame_min: np.ndarray
    frame_nan: np.ndarray | None = None
    field: object = None
    qc: object = None

    def __post_init__(self):
        self.shifts = np.asarray(self.shifts, np.float64)
        self.lows = np.nan_to_num(np.asarray(self.frame_min, np.float32), nan=0.0)  # undershoot floor
        self.weights = tap_weights(self.shifts) + (np.floor(-self.shifts).astype(np.int64),)


def warp_block(job: BandJob, ctx: BandContext, rows: np.ndarray, r0: int) -> dict:
    """Warp columns ``job.c0:job.c1`` of frames ``r0 : r0 + len(rows)`` into ``rows``.

    Parameters
    ----------
    job : BandJob
        The band.
    ctx : BandContext
        Frames, shifts and per-frame facts.
    rows : np.ndarray
        ``(n, bw*H)`` float32 output: frame ``r0 + i`` as ``rows[i].reshape(bw, H)``
        (the band in Fortran pixel order, like the memmap's rows).
    r0 : int
        First frame.

    Returns
    -------
    dict
        ``sum``, ``cnt`` ``(bw*H,)`` float64 sums / counts of finite values (before the
        offset; ``cnt`` is the scalar ``n`` when all are finite), ``vmin``, ``vmax`` over
        finite values (before the offset), ``qc`` the ``(n, 5)`` QC sums (None without
        ``ctx.qc``) and ``r0``.
    """
    src = ctx.source
    H, W = src.dims
    c0, c1, M = job.c0, job.c1, job.margin
    bw = c1 - c0
    n = rows.shape[0]
    s0, s1 = max(0, c0 - M), min(W, c1 + M)
    # raw columns c0 - M : c1 + M, edge-replicated where the frame ends, in the stored type
    pads = (M, M, M - (c0 - s0), M - (s1 - c1))
    padf = _scratch("padf", (H + 2 * M, bw + 2 * M), np.float32)
    warp = RigidWarp(ctx, c0, c1, M, H) if ctx.field is None else FieldWarp(ctx.field, c0, c1, M, H, W)
    if hasattr(warp, "prepare"):
        warp.prepare(r0, r0 + n)
    empty = False
    natives = {padf.dtype: padf}  # padded frame in each stored type met
    fmin = ctx.frame_min
    has_nan = np.ones(n, bool) if ctx.frame_nan is None else ctx.frame_nan[r0:r0 + n]
    f = None
    for i, f in src.frames(r0, r0 + n):
        t = r0 + i
        dst = rows[i].reshape(bw, H)
        if f is None or not np.isfinite(fmin[t]):  # not stored, or no finite pixel
            dst[...] = np.nan
            empty = True
            continue
        native = natives.get(f.dtype)
        if native is None:
            native = natives[f.dtype] = _scratch("pad" + f.dtype.str, padf.shape, f.dtype)
        cv2.copyMakeBorder(f[:, s0:s1], *pads, cv2.BORDER_REPLICATE, dst=native)
        if native is not padf:
            np.copyto(padf, native)  # the float32 filters are faster than 16U -> 32F
        warp(padf, t, dst, ctx.lows[t], has_nan[i])
    del f
    fill_borders(rows, warp, r0, job, fmin, bw, H, W)
    may_nan = job.border_nan is True or empty or has_nan.any()
    lo, hi = finite_range(rows) if may_nan else cv2.minMaxLoc(rows)[:2]
    qc = _qc_sums(rows.reshape(n, bw, H), ctx.qc, c0, c1, may_nan) if ctx.qc is not None else None
    if may_nan:
        fin = np.isfinite(rows)
        return {"sum": np.where(fin, rows, 0).sum(axis=0, dtype=np.float64), "cnt": fin.sum(axis=0),
                "vmin": lo, "vmax": hi, "qc": qc, "r0": r0}
    # float32 sums of <= FRAMES_PER_READ frames (then float64 across blocks): exact enough
    # for the mean image and several times cheaper than converting every value
    return {"sum": rows.sum(axis=0).astype(np.float64), "cnt": n, "vmin": lo, "vmax": hi, "qc": qc, "r0": r0}


def _qc_sums(img: np.ndarray, qc, c0: int, c1: int, may_nan: bool) -> np.ndarray:
    """``(n, 5)`` per-frame QC sums (see :func:`cellextract.motion.correct.pearson_from_sums`)
    over the QC points of columns ``c0:c1``; ``img (n, bw, H)`` the band, x-major."""
    sel = (qc.xs >= c0) & (qc.xs < c1)
    n = img.shape[0]
    if not sel.any():
        return np.zeros((n, 5))
    t = np.ascontiguousarray(qc.t[:, sel].T, dtype=np.float64)  # (nx', ny)
    v = img[:, qc.xs[sel] - c0][:, :, qc.ys].astype(np.float64)  # (n, nx', ny)
    out = np.empty((n, 5))
    if may_nan:
        fin = np.isfinite(v)
        v = np.where(fin, v, 0.0)
        out[:, 3] = (fin * t).sum(axis=(1, 2))
        out[:, 4] = fin.sum(axis=(1, 2))
    else:
        out[:, 3] = t.sum()
        out[:, 4] = t.size
    out[:, 0] = v.sum(axis=(1, 2))
    out[:, 1] = (v * v).sum(axis=(1, 2))
    out[:, 2] = (v * t).sum(axis=(1, 2))
    return out


class BlockWriter:
    """Transpose blocks of a band buffer into memmap rows and write them in the background.

    Each calling thread transposes into one of ``WRITE_SLOTS`` page-aligned stores of
    its own (so direct I/O can take the middle) and hands the write to a writer thread; a
    store is reused once its previous write is done, so the disk works while the threads
    warp the next band. :meth:`flush` (at the end) waits for every write and re-raises
    write errors.

    Parameters
    ----------
    out : RowWriter or int
        The memmap file (:class:`cellextract.motion.output.RowWriter` or a descriptor).
    T : int
        Frames of the memmap (row length).
    n_writers : int
        Writer threads.
    """

    def __init__(self, out, T: int, *, n_writers: int = 1):
        self.out, self.T = out, int(T)
        self._pool = ThreadPoolExecutor(max(1, int(n_writers)), thread_name_prefix="memmap-write")
        self._local = threading.local()
        self._futures: list = []
        self._lock = threading.Lock()

    def write(self, cols: np.ndarray, p0: int, t0: int, offset: float = 0.0) -> None:
        """Write ``cols (n, b)`` (frames x pixels) as memmap rows ``p0 : p0 + b``, frames
        ``t0 : t0 + n``, adding ``offset``."""
        n, b = cols.shape
        loc = self._local.__dict__
        slots = loc.setdefault("slots", [None] * WRITE_SLOTS)
        k = loc["next"] = (loc.get("next", -1) + 1) % WRITE_SLOTS
        if slots[k] is not None:
            slots[k].result()
        store = _scratch(f"rows{k}", (4 * b * n + PAGE,), np.uint8)
        rows = aligned_view(store, (b, n), (p0 * self.T + t0) * 4)
        cv2.transpose(cols, dst=rows)
        if offset:
            rows += np.float32(offset)
        fut = slots[k] = self._pool.submit(write_rows, self.out, rows, p0, self.T, t0)
        with self._lock:
            self._futures.append(fut)

    def flush(self) -> None:
        """Wait for all writes (errors re-raised) and stop the writer threads."""
        try:
            for fut in self._futures:
                fut.result()
        finally:
            self._pool.shutdown(wait=True)
            self._futures.clear()


def row_blocks(b: int, n: int) -> list[tuple[int, int]]:
    """``[j0, j1)`` blocks of a band's ``b`` pixel rows of ``n`` frames, each of about
    :data:`BLOCK_BYTES` (so the write slots stay small whatever the window length)."""
    step = int(np.clip(BLOCK_BYTES // (4 * max(1, n)), 1, max(1, b)))
    return [(j0, min(b, j0 + step)) for j0 in range(0, b, step)]


def frame_blocks(t0: int, t1: int) -> list[tuple[int, int]]:
    """``[r0, r1)`` blocks of at most ``FRAMES_PER_READ`` frames of ``t0:t1``."""
    return [(r0, min(t1, r0 + FRAMES_PER_READ)) for r0 in range(t0, t1, FRAMES_PER_READ)]


def merge_stats(parts, t0: int, n: int) -> dict:
    """Combine the ``warp_block`` results of frames ``t0 : t0 + n`` of one band (any
    order): summed ``sum``, ``cnt``, range, and the ``(n, 5)`` QC sums (or None)."""
    acc = cnt = qc = None
    vmin, vmax = np.inf, -np.inf
    for r in parts:
        acc = r["sum"] if acc is None else acc + r["sum"]
        cnt = r["cnt"] if cnt is None else cnt + r["cnt"]
        vmin, vmax = min(vmin, r["vmin"]), max(vmax, r["vmax"])
        if r.get("qc") is not None:
            qc = np.zeros((n, 5)) if qc is None else qc
            qc[r["r0"] - t0:r["r0"] - t0 + len(r["qc"])] = r["qc"]
    return {"sum": acc, "cnt": cnt, "vmin": vmin, "vmax": vmax, "qc": qc}


def process_band(job: BandJob, source, out, *, shifts: np.ndarray, frame_min: np.ndarray,
                 frame_nan: np.ndarray | None = None, field=None, map_fn=map,
                 buffer: np.ndarray | None = None) -> dict:
    """Warp columns ``job.c0:job.c1`` of every frame and write them to the memmap.

    Parameters
    ----------
    job : BandJob
        The band.
    source : cellextract.motion.source.RawSource
        Raw frames.
    out : RowWriter or int
        The memmap file (:class:`cellextract.motion.output.RowWriter`, or a file
        descriptor opened for writing).
    shifts, frame_min, frame_nan, field
        See :class:`BandContext`.
    map_fn : callable, optional
        ``map``-like function: the blocks of frames (then of rows) of the band are
        shared by its workers.
    buffer : np.ndarray, optional
        Float32 band buffer of at least ``min(window, T) * bw * H`` values (default: one
        kept by this thread).

    Returns
    -------
    dict
        ``sum``, ``cnt`` ``(H, bw)`` sums / counts of finite written values (before the
        offset), ``vmin``, ``vmax`` over finite values (after the offset), ``qc``
        (None here; see :func:`run_band`).
    """
    ctx = BandContext(source, shifts, frame_min, frame_nan, field)
    return run_band(job, ctx, out, map_fn=map_fn, buffer=buffer)


def run_band(job: BandJob, ctx: BandContext, out, *, map_fn=map, buffer: np.ndarray | None = None,
             writer: BlockWriter | None = None) -> dict:
    """:func:`process_band` with a prepared :class:`BandContext` (and optionally a shared
    :class:`BlockWriter`, flushed by its owner); ``qc`` of the result is the ``(frames,
    5)`` QC sums of the job's frames when ``ctx.qc`` is set."""
    H = ctx.source.dims[0]
    T = ctx.source.n_frames
    bw = job.c1 - job.c0
    t_stop = T if job.t1 is None else min(T, job.t1)
    win = min(job.window, T)
    if buffer is None:
        buffer = _scratch("buf", (win * bw * H,), np.float32)
    buf = buffer[:win * bw * H].reshape(win, bw * H)
    own = writer is None
    writer = writer or BlockWriter(out, T)
    parts = []
    try:
        for t0 in range(job.t0, t_stop, job.window):
            t1 = min(t_stop, t0 + job.window)
            blk = buf[:t1 - t0]

            def warp(r, blk=blk, t0=t0):
                return warp_block(job, ctx, blk[r[0] - t0:r[1] - t0], r[0])

            def write(j, blk=blk, t0=t0):
                writer.write(blk[:, j[0]:j[1]], job.c0 * H + j[0], t0, job.offset)

            parts += list(map_fn(warp, frame_blocks(t0, t1)))
            for _ in map_fn(write, row_blocks(bw * H, t1 - t0)):
                pass
    finally:
        if own:
            writer.flush()
    st = merge_stats(parts, job.t0, t_stop - job.t0)
    cnt = np.broadcast_to(np.asarray(st["cnt"], np.float64), (bw * H,))
    return {"c0": job.c0, "c1": job.c1, "t0": job.t0, "t1": t_stop, "sum": st["sum"].reshape(bw, H).T,
            "cnt": cnt.reshape(bw, H).T, "vmin": st["vmin"] + job.offset, "vmax": st["vmax"] + job.offset,
            "qc": st["qc"]}
