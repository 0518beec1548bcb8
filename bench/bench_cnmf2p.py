"""Benchmark 2P CNMF: simulate a 2P movie, write a memmap, fit (greedy_roi / sparse_nmf,
low-rank background), evaluate (SNR, r-values, CNN), score against the truth.

Fit and evaluation run in a spawned child process so the simulation's memory does not
count; the child reports wall time, CPU time (self + patch workers) and peak RSS of the
fit and of the evaluation. A markdown row is appended to ``bench/RESULTS_cnmf2p.md``.

Parameters come from ``resolve_params(preset='2p', table=...)`` with the bench's choices
(gSig, K, rf, stride, ...) in the table.

Usage::

    .venv/bin/python bench/bench_cnmf2p.py --preset bench_2p            # full size
    .venv/bin/python bench/bench_cnmf2p.py --dims 96 96 --frames 1000 --neurons 20
    .venv/bin/python bench/bench_cnmf2p.py --preset bench_2p --workdir /tmp/b2p   # keep / reuse the memmap
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


def _cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _child(path, table, n_processes, out, q, options):
    from cellextract.cnmf.fit import fit_cnmf
    from cellextract.evaluate import evaluate_components
    from cellextract.io.memmap import open_memmap
    from cellextract.log import setup_logging
    from cellextract.params import resolve_params
    setup_logging(None)
    params = resolve_params(preset="2p", table=table, n_cpus=n_processes)
    t0, c0 = time.perf_counter(), _cpu()
    est = fit_cnmf(path, params=params, n_processes=n_processes, options=options)
    fit_s, fit_cpu = time.perf_counter() - t0, _cpu() - c0
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    Yr, _, _ = open_memmap(path)
    qa = params.quality
    t1, c1 = time.perf_counter(), _cpu()
    ev = evaluate_components(est, Yr, fr=params.data.fr, decay_time=params.data.decay_time,
                             min_SNR=qa.min_SNR, SNR_lowest=qa.SNR_lowest, rval_thr=qa.rval_thr,
                             rval_lowest=qa.rval_lowest, use_cnn=qa.use_cnn,
                             min_cnn_thr=qa.min_cnn_thr, cnn_lowest=qa.cnn_lowest,
                             gSig=params.init.gSig, gSig_range=qa.gSig_range,
                             n_processes=n_processes)
    ev_s, ev_cpu = time.perf_counter() - t1, _cpu() - c1
    A = est.A.tocsc()
    np.savez(out, A_data=A.data, A_indices=A.indices, A_indptr=A.indptr, A_shape=A.shape,
             C=est.C, S=est.S, good=ev.idx_components, b_shape=np.shape(est.b),
             f_shape=np.shape(est.f), snr=ev.SNR_comp, rval=ev.r_values, cnn=ev.cnn_preds)
    q.put(dict(fit_s=fit_s, fit_cpu=fit_cpu, fit_rss_mb=fit_rss, worker_rss_mb=fit_kids,
               eval_s=ev_s, eval_cpu=ev_cpu,
               total_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, help="simulator preset, e.g. bench_2p")
    ap.add_argument("--dims", type=int, nargs=2, default=(96, 96))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--neurons", type=int, default=20)
    ap.add_argument("--motion", default="none", help="simulated motion (fit on the raw movie)")
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
    sim = simulate(preset=a.preset, **kw) if a.preset else simulate(**kw)
    tr = sim.truth
    dims, T = tuple(tr.dims), int(tr.C.shape[1])
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_cnmf2p_"))
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{a.preset or 'sim'}_{a.motion}_s{a.seed}"
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
    p = ctx.Process(target=_child, args=(str(path), table, a.n_processes, out, q, options))
    p.start()
    res = q.get()
    p.join()
    z = np.load(out)
    A = sp.csc_matrix((z["A_data"], z["A_indices"], z["A_indptr"]), shape=tuple(z["A_shape"]))
    good = z["good"]
    s_all = score(A, dims, tr, C_found=z["C"], S_found=z["S"])
    s_acc = score(sp.csc_matrix(A[:, good]), dims, tr, C_found=z["C"][good], S_found=z["S"][good])
    load = os.getloadavg()[0]
    row = dict(size=f"{dims[0]}x{dims[1]}x{T}", neurons=tr.A.shape[1], found=A.shape[1],
               accepted=int(good.size), F1_all=s_all["F1"], F1=s_acc["F1"],
               precision=s_acc["precision"], recall=s_acc["recall"],
               trace_corr=s_acc["median_trace_corr"], trace_corr_all=s_all["median_trace_corr"],
               spike_corr=s_acc.get("median_spike_corr"), b_shape=z["b_shape"].tolist(),
               f_shape=z["f_shape"].tolist(), load=load, **res)
    print(json.dumps(row, default=float, indent=1))
    cmd = " ".join(shlex.quote(x) for x in [".venv/bin/python", "bench/bench_cnmf2p.py"]
                   + list(argv if argv is not None else sys.argv[1:]))
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
                 f"{load:.1f} | {a.note} |\n")
    if not a.workdir:
        for x in work.iterdir():
            x.unlink()
        work.rmdir()
    return row


if __name__ == "__main__":
    main()
