"""Benchmark motion correction on simulated movies against ground truth.

Simulates 1P (uint16 isxd) and 2P (float32 tif) movies with rigid or piecewise-rigid
motion using :mod:`cellextract.simulate`, runs :func:`cellextract.motion.run.motion_correct`
from the file (reading, registration and writing the memmap are all timed), and reports
shift RMSE vs truth (Euclidean, after removing the constant offset, as
:func:`cellextract.simulate.shift_rmse`), frames/s, the CPU time (user + system) of the motion
process and its workers per frame (whole run: start-up, template, correction, memmap; the
robust number on a shared machine) and the peak RSS of the process tree (main + workers,
sampled every 50 ms). Results are appended as a markdown table to
``bench/RESULTS_motion.md`` with the command used.

Examples::

    python bench/bench_motion.py --quick                       # small smoke run
    python bench/bench_motion.py --sizes 256 512 --frames 3000 # accuracy + speed
    python bench/bench_motion.py --sizes 512 --frames 30000 --kinds 1p --motions rigid  # memory
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from cellextract.io import open_movie
from cellextract.motion.piecewise import shift_field
from cellextract.motion.run import motion_correct
from cellextract.simulate import field_at, load_truth, shift_rmse, write_simulation

RESULTS = Path(__file__).with_name("RESULTS_motion.md")


class RssSampler:
    """Peak summed RSS of a process (default: this one) and its children (bytes)."""

    def __init__(self, pid: int | None = None, every: float = 0.05):
        self.pid = pid
        self.every = every
        self.peak = 0
        self.peak_single = 0
        self.peak_anon = 0  # RSS minus file-backed/shared pages (e.g. a memory-mapped input tif)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            me = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total, single, anon = 0, 0, 0
            try:
                procs = [me] + me.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    mi = p.memory_info()
                except psutil.Error:
                    continue
                total += mi.rss
                anon += mi.rss - getattr(mi, "shared", 0)
                single = max(single, mi.rss)
            self.peak = max(self.peak, total)
            self.peak_anon = max(self.peak_anon, anon)
            self.peak_single = max(self.peak_single, single)
            time.sleep(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def field_error(res, truth, dims, margin: int) -> tuple[float, float]:
    """RMS Euclidean error (px) of the dense field vs truth on a 12x12 interior grid.

    Returns the error with the global constant offset removed and with a static offset
    per grid point removed. The second is the meaningful one: the template is the
    average of deformed frames, so its own (time-averaged) deformation is a static field
    that no template-based registration can know; only deviations from it are measured.
    """
    z = np.load(Path(res.mmap_path).parent / "shifts_pw.npz")
    from cellextract.motion.piecewise import PatchGrid
    grid = PatchGrid(z["starts_y"], z["starts_x"], tuple(int(v) for v in z["patch_size"]), tuple(dims))
    H, W = dims
    ys = np.linspace(margin, H - 1 - margin, 12).round().astype(int)
    xs = np.linspace(margin, W - 1 - margin, 12).round().astype(int)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    true = field_at(truth.shift_field, dims, yy.ravel(), xx.ravel())  # (T, 2, n)
    est = np.empty_like(true)
    T = true.shape[0]
    for a in range(0, T, 256):
        fy, fx = shift_field(z["shifts"][a:a + 256], grid)
        est[a:a + 256, 0] = fy[:, yy.ravel(), xx.ravel()]
        est[a:a + 256, 1] = fx[:, yy.ravel(), xx.ravel()]
    e = est.astype(np.float64) - true
    e -= e.mean(axis=0, keepdims=True)
    return shift_rmse(est, true), float(np.sqrt(np.mean((e ** 2).sum(axis=1))))


def _motion_child(movie: str, out: str, kw: dict, q) -> None:
    try:
        with open_movie(movie) as rd:
            q.put(motion_correct(rd, out, "bench", **kw))
    except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
        q.put(exc)


def run_case(workdir: Path, *, kind: str, size: int, frames: int, motion: str, n_processes: int,
             max_shift: float, seed: int, keep: bool = False) -> dict:
    ext, dtype = (".isxd", np.uint16) if kind == "1p" else (".tif", np.float32)
    movie = workdir / f"sim_{kind}_{size}_{frames}_{motion}_s{seed}{ext}"
    t0 = time.perf_counter()
    if not (keep and movie.exists() and movie.with_name(f"{movie.stem}_truth.h5").exists()):
        write_simulation(movie, kind=kind, dims=(size, size), frames=frames, motion=motion,
                         max_shift=max_shift, seed=seed, dtype=dtype, n_neurons=max(20, size * size // 450))
    t_sim = time.perf_counter() - t0
    truth = load_truth(movie.with_name(f"{movie.stem}_truth.h5"))
    out = workdir / f"out_{kind}_{size}_{motion}"
    kw = {"pw_rigid": motion == "pw_rigid", "gSig_filt": (3, 3) if kind == "1p" else None,
              "max_shifts": (int(np.ceil(max_shift)) + 1,) * 2, "n_processes": n_processes,
              "strides": (48, 48), "overlaps": (24, 24), "max_deviation_rigid": 3, "border_nan": "copy"}
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_motion_child, args=(str(movie), str(out), kw, q))
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p.start()
    with RssSampler(p.pid) as rss:  # the motion process and its workers only
        res = q.get()
        p.join()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the motion process + its reaped workers
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if isinstance(res, BaseException):
        raise res
    row = {"kind": kind, "size": size, "frames": frames, "motion": motion, "n_processes": n_processes,
               "fps": res.fps, "elapsed": res.elapsed, "rss_tree_mb": rss.peak / 2 ** 20,
               "rss_max_proc_mb": rss.peak_single / 2 ** 20, "rss_anon_tree_mb": rss.peak_anon / 2 ** 20, "sim_s": t_sim,
           "cpu_s": cpu_s, "cpu_ms_per_frame": 1e3 * cpu_s / frames}
    if motion == "pw_rigid":
        row["rigid_rmse"] = shift_rmse(res.shifts, truth.shifts)
        row["field_rmse_global"], row["field_rmse"] = field_error(res, truth, (size, size), margin=24)
    else:
        row["rigid_rmse"] = shift_rmse(res.shifts, truth.shifts)
        row["field_rmse"] = row["field_rmse_global"] = float("nan")
    for p in out.glob("*.mmap"):
        p.unlink()
    if not keep:
        movie.unlink(missing_ok=True)
    return row


def append_results(rows: list[dict], command: str) -> None:
    import platform
    head = ("| kind | size | frames | motion | procs | rigid RMSE (px) | field RMSE (px) | field RMSE global (px) "
            "| frames/s | elapsed (s) | CPU ms/frame | peak RSS tree (MB) | peak RSS 1 proc (MB) | peak anon RSS tree (MB) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [(f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — {platform.node()}, "
             f"{psutil.cpu_count()} CPUs, load {psutil.getloadavg()[0]:.1f}\n"), f"\n`{command}`\n\n", head]
    for r in rows:
        fe = "" if np.isnan(r["field_rmse"]) else f"{r['field_rmse']:.3f}"
        fg = "" if np.isnan(r["field_rmse_global"]) else f"{r['field_rmse_global']:.3f}"
        lines.append(f"| {r['kind']} | {r['size']} | {r['frames']} | {r['motion']} | {r['n_processes']} | "
                     f"{r['rigid_rmse']:.3f} | {fe} | {fg} | {r['fps']:.0f} | {r['elapsed']:.1f} | {r['cpu_ms_per_frame']:.1f} | "
                     f"{r['rss_tree_mb']:.0f} | {r['rss_max_proc_mb']:.0f} | {r['rss_anon_tree_mb']:.0f} |\n")
    new = not RESULTS.exists()
    with open(RESULTS, "a") as fh:
        if new:
            fh.write("# Motion-correction benchmark (bench/bench_motion.py)\n\nRMSE: Euclidean, constant "
                     "offset removed. Field RMSE: dense field on a 12x12 interior grid (24 px margin), static "
                     "offset per grid point removed (the template's own average deformation); 'global': "
                     "only one constant offset removed. RSS: main + worker processes (motion step run in "
                     "a fresh process); 'anon' excludes file-backed pages (the tif reader memory-maps its input, "
                     "whose resident pages count in RSS but are reclaimable page cache). "
                     "Throughput includes reading the input file and writing the memmap.\n")
        fh.writelines(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["1p", "2p"], choices=["1p", "2p"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--motions", nargs="+", default=["rigid", "pw_rigid"], choices=["rigid", "pw_rigid"])
    ap.add_argument("--n-processes", type=int, default=2)
    ap.add_argument("--max-shift", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--quick", action="store_true", help="128x128x300, 1P+2P, rigid+pw (smoke test)")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS_motion.md")
    ap.add_argument("--keep-movies", action="store_true",
                    help="keep the simulated movies in --workdir and reuse them (same name = same parameters)")
    a = ap.parse_args(argv)
    if a.quick:
        a.sizes, a.frames = [128], 300
    rows = []
    if a.keep_movies and not a.workdir:
        ap.error("--keep-movies needs --workdir")
    with (contextlib.nullcontext(a.workdir) if a.keep_movies else tempfile.TemporaryDirectory(dir=a.workdir)) as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for size in a.sizes:
            for kind in a.kinds:
                for motion in a.motions:
                    r = run_case(Path(tmp), kind=kind, size=size, frames=a.frames, motion=motion,
                                 n_processes=a.n_processes, max_shift=a.max_shift, seed=a.seed,
                                 keep=a.keep_movies)
                    rows.append(r)
                    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()),
                          flush=True)
    if not a.no_record:
        append_results(rows, "python " + " ".join(shlex.quote(x) for x in [sys.argv[0]] + (argv or sys.argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
