"""Benchmark 2P CNMF: simulate a 2P movie, write a memmap, fit (greedy_roi / sparse_nmf,
low-rank background), evaluate (SNR, r-values, CNN), score against the truth.

Fit and evaluation run in a spawned child process so the simulation's memory does not
count; the child reports wall time, CPU time (self + patch workers) and peak RSS of the
fit and of the evaluation. A markdown row is appended to ``bench/RESULTS_cnmf2p.md``.

Parameters come from ``resolve_params(preset='2p', table=...)`` with the bench's choices
(gSig, K, rf, stride, ...) in the table.

With ``--motion rigid|pw_rigid --correct`` the bench runs the way a user runs the pipeline:
the simulated movie is written as a float32 tif (plus its truth HDF5), motion-corrected
from the file by :func:`cellextract.motion.run.motion_correct` with the motion group of the
2P parameter file (``--motion-params``, default ``config/params/2p.json``: pw-rigid,
max_shifts 6, strides 50, overlaps 24, max_deviation_rigid 3), in a spawned child (wall,
CPU of it and its workers, peak RSS), and the corrected memmap is fitted. The found
footprints live in the template's frame, which is offset from the simulator's unmoved
frame; scoring translates each found footprint by the template offset at its centroid,
``median_t(true field - estimated field)`` (:func:`cellextract.simulate.score.template_offset`,
sub-pixel), before matching. The note column records the motion numbers and offsets.

Usage::

    .venv/bin/python bench/bench_cnmf2p.py --preset bench_2p            # full size
    .venv/bin/python bench/bench_cnmf2p.py --dims 96 96 --frames 1000 --neurons 20
    .venv/bin/python bench/bench_cnmf2p.py --preset bench_2p --workdir /tmp/b2p   # keep / reuse the memmap
    .venv/bin/python bench/bench_cnmf2p.py --preset bench_2p --workdir /tmp/b2p \
        --K 6 --param merge_thr=0.85 --motion pw_rigid --correct     # simulate, motion-correct, fit
"""

from __future__ import annotations

import argparse
import ast
import json
import multiprocessing as mp
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_movie(sim, path, dims, T):
    from cellextract.io.memmap import MemmapWriter
    with MemmapWriter(path, dims, T) as w:
        for start, frames in sim.iter_chunks(500):
            w.write(start, frames)
    return path


def motion_kwargs(params_file) -> dict:
    """Keywords of ``motion_correct`` from the motion group of a 2P parameter file."""
    from cellextract.params import resolve_params
    m = resolve_params(preset="2p", params_file=params_file, overwrite_params=True).motion
    return dict(motion_correct=True, pw_rigid=bool(m.pw_rigid), gSig_filt=m.gSig_filt,
                max_shifts=tuple(m.max_shifts), strides=tuple(m.strides),
                overlaps=tuple(m.overlaps), max_deviation_rigid=int(m.max_deviation_rigid),
                border_nan=m.border_nan, niter_rig=int(m.niter_rig),
                upsample_factor_grid=int(m.upsample_factor_grid))


def _motion_child(movie, out_dir, kw, n_processes, q):
    from cellextract.log import setup_logging
    from cellextract.motion.run import motion_correct
    setup_logging(None)
    t0, c0 = time.perf_counter(), _cpu()
    res = motion_correct(movie, out_dir, "bench", n_processes=n_processes, **kw)
    q.put(dict(mmap=str(res.mmap_path), motion_s=time.perf_counter() - t0, motion_cpu=_cpu() - c0,
               motion_rss_mb=_peak_rss_mb(),
               motion_worker_rss_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))


def correct_movie(movie: Path, out_dir: Path, kw: dict, n_processes: int) -> dict:
    """Motion-correct ``movie`` into ``out_dir`` in a spawned child (reused if done)."""
    stats = out_dir / "bench_motion.json"
    if stats.exists():
        return json.loads(stats.read_text())
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_motion_child, args=(str(movie), str(out_dir), kw, n_processes, q))
    p.start()
    res = q.get()
    p.join()
    stats.write_text(json.dumps(res))
    return res


