"""Stream a movie through motion correction into a CaImAn memmap.

Outputs in ``out_dir`` (see :func:`motion_correct`):

- ``{name}_d1_{H}_d2_{W}_d3_1_order_C_frames_{T}.mmap``: float32 ``(H*W, T)``, C order,
  Fortran pixel order (``Yr[:, t] == frame_t.ravel(order="F")``);
- ``shifts.csv`` (``frame,shift_y,shift_x``; rigid shifts, registration convention);
- ``shifts_pw.npz`` (piecewise-rigid only): ``shifts (T, gy, gx, 2)``, ``starts_y``,
  ``starts_x``, ``patch_size``, ``dims``;
- ``template.npy`` ``(H, W)`` float32;
- ``mean_images.npz``: ``mean_before``, ``mean_after`` ``(H, W)``, ``corr_before``,
  ``corr_after`` ``(T,)`` for the preview;
- ``motion.json``: parameters, offset, timing, frames/s, correlation summary.

Two passes, memory bounded by the frame size, never by ``T``, run by ``n_processes``
worker threads (:mod:`cellextract.motion.workers`; the heavy steps release the GIL):

1. registration — the threads read chunks of frames and measure the rigid (and patch)
   shifts, the QC correlation before correction, each raw frame's range and the raw mean
   image;
2. warp + write — the memmap is cut into bands of image columns (contiguous rows of the
   Fortran-ordered file, :mod:`cellextract.motion.bands`), done one after the other in
   one shared band buffer: the threads warp blocks of frames of the band from the raw
   columns read straight from the input file (:mod:`cellextract.motion.source`, served
   by the page cache pass 1 filled), then transpose blocks of its rows, which writer
   threads send to the file (its page-aligned middle with direct I/O,
   :mod:`cellextract.motion.output`) while the next band is warped. The QC correlation
   after correction is summed from the written values. Every byte of the memmap is
   written once; nothing else is written (inputs that cannot be read in place — AVI,
   compressed TIFF — are first copied raw to a scratch file during pass 1).

Non-negative output (as CaImAn): if the raw movie's minimum is negative, ``offset =
-min`` is added to every written value and recorded in ``motion.json`` (0 otherwise);
warped values are kept at or above their raw frame's minimum (bicubic undershoot), so the
written movie is never negative.
"""

from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellextract.errors import InputError
from cellextract.io.memmap import memmap_name
from cellextract.log import Progress, get_logger
from cellextract.motion.bands import (
    WINDOW_INPUT_BYTES,
    BandContext,
    BandJob,
    BlockWriter,
    plan_bands,
    run_band,
)
from cellextract.motion.buffers import populated, release_scratch
from cellextract.motion.correct import Corrector, pearson_from_sums
from cellextract.motion.output import RowWriter, direct_io_enabled
from cellextract.motion.params import MotionParams, check_params
from cellextract.motion.register_pass import make_template, register_all
from cellextract.motion.source import RawSource, raw_layout, scratch_layout
from cellextract.motion.threads import single_threaded
from cellextract.motion.workers import Workers, source_spec

log = get_logger(__name__)

SUB_BATCH_BYTES = 24 << 20  # frames registered together (FFT batch)
CHUNK_BYTES = 64 << 20  # frames per chunk (unit of work of a process)


@dataclass
class MotionResult:
    """What :func:`motion_correct` produced.

    Attributes
    ----------
    mmap_path : Path
        The CaImAn memmap.
    dims : (int, int)
        ``(H, W)``.
    n_frames : int
        ``T``.
    shifts : np.ndarray
        ``(T, 2)`` rigid shifts (pixels, registration convention).
    pw_shifts : np.ndarray or None
        ``(T, gy, gx, 2)`` patch shifts (piecewise-rigid).
    template : np.ndarray
        ``(H, W)`` template.
    offset : float
        Value added to the corrected movie to make it non-negative.
    elapsed : float
        Wall time in seconds (reading, registration, writing).
    fps : float
        Frames per second over the whole run.
    """

    mmap_path: Path
    dims: tuple[int, int]
    n_frames: int
    shifts: np.ndarray
    pw_shifts: np.ndarray | None
    template: np.ndarray
    offset: float
    elapsed: float
    fps: float


# ---------------------------------------------------------------- pass 2: warp + write (any process)

