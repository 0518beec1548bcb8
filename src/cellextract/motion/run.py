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

Memory: frames are processed in chunks of ``chunk_frames`` (registered in sub-batches);
corrected frames go to a frame-major scratch file next to the output, which
:mod:`cellextract.motion.transpose` then turns into the pixel-major memmap tile by tile.
Resident memory depends on the frame size, never on ``T``; the scratch file needs as
much free disk as the memmap while the run lasts.

Non-negative output (as CaImAn): the minimum of the corrected movie is tracked per chunk
while registering (NaN ignored); if it is negative, ``offset = -min`` is added to every
value while the scratch file is transposed (no extra pass), and the offset (0 otherwise)
is recorded in ``motion.json``. The movie is never held in memory for this.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cellextract.errors import InputError
from cellextract.io.memmap import memmap_name
from cellextract.log import Progress, get_logger
from cellextract.motion.correct import Corrector
from cellextract.motion.params import MotionParams, check_params
from cellextract.motion.template import read_samples, rigid_template
from cellextract.motion.threads import single_threaded
from cellextract.motion.transpose import transpose_to_memmap, write_frames

log = get_logger(__name__)

N_TEMPLATE_FRAMES = 200
TEMPLATE_BYTES = 80 << 20  # at most this much of sample frames (80 frames at 512 x 512)
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