def estimated_shifts_at(motion_dir: Path, ys, xs, T: int) -> np.ndarray:
    """Registration shifts the motion step applied at pixels ``(ys, xs)``.

    Returns
    -------
    ndarray, shape (T, 2, n), px: the pw-rigid field (``shifts_pw.npz``) at the given
    (rounded) pixels, or the rigid shifts (``shifts.csv``) for rigid correction.
    """
    ys = np.clip(np.rint(ys).astype(int), 0, None)
    xs = np.clip(np.rint(xs).astype(int), 0, None)
    f = motion_dir / "shifts_pw.npz"
    if not f.exists():
        sh = np.loadtxt(motion_dir / "shifts.csv", delimiter=",", skiprows=1)[:, 1:3]
        return np.repeat(sh[:, :, None], ys.size, axis=2)
    from cellextract.motion.piecewise import PatchGrid, shift_field
    z = np.load(f)
    grid = PatchGrid(z["starts_y"], z["starts_x"], tuple(int(v) for v in z["patch_size"]),
                     tuple(int(v) for v in z["dims"]))
    out = np.empty((T, 2, ys.size))
    for a in range(0, T, 200):
        fy, fx = shift_field(z["shifts"][a:a + 200], grid)
        out[a:a + 200, 0], out[a:a + 200, 1] = fy[:, ys, xs], fx[:, ys, xs]
    return out