def _band_field(pw: np.ndarray, grid, H: int, W: int):
    """``field(t, c0, c1) -> (fy, fx)`` evaluating the patch-shift spline on a band
    (``t`` a frame: ``(H, bw)`` arrays; a slice of frames: ``(n, H, bw)``)."""
    from cellextract.motion.piecewise import _weights as field_weights
    wy = field_weights(grid.centers_y, H)  # (H, gy)
    wxT = np.ascontiguousarray(field_weights(grid.centers_x, W).T)  # (gx, W)

    def field(t: int, c0: int, c1: int):
        w = wxT[:, c0:c1]
        p = pw[t].astype(np.float32, copy=False)
        return np.matmul(wy, p[..., 0] @ w), np.matmul(wy, p[..., 1] @ w)
    return field


def _trim_heap() -> None:
    """Return freed heap memory to the OS (glibc keeps it otherwise, counted in the RSS)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- entry point

def motion_correct(reader, out_dir, name: str, *, motion_correct: bool = True, pw_rigid: bool = False,
                   gSig_filt=None, max_shifts=(5, 5), strides=(48, 48), overlaps=(24, 24),
                   max_deviation_rigid: int = 3, border_nan="copy", niter_rig: int = 1,
                   upsample_factor_grid: int = 4, n_processes: int = 1,
                   chunk_frames: int | None = None) -> MotionResult:
    """Motion-correct a movie (NoRMCorre) and write a CaImAn memmap plus shifts.

    Parameters
    ----------
    reader : reader, SeriesInfo, path or np.ndarray
        Anything with ``n_frames``, ``dims`` and ``read(start, stop) -> (n, H, W)``;
        a :class:`cellextract.io.SeriesInfo`, a movie path or a ``(T, H, W)`` array.
        Worker processes reopen series/paths themselves.
    out_dir : str or Path
        Output folder (created).
    name : str
        Base name of the memmap.
    motion_correct : bool
        False writes the memmap without registration.
    pw_rigid : bool
        Piecewise-rigid registration (after rigid).
    gSig_filt : float, pair or None
        High-pass filter width (pixels) used for registration only (1P data).
    max_shifts : int or (int, int)
        Largest rigid |shift| in pixels.
    strides, overlaps : int or (int, int)
        Patch step and extra overlap in pixels (patch size = strides + overlaps).
    max_deviation_rigid : int
        Largest |patch shift - rigid shift| in pixels.
    border_nan : {True, False, 'copy', 'min'}
        Fill of pixels moved in from outside the field of view.
    niter_rig : int
        Template refinement passes.
    upsample_factor_grid : int
        Accepted for CaImAn compatibility; the shift field is a cubic spline through the
        patch centres (the continuous limit of grid upsampling).
    n_processes : int
        Worker threads (CaImAn's name), each with its own reader.
    chunk_frames : int, optional
        Frames per chunk, the unit of work of a thread in the registration pass
        (default: about 64 MB of float32 frames, at most 1000).

    Returns
    -------
    MotionResult
    """
    with single_threaded():
        return _motion_correct(reader, out_dir, name, motion_correct=motion_correct, pw_rigid=pw_rigid,
                               gSig_filt=gSig_filt, max_shifts=max_shifts, strides=strides, overlaps=overlaps,
                               max_deviation_rigid=max_deviation_rigid, border_nan=border_nan,
                               niter_rig=niter_rig, upsample_factor_grid=upsample_factor_grid,
                               n_processes=n_processes, chunk_frames=chunk_frames)


def _motion_correct(reader, out_dir, name, **kw) -> MotionResult:
    t0 = time.perf_counter()
    spec, rd = source_spec(reader)
    T, dims = int(rd.n_frames), (int(rd.dims[0]), int(rd.dims[1]))
    if T < 1:
        raise InputError(f"motion_correct: movie has no frames ({spec[0]})")
    p = check_params(dims, **kw)
    H, W = dims
    P = H * W
    frame_bytes = 4 * P
    chunk = p.chunk_frames or int(np.clip(CHUNK_BYTES // frame_bytes, 16, 1000))
    chunk = min(chunk, T)
    # frames registered together; piecewise-rigid needs ~3x more work space per frame
    sub = max(1, min(chunk, SUB_BATCH_BYTES // frame_bytes // (3 if p.pw_rigid else 1)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = Path(memmap_name(out / name, dims, T))
    tmp = final.with_name(final.name + ".partial")
    scratch = final.with_name(final.name + ".raw.partial")
    ranges = [(s, min(T, s + chunk)) for s in range(0, T, chunk)]
    nthreads = p.n_processes
    if spec[0] == "object" and nthreads > 1:
        log.warning("reader %s cannot be reopened by worker threads; using 1 thread", type(rd).__name__)
        nthreads = 1
    layout = raw_layout(rd) if spec[0] != "array" else None
    use_scratch = spec[0] != "array" and layout is None
    if use_scratch:
        layout = scratch_layout(os.fspath(scratch), dims, T)
    try:
        log.info("motion correction of %d frames of %dx%d px (%s, %d thread(s), chunks of %d%s)",
                 T, H, W, "piecewise-rigid" if p.pw_rigid else "rigid" if p.motion_correct else "copy only",
                 nthreads, chunk, ", raw frames copied to a scratch file" if use_scratch else "")
        with Workers(nthreads, spec, rd) as workers:
            template = make_template(workers, rd, p, sub)
            _trim_heap()  # the template's sample frames
            np.save(out / "template.npy", template)
            t_template = time.perf_counter() - t0
            _preallocate(tmp, P * T * 4)
            if use_scratch:
                _preallocate(scratch, P * T * 4)
            r1 = register_all(workers, p, template, ranges, sub, os.fspath(scratch) if use_scratch else None)
            _trim_heap()  # the registration engines' work arrays, before the band buffers
            t1 = time.perf_counter()
            gmin = np.nanmin(r1["fmin"]) if np.isfinite(r1["fmin"]).any() else np.nan
            offset = float(-gmin) if np.isfinite(gmin) and gmin < 0 else 0.0
            if offset > 0:
                log.info("raw movie minimum %.4g < 0: adding offset %.4g", gmin, offset)
            r2 = _warp_all(workers, rd, p, r1, dims, T, offset, layout, os.fspath(tmp),
                           Corrector(template, p).qc_grid())
        t_write = time.perf_counter() - t1
        log.info("registered in %.1f s, memmap written in %.1f s", t1 - t0 - t_template, t_write)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        scratch.unlink(missing_ok=True)
        if rd is not reader and hasattr(rd, "close"):  # a reader we opened ourselves
            rd.close()
    os.replace(tmp, final)
    elapsed = time.perf_counter() - t0
    results = {**r1, **r2}
    res = _write_outputs(out, final, p, dims, T, template, results, offset, elapsed,
                         {"template_s": t_template, "register_s": t1 - t0 - t_template, "warp_write_s": t_write},
                         nthreads, chunk)
    log.info("motion correction done: %d frames in %.1f s (%.1f frames/s) -> %s", T, elapsed, T / elapsed, final)
    return res


def _preallocate(path: Path, nbytes: int) -> None:
    """Create ``path`` with ``nbytes`` reserved on disk.

    ``posix_fallocate`` reserves the blocks up front (unwritten extents), so the later
    writes skip the filesystem's per-page delayed allocation (2-3x faster sequential
    writes on ext4) and a full disk fails here, before any work, not mid-run.
    Filesystems without fallocate support get a sparse file.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise InputError(f"cannot reserve {nbytes / 1e9:.2f} GB for {path}: {e.strerror}") from e
            os.ftruncate(fd, nbytes)
    finally:
        os.close(fd)