class ArrayReader:
    """Reader over an in-memory movie ``(T, H, W)`` (tests, small data)."""

    def __init__(self, movie: np.ndarray):
        self.movie = np.asarray(movie)
        self.n_frames = int(self.movie.shape[0])
        self.dims = (int(self.movie.shape[1]), int(self.movie.shape[2]))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as float32."""
        return np.asarray(self.movie[start:stop], dtype=np.float32)


def _source_spec(src):
    """A picklable recipe to reopen ``src`` in a worker, and a reader for this process."""
    if isinstance(src, np.ndarray):
        return ("array", src), ArrayReader(src)
    if isinstance(src, (str, os.PathLike)):
        from cellextract.io import open_movie
        return ("path", os.fspath(src)), open_movie(src)
    if hasattr(src, "files") and hasattr(src, "to_json"):  # SeriesInfo
        from cellextract.io import open_series
        return ("series", src), open_series(src)
    if not (hasattr(src, "read") and hasattr(src, "n_frames") and hasattr(src, "dims")):
        raise InputError(f"motion_correct: cannot read frames from {type(src).__name__}")
    if hasattr(src, "info") and hasattr(src.info, "to_json"):  # SeriesReader
        return ("series", src.info), src
    if isinstance(src, ArrayReader):
        return ("array", src.movie), src
    if hasattr(src, "path") and hasattr(src, "metadata"):  # MovieReader
        return ("path", os.fspath(src.path)), src
    return ("object", src), src


def _open_spec(spec):
    kind, obj = spec
    if kind == "array":
        return ArrayReader(obj)
    if kind == "path":
        from cellextract.io import open_movie
        return open_movie(obj)
    if kind == "series":
        from cellextract.io import open_series
        return open_series(obj)
    return obj


# ---------------------------------------------------------------- per-chunk work (any process)

def _process_chunk(reader, corrector: Corrector, path: str, T: int, start: int, stop: int, sub: int) -> dict:
    H, W = corrector.dims
    fd = os.open(path, os.O_WRONLY)
    sum_b = np.zeros((H, W))
    sum_a = np.zeros((H, W))
    cnt_b = np.zeros((H, W))
    cnt_a = np.zeros((H, W))
    shifts, pws, cb, ca = [], [], [], []
    vmin, vmax = np.inf, -np.inf
    ftbuf = None
    for s0 in range(start, stop, sub):
        s1 = min(stop, s0 + sub)
        raw = np.asarray(reader.read(s0, s1), dtype=np.float32)
        if raw.shape != (s1 - s0, H, W):
            raise InputError(f"reader returned frames of shape {raw.shape} for {s0}:{s1}, expected {(s1 - s0, H, W)}")
        res = corrector.correct(raw)
        for img, acc, cnt in ((raw, sum_b, cnt_b), (res.frames, sum_a, cnt_a)):
            tot = img.sum(axis=0, dtype=np.float64)
            if np.isfinite(tot).all():  # no NaN/inf anywhere (they propagate into the sum)
                acc += tot
                cnt += img.shape[0]
            else:
                fin = np.isfinite(img)
                acc += np.where(fin, img, 0).sum(axis=0, dtype=np.float64)
                cnt += fin.sum(axis=0)
        lo, hi = float(res.frames.min()), float(res.frames.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) and np.isfinite(res.frames).any():
            lo, hi = float(np.nanmin(res.frames)), float(np.nanmax(res.frames))
        if np.isfinite(lo):
            vmin, vmax = min(vmin, lo), max(vmax, hi)
        n = s1 - s0
        if ftbuf is None or ftbuf.shape[0] < n:
            ftbuf = np.empty((n, W, H), np.float32)
        ft = ftbuf[:n]  # Fortran pixel order
        for i in range(n):
            cv2.transpose(res.frames[i], dst=ft[i])
        write_frames(fd, ft.reshape(s1 - s0, H * W), s0)
        shifts.append(res.shifts)
        cb.append(res.corr_before)
        ca.append(res.corr_after)
        if res.pw_shifts is not None:
            pws.append(res.pw_shifts)
    os.close(fd)
    return {"start": start, "stop": stop, "shifts": np.concatenate(shifts),
            "pw": np.concatenate(pws) if pws else None,
            "corr_before": np.concatenate(cb), "corr_after": np.concatenate(ca), "sum_b": sum_b, "sum_a": sum_a,
            "cnt_b": cnt_b, "cnt_a": cnt_a, "vmin": vmin, "vmax": vmax}


_W: dict = {}


def _worker_init(spec, params: dict, template_path: str, path: str, T: int, sub: int) -> None:
    import cv2
    cv2.setNumThreads(1)
    _W.update(spec=spec, params=params, template_path=template_path, path=path, T=T, sub=sub)


def _worker_template(_=None) -> np.ndarray:
    """Compute the template in a worker (keeps the parent process small)."""
    if "reader" not in _W:
        _W["reader"] = _open_spec(_W["spec"])
    return _template(_W["reader"], MotionParams(**_W["params"]), _W["sub"])


def _worker_chunk(rng: tuple[int, int]) -> dict:
    if "reader" not in _W:
        _W["reader"] = _open_spec(_W["spec"])
    if "corrector" not in _W:
        _W["corrector"] = Corrector(np.load(_W["template_path"]), MotionParams(**_W["params"]))
    return _process_chunk(_W["reader"], _W["corrector"], _W["path"], _W["T"], rng[0], rng[1], _W["sub"])


def _start_pool(n: int, initargs: tuple):
    """Spawn ``n`` single-threaded workers.

    'spawn' (not 'fork': the parent may hold BLAS/OpenCV thread pools) normally re-runs
    the parent's ``__main__`` file in each child; Snakemake ``script:`` files and plain
    scripts have no ``if __name__ == "__main__"`` guard, so ``__main__`` is hidden while
    the children start — the workers only need importable ``cellextract`` code.
    """
    import sys
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    main = sys.modules.get("__main__")
    hidden = {a: getattr(main, a) for a in ("__file__", "__spec__") if hasattr(main, a)}
    try:
        for a in hidden:
            if a == "__spec__":
                main.__spec__ = None
            else:
                delattr(main, a)
        return mp.get_context("spawn").Pool(n, initializer=_worker_init, initargs=initargs)
    finally:
        for a, v in hidden.items():
            setattr(main, a, v)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        Worker processes, each reading and correcting its own chunks.
    chunk_frames : int, optional
        Frames per chunk, the unit of work of a process (default: about 64 MB of float32
        frames, at most 1000). An in-memory array given with ``n_processes > 1`` is
        copied to every worker (meant for tests and small data).

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
    spec, rd = _source_spec(reader)
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
    scratch = final.with_name(final.name + ".frames.partial")
    ranges = [(s, min(T, s + chunk)) for s in range(0, T, chunk)]
    nproc = min(p.n_processes, len(ranges))
    if spec[0] == "object" and nproc > 1:
        log.warning("reader %s cannot be reopened in worker processes; using 1 process", type(rd).__name__)
        nproc = 1
    template_path = out / "template.npy"
    pool = None
    if nproc > 1:  # workers also compute the template, so the parent stays small
        pool = _start_pool(nproc, (spec, _tuple_fix(p), os.fspath(template_path),
                                   os.fspath(scratch), T, sub))
    try:
        log.info("motion correction of %d frames of %dx%d px (%s, %d process(es), chunks of %d)",
                 T, H, W, "piecewise-rigid" if p.pw_rigid else "rigid" if p.motion_correct else "copy only",
                 nproc, chunk)
        template = _template(rd, p, sub) if pool is None else pool.apply(_worker_template, (None,))
        np.save(template_path, template)
        t_template = time.perf_counter() - t0
        for f in (scratch, tmp):
            with open(f, "wb") as fh:
                fh.truncate(P * T * 4)
        results = _run_chunks(rd, p, template, scratch, T, ranges, sub, pool)
        vmin = results["vmin"]
        offset = float(-vmin) if np.isfinite(vmin) and vmin < 0 else 0.0
        if offset > 0:
            log.info("corrected movie minimum %.4g < 0: adding offset %.4g", vmin, offset)
        t1 = time.perf_counter()
        _transpose(scratch, tmp, P, T, offset, pool)
        t_transpose = time.perf_counter() - t1
        log.info("memmap written in %.1f s", t_transpose)
    except BaseException:
        if pool is not None:
            pool.terminate()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        scratch.unlink(missing_ok=True)
        if pool is not None:
            pool.close()
            pool.join()
        if rd is not reader and hasattr(rd, "close"):  # a reader we opened ourselves
            rd.close()
    os.replace(tmp, final)
    elapsed = time.perf_counter() - t0
    res = _write_outputs(out, final, p, dims, T, template, results, offset, elapsed,
                         {"template_s": t_template, "memmap_transpose_s": t_transpose}, nproc, chunk)
    log.info("motion correction done: %d frames in %.1f s (%.1f frames/s) -> %s", T, elapsed, T / elapsed, final)
    return res


def _tuple_fix(p: MotionParams) -> dict:
    """Parameters as tuples again (for ``MotionParams(**d)`` in workers)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in p.to_dict().items()}