def footprint_offsets(A, dims, truth, motion_dir: Path) -> np.ndarray:
    """Per-component template offset (K, 2) px at each footprint's centroid (see module doc)."""
    from cellextract.simulate import field_at
    from cellextract.simulate.score import template_offset
    H, _ = dims
    A = A.tocsc()
    idx = np.arange(A.shape[0])
    w = np.maximum(np.asarray(A.sum(0)).ravel(), 1e-12)
    cy, cx = (A.T @ (idx % H)) / w, (A.T @ (idx // H)) / w
    T = truth.shifts.shape[0]
    est = estimated_shifts_at(motion_dir, cy, cx, T)
    true = field_at(truth.shift_field, dims, cy, cx)
    return template_offset(est, true).T


def _peak_rss_mb() -> float:
    """Peak resident set of this process since it started (MB).

    ``VmHWM`` of ``/proc/self/status``: unlike ``ru_maxrss`` it does not include the RSS the
    parent had when it forked this (spawned) child.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def tile_means(path, tile: int):
    """Tile index of every pixel (P,) and tile-mean traces (n_tiles, T) of a memmap."""
    from cellextract.io.memmap import open_memmap
    Yr, (H, W), T = open_memmap(path)
    P = H * W
    rr, cc = np.arange(P) % H, np.arange(P) // H
    tid = (rr // tile) * (-(-W // tile)) + cc // tile
    nt = int(tid.max()) + 1
    tm = np.zeros((nt, T), np.float64)
    for a in range(0, P, 4096):
        np.add.at(tm, tid[a:a + 4096], np.asarray(Yr[a:a + 4096], np.float64))
    return tid, tm / np.bincount(tid, minlength=nt)[:, None]


def patch_local_background(path, tile: int) -> None:
    """PROTOTYPE for the fit's owner (not a fit option): add one background component per
    ``tile x tile`` block to the global rank-``nb`` background of ``fit_core``.

    Monkeypatches ``cellextract.cnmf.fit.init_lowrank`` (appends the local columns: zero
    footprints, traces = the tile's mean fluctuation, shifted >= 0 and peak-normalised) and
    ``cellextract.cnmf.fit.hals_b`` (HALS of ``b`` with each local column kept inside its
    tile). Everything else (``hals_f``, the streamed statistics) works unchanged on the
    wider ``b, f``. Only meaningful with ``nb > 0``.
    """
    import cellextract.cnmf.fit as F
    tid, tm = tile_means(path, tile)
    nt, P = tm.shape[0], tid.size
    fl = tm - tm.mean(1, keepdims=True)
    fl = np.maximum(fl - np.percentile(fl, 5, axis=1, keepdims=True), 0)
    fl = (fl / np.maximum(fl.max(1, keepdims=True), 1e-9)).astype(np.float32)
    init0, state = F.init_lowrank, {}

    def init_lowrank(mean_R, T, nb, **kw):
        b, f = init0(mean_R, T, nb, **kw)
        mask = np.ones((P, nb + nt), bool)
        mask[:, nb:] = tid[:, None] == np.arange(nt)[None, :]
        state.update(n=nb + nt, mask=mask)
        return np.hstack([b, np.zeros((P, nt), np.float32)]), np.vstack([f, fl])

    def hals_b(b, RfT, ffT, *, n_iter=3):
        if b.shape[1] != state.get("n"):
            raise RuntimeError("local-background prototype: unexpected background shape")
        b, m = np.array(b, np.float32), state["mask"]
        for _ in range(n_iter):
            for j in range(b.shape[1]):
                d = max(float(ffT[j, j]), 1e-12)
                b[:, j] = np.maximum(b[:, j] + (RfT[:, j] - b @ ffT[:, j]) / d, 0) * m[:, j]
        return b

    F.init_lowrank, F.hals_b = init_lowrank, hals_b


def _child(path, table, n_processes, out, q, options, local_bg_tile=0):
    from cellextract.cnmf.fit import fit_cnmf
    from cellextract.evaluate import evaluate_with_params
    from cellextract.io.memmap import open_memmap
    from cellextract.log import setup_logging
    from cellextract.params import resolve_params
    setup_logging(None)
    params = resolve_params(preset="2p", table=table, n_cpus=n_processes)
    t0, c0 = time.perf_counter(), _cpu()
    if local_bg_tile:
        patch_local_background(path, local_bg_tile)
    est = fit_cnmf(path, params=params, n_processes=n_processes, options=options)
    fit_s, fit_cpu = time.perf_counter() - t0, _cpu() - c0
    fit_rss = _peak_rss_mb()
    fit_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    Yr, _, _ = open_memmap(path)
    t1, c1 = time.perf_counter(), _cpu()
    ev = evaluate_with_params(est, Yr, params, n_processes=n_processes)
    ev_s, ev_cpu = time.perf_counter() - t1, _cpu() - c1
    A = est.A.tocsc()
    np.savez(out, A_data=A.data, A_indices=A.indices, A_indptr=A.indptr, A_shape=A.shape,
             C=est.C, S=est.S, good=ev.idx_components, b_shape=np.shape(est.b),
             f_shape=np.shape(est.f), snr=ev.SNR_comp, rval=ev.r_values, cnn=ev.cnn_preds,
             event_pval=(ev.extra or {}).get("event_pval", np.zeros(0)))
    q.put(dict(fit_s=fit_s, fit_cpu=fit_cpu, fit_rss_mb=fit_rss, worker_rss_mb=fit_kids,
               eval_s=ev_s, eval_cpu=ev_cpu,
               total_rss_mb=_peak_rss_mb()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="simulator preset, e.g. bench_2p")
    ap.add_argument("--dims", type=int, nargs=2, default=(96, 96))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=20)
    ap.add_argument("--motion", default="none", choices=["none", "rigid", "pw_rigid"],
                    help="simulated motion (fit on the raw movie unless --correct)")
    ap.add_argument("--correct", action="store_true",
                    help="write a tif, motion-correct it (motion group of --motion-params), fit "
                         "the corrected memmap, score with the template offset")
    ap.add_argument("--motion-params", default=str(HERE.parent / "config" / "params" / "2p.json"),
                    help="parameter file whose motion group is used with --correct")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", default="greedy_roi", choices=["greedy_roi", "sparse_nmf"])
    ap.add_argument("--gsig", type=int, default=4)
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--rf", type=int, default=20)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--tsub", type=int, default=2)
    ap.add_argument("--nb", type=int, default=2)
    ap.add_argument("--refit", action="store_true")
    ap.add_argument("--param", action="append", default=[],
                    help="extra table entry NAME=VALUE for resolve_params (e.g. merge_thr=0.8)")
    ap.add_argument("--option", action="append", default=[],
                    help="fit option override NAME=VALUE (python literal)")
    ap.add_argument("--proto-local-bg", type=int, default=0, metavar="TILE",
                    help="PROTOTYPE (monkeypatches fit.py internals): add one local background "
                         "component per TILE x TILE block to the global rank-nb background")
    ap.add_argument("--n-processes", type=int, default=2)
    ap.add_argument("--workdir", default=None, help="keep the memmap here (reused if present)")
    ap.add_argument("--results", default=str(HERE / "RESULTS_cnmf2p.md"))
    ap.add_argument("--note", default="")
    a = ap.parse_args(argv)

    import scipy.sparse as sp

    from cellextract.io.memmap import memmap_name
    from cellextract.simulate import simulate
    from cellextract.simulate.score import score

    kw = dict(seed=a.seed) if a.preset else dict(kind="2p", dims=tuple(a.dims), frames=a.frames,
                                                 n_neurons=a.neurons, seed=a.seed)
    if a.motion != "none":
        kw["motion"] = a.motion
    if a.preset:
        kw["preset"] = a.preset
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_cnmf2p_"))
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{a.preset or 'sim'}_{a.motion}_s{a.seed}"
    mstats, motion_dir = None, None
    if a.correct:
        from cellextract.simulate import load_truth, write_simulation
        movie = work / f"{tag}.tif"
        truth_h5 = work / f"{tag}_truth.h5"
        if not truth_h5.exists():
            t0 = time.perf_counter()
            write_simulation(movie, truth_path=truth_h5, dtype=np.float32, **kw)
            print(f"movie written in {time.perf_counter() - t0:.1f} s: {movie}", flush=True)
        tr = load_truth(truth_h5)
        mkw = motion_kwargs(a.motion_params)
        motion_dir = work / f"mc_{tag}"
        mstats = correct_movie(movie, motion_dir, mkw, a.n_processes)
        path = Path(mstats["mmap"])
        dims, T = tuple(tr.dims), int(tr.C.shape[1])
        print(f"motion {mkw}: {mstats['motion_s']:.1f} s wall, {mstats['motion_cpu']:.1f} s CPU",
              flush=True)
    else:
        sim = simulate(**kw)
        tr = sim.truth
        dims, T = tuple(tr.dims), int(tr.C.shape[1])
        path = Path(memmap_name(work / tag, dims, T))
        if not path.exists():
            t0 = time.perf_counter()
            write_movie(sim, path, dims, T)
            print(f"movie {dims[0]}x{dims[1]}x{T}, {tr.A.shape[1]} neurons written in "
                  f"{time.perf_counter() - t0:.1f} s: {path}", flush=True)
    table = dict(method_init=a.method, K=a.K, gSig=[a.gsig, a.gsig],
                 gSiz=[2 * a.gsig + 1, 2 * a.gsig + 1], rf=a.rf, stride=a.stride, tsub=a.tsub,
                 nb=a.nb, refit=a.refit, fr=float(tr.fr), decay_time=float(tr.decay_time))
    table.update({k: ast.literal_eval(v) if v[:1] in "[(0123456789-.TFN" else v
                  for k, v in (x.split("=", 1) for x in a.param)})
    options = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in a.option)}
    ctx = mp.get_context("spawn")   # clean child: RSS counts only fit + evaluation
    q = ctx.Queue()
    out = str(work / "fit.npz")
    p = ctx.Process(target=_child, args=(str(path), table, a.n_processes, out, q, options,
                                         a.proto_local_bg))
    p.start()
    res = q.get()
    p.join()
    z = np.load(out)
    A = sp.csc_matrix((z["A_data"], z["A_indices"], z["A_indptr"]), shape=tuple(z["A_shape"]))
    good = z["good"]
    off = footprint_offsets(A, dims, tr, motion_dir) if motion_dir is not None else None
    s_all = score(A, dims, tr, C_found=z["C"], S_found=z["S"], offset=off)
    s_acc = score(sp.csc_matrix(A[:, good]), dims, tr, C_found=z["C"][good], S_found=z["S"][good],
                  offset=None if off is None else off[good])
    motion = {}
    if mstats is not None:
        from cellextract.simulate.score import template_offset
        est_rigid = np.loadtxt(motion_dir / "shifts.csv", delimiter=",", skiprows=1)[:, 1:3]
        d = template_offset(est_rigid, tr.shifts)
        s_glob = score(sp.csc_matrix(A[:, good]), dims, tr, offset=d)
        motion = dict(motion_s=mstats["motion_s"], motion_cpu=mstats["motion_cpu"],
                      motion_rss_mb=mstats["motion_rss_mb"],
                      motion_worker_rss_mb=mstats["motion_worker_rss_mb"],
                      rigid_offset=d.tolist(), offset_spread=float(np.std(off, 0).max()) if off.size else 0.0,
                      F1_global_offset=s_glob["F1"], F1_no_offset=score(
                          sp.csc_matrix(A[:, good]), dims, tr)["F1"])
    load = os.getloadavg()[0]
    row = dict(size=f"{dims[0]}x{dims[1]}x{T}", neurons=tr.A.shape[1], found=A.shape[1],
               accepted=int(good.size), F1_all=s_all["F1"], F1=s_acc["F1"],
               precision=s_acc["precision"], recall=s_acc["recall"],
               trace_corr=s_acc["median_trace_corr"], trace_corr_all=s_all["median_trace_corr"],
               spike_corr=s_acc.get("median_spike_corr"), b_shape=z["b_shape"].tolist(),
               f_shape=z["f_shape"].tolist(), load=load, missed=s_acc["missed"],
               **res, **motion)
    print(json.dumps(row, default=float, indent=1))
    cmd = " ".join(shlex.quote(x) for x in [".venv/bin/python", "bench/bench_cnmf2p.py"]
                   + list(argv if argv is not None else sys.argv[1:]))
    note = a.note
    if motion:
        note = (f"{note + '; ' if note else ''}motion {a.motion} corrected: {motion['motion_s']:.1f} s wall / "
                f"{motion['motion_cpu']:.1f} s CPU, peak RSS {motion['motion_rss_mb']:.0f} / "
                f"{motion['motion_worker_rss_mb']:.0f} MB; template offset rigid "
                f"({motion['rigid_offset'][0]:.2f}, {motion['rigid_offset'][1]:.2f}) px, "
                f"per-component spread {motion['offset_spread']:.2f} px; F1 with one rigid "
                f"offset {motion['F1_global_offset']:.3f}, without offset {motion['F1_no_offset']:.3f}")
    f = Path(a.results)
    new = not f.exists()
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    with open(f, "a") as fh:
        if new:
            fh.write("# 2P CNMF benchmark (bench/bench_cnmf2p.py)\n\n"
                     "| date (UTC) | command | size | neurons | found / accepted | F1 before eval | "
                     "F1 | prec | rec | trace corr | fit wall s | fit CPU s | eval wall s | "
                     "peak RSS MB fit (main / workers) | load | note |\n"
                     "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        fh.write(f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | `{cmd}` | {row['size']} | "
                 f"{row['neurons']} | {row['found']} / {row['accepted']} | {fmt(row['F1_all'])} | "
                 f"{fmt(row['F1'])} | {fmt(row['precision'])} | {fmt(row['recall'])} | "
                 f"{fmt(row['trace_corr'])} | {res['fit_s']:.1f} | {res['fit_cpu']:.1f} | "
                 f"{res['eval_s']:.1f} | {res['fit_rss_mb']:.0f} / {res['worker_rss_mb']:.0f} | "
                 f"{load:.1f} | {note} |\n")
    if not a.workdir:
        import shutil
        shutil.rmtree(work)
    return row


if __name__ == "__main__":
    main()
