"""Benchmark CNMF-E fitting: simulate a 1P movie, write a motion-free memmap, fit, score.

Measures wall time and peak RSS of the fit (in a child process, so the simulation's
memory does not count) and appends a markdown row to ``bench/RESULTS_cnmfe.md``.

Usage::

    .venv/bin/python bench/bench_cnmfe.py --dims 128 128 --frames 1000 --neurons 40
    .venv/bin/python bench/bench_cnmfe.py --preset bench_1p --n-processes 2   # full size
    .venv/bin/python bench/bench_cnmfe.py --real MOVIE.isxd --min-corr 0.5 --min-pnr 5 \
        --overlay bench/real_movie_part2_overlay.png      # real movie: count + overlay
"""

from __future__ import annotations

import argparse
import os
import json
import multiprocessing as mp
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent


def make_params(a, fr, decay_time):
    """1P parameters as in the spec's sample file (attributes only)."""
    return SimpleNamespace(
        init=SimpleNamespace(method_init="corr_pnr", K=None, gSig=(a.gsig, a.gsig),
                             gSiz=(a.gsiz, a.gsiz), min_corr=a.min_corr, min_pnr=a.min_pnr,
                             center_psf=True, tsub=a.tsub, ssub=1, ssub_B=a.ssub_b,
                             ring_size_factor=1.4, nb=0, rolling_sum=True,
                             normalize_init=False),
        patch=SimpleNamespace(rf=a.rf, stride=a.stride, only_init=True, del_duplicates=True,
                              border_pix=0, low_rank_background=None, nb_patch=0),
        temporal=SimpleNamespace(p=1, bas_nonneg=False, method_deconvolution="oasis"),
        preprocess=SimpleNamespace(p=1, noise_method="mean", noise_range=(0.25, 0.5)),
        data=SimpleNamespace(fr=fr, decay_time=decay_time),
        merging=SimpleNamespace(merge_thr=0.7),
        spatial=SimpleNamespace(update_background_components=True),
        workflow=SimpleNamespace(refit=a.refit))


def write_movie(sim, path, dims, T):
    from cellextract.io.memmap import MemmapWriter
    with MemmapWriter(path, dims, T) as w:
        for start, frames in sim.iter_chunks(500):
            w.write(start, frames)
    return path


class _AnonSampler:
    """Peak private (anonymous) RSS of this process and of its process tree, sampled every
    0.25 s from ``/proc/<pid>/status`` (``RssAnon``): memory-mapped input pages, which
    the kernel can drop, are not counted (``ru_maxrss`` counts them)."""

    def __init__(self):
        import threading
        self.main = self.tree = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def _anon(pid):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self):
        import psutil
        me = psutil.Process()
        while not self._stop.wait(0.25):
            a = self._anon(me.pid)
            kids = sum(self._anon(c.pid) for c in me.children(recursive=True))
            self.main, self.tree = max(self.main, a), max(self.tree, a + kids)

    def stop(self):
        self._stop.set()
        self._t.join()
        return self.main / 2 ** 20, self.tree / 2 ** 20


def _evaluate_1p(est, path, params, n_processes) -> np.ndarray:
    """Accepted components with the 1P preset's quality thresholds (SNR + r-values, no CNN)."""
    from cellextract.evaluate import evaluate_with_params
    from cellextract.io.memmap import open_memmap
    from cellextract.params import resolve_params
    p1 = resolve_params(preset="1p")
    p1 = SimpleNamespace(quality=p1.quality, data=params.data, init=params.init)
    Yr, _, _ = open_memmap(path)
    ev = evaluate_with_params(est, Yr, p1, n_processes=n_processes, use_cnn=False)
    return np.asarray(ev.idx_components, int)


def _fit_child(path, params, n_processes, out, q, options=None, evaluate=False):
    from cellextract.cnmf.fit import fit_cnmf
    from cellextract.log import setup_logging
    setup_logging(None)
    sampler = _AnonSampler()
    t0 = time.perf_counter()
    est = fit_cnmf(path, params=params, n_processes=n_processes, options=options)
    dt = time.perf_counter() - t0
    ru_s, ru_c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ru_s.ru_utime + ru_s.ru_stime + ru_c.ru_utime + ru_c.ru_stime
    np.savez(out, A_data=est.A.data, A_indices=est.A.indices, A_indptr=est.A.indptr,
             A_shape=est.A.shape, C=est.C, S=est.S)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    anon_main, anon_tree = sampler.stop()
    if evaluate:  # after the fit's measurements: time and memory above are the fit's only
        np.save(str(out) + ".good.npy", _evaluate_1p(est, path, params, n_processes))
    q.put(dict(seconds=dt, cpu_seconds=cpu, anon_main_mb=anon_main, anon_tree_mb=anon_tree, peak_rss_mb=self_rss, worker_peak_rss_mb=kids,
               n_found=int(est.A.shape[1])))