def _template(rd, p: MotionParams, batch: int = 32) -> np.ndarray:
    H, W = rd.dims
    samples = read_samples(rd, max(50, min(N_TEMPLATE_FRAMES, TEMPLATE_BYTES // (4 * H * W))))
    finite = np.isfinite(samples).reshape(samples.shape[0], -1).all(axis=1)
    if finite.any() and not finite.all():
        samples = samples[finite]
    if not p.motion_correct:
        return np.nan_to_num(np.nanmean(samples, axis=0)).astype(np.float32)
    template, _ = rigid_template(samples, max_shifts=p.max_shifts, gSig_filt=p.gSig_filt, niter_rig=p.niter_rig)
    if p.pw_rigid:  # one piecewise-rigid refinement of the template
        c = Corrector(template, MotionParams(**(_tuple_fix(p) | {"border_nan": "copy"})))
        acc = np.zeros(template.shape)
        for i in range(0, samples.shape[0], batch):
            acc += c.correct(samples[i:i + batch]).frames.sum(axis=0, dtype=np.float64)
        template = (acc / samples.shape[0]).astype(np.float32)
    return template


def _transpose_part(args) -> None:
    transpose_to_memmap(*args[:4], offset=args[4], p_range=args[5])


def _transpose(scratch: Path, out: Path, P: int, T: int, offset: float, pool) -> None:
    """Scratch ``(T, P)`` -> memmap ``(P, T)``, split over the pool's workers by pixel bands."""
    if pool is None:
        transpose_to_memmap(os.fspath(scratch), os.fspath(out), P, T, offset=offset)
        return
    n = pool._processes
    edges = np.linspace(0, P, 2 * n + 1).astype(int)
    parts = [(os.fspath(scratch), os.fspath(out), P, T, offset, (int(a), int(b)))
             for a, b in itertools.pairwise(edges) if b > a]
    for _ in pool.imap_unordered(_transpose_part, parts):
        pass


def _run_chunks(rd, p: MotionParams, template, tmp: Path, T: int, ranges, sub: int, pool) -> dict:
    """Process all chunks; return per-frame arrays and running sums (memory independent of T)."""
    prog = Progress(T, "frames", log)
    if pool is None:
        corrector = Corrector(template, p)
        it = (_process_chunk(rd, corrector, os.fspath(tmp), T, a, b, sub) for a, b in ranges)
    else:
        it = pool.imap(_worker_chunk, ranges)
    acc: dict = {"shifts": [], "pw": [], "corr_before": [], "corr_after": [], "vmin": np.inf, "vmax": -np.inf}
    for r in it:
        for k in ("sum_b", "sum_a", "cnt_b", "cnt_a"):
            if k in acc:
                acc[k] += r[k]
            else:
                acc[k] = r[k].copy()
        for k in ("shifts", "corr_before", "corr_after"):
            acc[k].append(r[k])
        if r["pw"] is not None:
            acc["pw"].append(r["pw"])
        acc["vmin"] = min(acc["vmin"], r["vmin"])
        acc["vmax"] = max(acc["vmax"], r["vmax"])
        prog.update(r["stop"] - r["start"])
    return acc


def _write_outputs(out: Path, final: Path, p: MotionParams, dims, T: int, template, results: dict, offset: float,
                   elapsed: float, phases: dict, nproc: int, chunk: int) -> MotionResult:
    shifts = np.concatenate(results["shifts"])
    corr_b = np.concatenate(results["corr_before"])
    corr_a = np.concatenate(results["corr_after"])
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
        pw = np.concatenate(results["pw"])
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