def _warp_all(workers: Workers, rd, p: MotionParams, r1: dict, dims, T: int, offset: float, layout,
              out_path: str, qc) -> dict:
    """Pass 2: warp and write every column band, one band at a time shared by the
    workers (one band buffer in all); return the registered mean's sums and range."""
    H, W = dims
    pw = r1["pw"]
    moved = np.abs(pw if pw is not None else r1["shifts"])
    margin = int(np.ceil(float(moved.max()) if moved.size else 0.0)) + 3
    source = RawSource(layout if layout is not None else rd.movie)
    raw_bytes = H * W * source.dtype.itemsize
    plan = plan_bands(dims, T, max_window=max(1, WINDOW_INPUT_BYTES // raw_bytes))
    # window-major: all bands of one window of frames before the next window
    jobs = [BandJob(c0, c1, plan.window, margin, p.border_nan, offset, t0=w0, t1=min(T, w0 + plan.window))
            for w0 in range(0, T, plan.window) for c0, c1 in plan.bands]
    field = None
    if pw is not None:
        from cellextract.motion.piecewise import patch_grid
        field = _band_field(pw, patch_grid((H, W), strides=p.strides, overlaps=p.overlaps), H, W)
    ctx = BandContext(source, r1["shifts"], r1["fmin"], r1["fnan"], field, qc=qc)
    log.info("writing the memmap in %d band(s) of ~%d columns, %d frame(s) at a time (%d job(s))",
             len(plan.bands), W // max(1, len(plan.bands)), plan.window, len(jobs))
    prog = Progress(len(jobs), "band jobs", log)
    sum_a = np.zeros((H, W))
    cnt_a = np.zeros((H, W))
    qc_sums = np.zeros((T, 5))
    vmin, vmax = np.inf, -np.inf
    widest = max(c1 - c0 for c0, c1 in plan.bands)
    # first touched by the first band's workers in parallel (not pre-faulted by this thread)
    buffer = populated(min(plan.window, T) * widest * H, np.float32, populate=False)
    with RowWriter(out_path, direct=plan.window >= T and direct_io_enabled()) as out:
        writer = BlockWriter(out, T, n_writers=workers.n)
        try:
            for job in jobs:
                r = run_band(job, ctx, out, map_fn=workers.map, buffer=buffer, writer=writer)
                sum_a[:, r["c0"]:r["c1"]] += r["sum"]
                cnt_a[:, r["c0"]:r["c1"]] += r["cnt"]
                if r["qc"] is not None:
                    qc_sums[r["t0"]:r["t1"]] += r["qc"]
                vmin, vmax = min(vmin, r["vmin"]), max(vmax, r["vmax"])
                prog.update(1, "warping + writing")
        finally:
            writer.flush()
    del buffer
    release_scratch()  # this thread's buffers (n == 1); worker threads free theirs when they end
    return {"sum_a": sum_a, "cnt_a": cnt_a, "vmin": vmin - offset, "vmax": vmax - offset,
            "corr_after": pearson_from_sums(qc_sums)}


def _write_outputs(out: Path, final: Path, p: MotionParams, dims, T: int, template, results: dict, offset: float,
                   elapsed: float, phases: dict, nproc: int, chunk: int) -> MotionResult:
    shifts, corr_b, corr_a = results["shifts"], results["corr_before"], results["corr_after"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_b = (results["sum_b"] / results["cnt_b"]).astype(np.float32)
        mean_a = (results["sum_a"] / results["cnt_a"]).astype(np.float32)
    mean_a = mean_a + np.float32(offset)
    frames = np.arange(T)
    np.savetxt(out / "shifts.csv", np.column_stack([frames, shifts]), delimiter=",",
               header="frame,shift_y,shift_x", comments="", fmt=["%d", "%.4f", "%.4f"])
    pw = None
    files = {"memmap": final.name, "shifts": "shifts.csv", "template": "template.npy",
             "mean_images": "mean_images.npz"}
    if p.pw_rigid and p.motion_correct:
        from cellextract.motion.piecewise import patch_grid
        grid = patch_grid(dims, strides=p.strides, overlaps=p.overlaps)
        pw = results["pw"]
        np.savez(out / "shifts_pw.npz", shifts=pw, starts_y=grid.starts_y, starts_x=grid.starts_x,
                 patch_size=np.array(grid.size), dims=np.array(dims))
        files["shifts_pw"] = "shifts_pw.npz"
    np.savez(out / "mean_images.npz", mean_before=mean_b, mean_after=mean_a, corr_before=corr_b,
             corr_after=corr_a)
    info = {
        "memmap": final.name, "dims": list(dims), "n_frames": T, "offset": offset,
        "params": p.to_dict(),
        "timing": {"elapsed_s": elapsed, **phases, "frames_per_s": T / elapsed,
                   "n_processes": nproc, "chunk_frames": chunk},
        "shifts": {"max_abs_y": float(np.abs(shifts[:, 0]).max()), "max_abs_x": float(np.abs(shifts[:, 1]).max()),
                   "rms": float(np.sqrt(np.mean(shifts.astype(np.float64) ** 2)))},
        "correlation": {"mean_before": _nanmean(corr_b), "mean_after": _nanmean(corr_a),
                        "per_frame_before": _jsonable(corr_b), "per_frame_after": _jsonable(corr_a)},
        "value_range": [results["vmin"] + offset, results["vmax"] + offset],
        "files": files,
    }
    (out / "motion.json").write_text(json.dumps(info, indent=1))
    return MotionResult(final, tuple(dims), T, shifts, pw, template, offset, elapsed, T / elapsed)


def _nanmean(x: np.ndarray) -> float | None:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else None


def _jsonable(x: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 5) for v in x]


def load_motion_summary(motion_dir) -> dict:
    """Everything :func:`cellextract.previews.motion.plot_motion` needs from a motion folder.

    Returns
    -------
    dict
        ``shifts (T, 2)``, ``mean_before``, ``mean_after`` ``(H, W)``, ``corr_before``,
        ``corr_after`` ``(T,)`` and ``info`` (the parsed ``motion.json``).
    """
    d = Path(motion_dir)
    info = json.loads((d / "motion.json").read_text())
    sh = np.loadtxt(d / "shifts.csv", delimiter=",", skiprows=1, ndmin=2)
    with np.load(d / "mean_images.npz") as z:
        out = {k: z[k] for k in z.files}
    out["shifts"] = sh[:, 1:3]
    out["info"] = info
    return out