def run_real(a):
    """Fit a real movie (no truth): count components before / after evaluation, save an
    overlay of footprint contours on the correlation image."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellextract.cnmf.fit import fit_cnmf
    from cellextract.evaluate.core import evaluate_components
    from cellextract.io import open_movie
    from cellextract.io.memmap import memmap_name, open_memmap
    from cellextract.log import setup_logging
    setup_logging(None)
    with open_movie(a.real) as r:
        Y, fr = r.read(), float(r.fr or 10.0)
    T, H, W = Y.shape
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_cnmfe_real_"))
    work.mkdir(parents=True, exist_ok=True)
    from cellextract.io.memmap import MemmapWriter
    path = memmap_name(work / "real", (H, W), T)
    with MemmapWriter(path, (H, W), T) as w:
        w.write(0, Y)
    params = make_params(a, fr, 0.4)
    t0 = time.perf_counter()
    est = fit_cnmf(path, params=params, n_processes=1)
    dt = time.perf_counter() - t0
    Yr, _, _ = open_memmap(path)
    ev = evaluate_components(est, Yr, fr=fr, decay_time=0.4, min_SNR=2.5, SNR_lowest=0.5,
                             rval_thr=0.85, rval_lowest=-1.0, use_cnn=False, min_cnn_thr=0.99,
                             cnn_lowest=0.1, gSig=a.gsig, max_event_pval=0.01)
    good = np.asarray(getattr(ev, "idx_components", np.arange(est.A.shape[1])), int)
    cn = np.asarray(est.extra.get("cn"))
    fig, ax = plt.subplots(figsize=(6, 6 * H / W))
    ax.imshow(cn, cmap="gray", vmin=np.percentile(cn, 1), vmax=np.percentile(cn, 99.5))
    A = est.A.tocsc()
    for k in range(A.shape[1]):
        img = np.asarray(A[:, k].todense()).reshape(H, W, order="F")
        ax.contour(img, levels=[0.5 * img.max()], colors="lime" if k in set(good) else "red",
                   linewidths=0.8)
    ax.set_title(f"{Path(a.real).name}: {A.shape[1]} components, {len(good)} accepted "
                 f"(green; red rejected)\nmin_corr {a.min_corr}, min_pnr {a.min_pnr}, "
                 f"gSig {a.gsig}, gSiz {a.gsiz}", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(a.overlay, dpi=120)
    row = dict(movie=Path(a.real).name, size=f"{H}x{W}x{T}", found=int(A.shape[1]),
               accepted=int(len(good)), seconds=dt, overlay=a.overlay)
    print(json.dumps(row, indent=1))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None)
    ap.add_argument("--dims", type=int, nargs=2, default=(128, 128))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gsig", type=int, default=3)
    ap.add_argument("--sim-gsig", type=float, default=None, help="simulated neuron size, px")
    ap.add_argument("--sim-fr", type=float, default=None, help="simulated frame rate, Hz")
    ap.add_argument("--noise-scale", type=float, default=1.0, help="simulator noise multiplier")
    ap.add_argument("--background-scale", type=float, default=1.0,
                    help="simulator background multiplier")
    ap.add_argument("--gsiz", type=int, default=7)
    ap.add_argument("--min-corr", type=float, default=0.8)
    ap.add_argument("--min-pnr", type=float, default=10)
    ap.add_argument("--tsub", type=int, default=2)
    ap.add_argument("--ssub-b", type=int, default=2)
    ap.add_argument("--rf", type=int, default=40)
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--refit", action="store_true")
    ap.add_argument("--option", action="append", default=[],
                    help="fit option override NAME=VALUE (python literal), e.g. residual_search=False")
    ap.add_argument("--n-processes", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--results", default=str(HERE / "RESULTS_cnmfe.md"))
    ap.add_argument("--real", default=None, help="fit this real movie instead (no truth)")
    ap.add_argument("--evaluate", action="store_true",
                    help="also score the components accepted by the evaluation (1P preset thresholds)")
    ap.add_argument("--overlay", default=str(HERE / "real_movie_part2_overlay.png"))
    a = ap.parse_args(argv)
    if a.real:
        return run_real(a)

    import scipy.sparse as sp
    from cellextract.io.memmap import memmap_name
    from cellextract.simulate import simulate
    from cellextract.simulate.score import score

    kw = dict(kind="1p", dims=tuple(a.dims), frames=a.frames, n_neurons=a.neurons, seed=a.seed,
              gsig=a.sim_gsig, fr=a.sim_fr, noise_scale=a.noise_scale,
              background_scale=a.background_scale)
    sim = simulate(preset=a.preset, **kw) if a.preset else simulate(**kw)
    tr = sim.truth
    dims, T = tuple(tr.dims), int(tr.C.shape[1])
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_cnmfe_"))
    work.mkdir(parents=True, exist_ok=True)
    path = memmap_name(work / "movie", dims, T)
    t0 = time.perf_counter()
    if not (a.workdir and Path(path).exists()):      # a kept workdir reuses its movie
        write_movie(sim, path, dims, T)
    print(f"movie {dims[0]}x{dims[1]}x{T}, {tr.A.shape[1]} neurons written in "
          f"{time.perf_counter() - t0:.1f} s: {path}", flush=True)
    params = make_params(a, tr.fr, tr.decay_time)
    ctx = mp.get_context("spawn")   # clean child: RSS counts only the fit
    q = ctx.Queue()
    out = str(work / "fit.npz")
    import ast
    options = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in a.option)}
    p = ctx.Process(target=_fit_child, args=(path, params, a.n_processes, out, q, options, a.evaluate))
    load0 = os.getloadavg()[0]
    p.start()
    res = q.get()
    p.join()
    load1 = os.getloadavg()[0]
    z = np.load(out)
    A = sp.csc_matrix((z["A_data"], z["A_indices"], z["A_indptr"]), shape=tuple(z["A_shape"]))
    s = score(A, dims, tr, C_found=z["C"], S_found=z["S"])
    ev_note = ""
    if a.evaluate:  # detection after the automated accept/reject (what the pipeline outputs)
        good = np.load(out + ".good.npy")
        se = score(A[:, good], dims, tr, C_found=z["C"][good], S_found=z["S"][good])
        ev_note = (f"after evaluation (1P preset, SNR + r-value): {len(good)}/{A.shape[1]} accepted, "
                   f"F1 {se['F1']:.3f} (P {se['precision']:.3f}, R {se['recall']:.3f}), "
                   f"trace corr {se['median_trace_corr']:.3f}")
        print(ev_note)
    row = dict(size=f"{dims[0]}x{dims[1]}x{T}", neurons=tr.A.shape[1], found=A.shape[1],
               F1=s["F1"], precision=s["precision"], recall=s["recall"],
               trace_corr=s["median_trace_corr"], spike_corr=s.get("median_spike_corr"),
               seconds=res["seconds"], peak_rss_mb=res["peak_rss_mb"],
               worker_rss_mb=res["worker_peak_rss_mb"], cpu_seconds=res["cpu_seconds"],
               load=f"{load0:.1f}-{load1:.1f}", anon_main_mb=res["anon_main_mb"],
               anon_tree_mb=res["anon_tree_mb"])
    print(json.dumps(row, default=float, indent=1))
    cmd = " ".join(shlex.quote(x) for x in [".venv/bin/python", "bench/bench_cnmfe.py"]
                   + list(argv if argv is not None else sys.argv[1:]))
    f = Path(a.results)
    new = not f.exists()
    with open(f, "a") as fh:
        if new:
            fh.write("# CNMF-E benchmark (bench/bench_cnmfe.py)\n\n"
                     "| date | command | size | neurons | found | F1 | prec | rec | "
                     "trace corr | spike corr | fit wall s | fit CPU s | load | "
                     "peak RSS MB (main / patch workers) (private anon peak: main, process tree) |\n"
                     "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
        fh.write(f"| {time.strftime('%Y-%m-%d %H:%M')} | `{cmd}` | {row['size']} | "
                 f"{row['neurons']} | {row['found']} | {fmt(row['F1'])} | "
                 f"{fmt(row['precision'])} | {fmt(row['recall'])} | {fmt(row['trace_corr'])} | "
                 f"{fmt(row['spike_corr'])} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | "
                 f"{row['load']} | "
                 f"{row['peak_rss_mb']:.0f} / {row['worker_rss_mb']:.0f} "
                 f"(private: main {row['anon_main_mb']:.0f}, tree {row['anon_tree_mb']:.0f})"
                 f"{'; ' + ev_note if ev_note else ''} |\n")
    if not a.workdir:
        for x in work.iterdir():
            x.unlink()
        work.rmdir()
    return row


if __name__ == "__main__":
    main()
