"""Benchmark of ``cellextract.evaluate`` (a script, not a test).

Measures, and appends to ``bench/RESULTS_evaluate.md`` with the command used:

* ``quality``: precision / recall of the components before and after evaluation on a simulated
  movie (``cellextract.simulate``), scored against ground truth with ``simulate.score``.
  ``--source engine`` runs the project's CNMF (``cnmf.fit.fit_cnmf_array``) on the movie;
  ``--source candidates`` uses the true footprints (traces by least squares on the movie) plus
  junk candidates (noise speckle, broad background blobs, specks) - a proxy when the engine is
  not available or too slow.
* ``cnn``: ROC AUC of the committed classifier on held-out synthetic crops (a seed never used in
  training) and, with ``--source engine``, on engine components labelled by matching.
* ``speed``: wall time of ``evaluate_components`` for K components on an H x W x T memmap written
  to ``--tmp`` (default size small; ``--dims 512 512 --frames 6000 --K 500`` is the target size,
  about 6.3 GB of disk; do not run it while others use the machine).

Examples::

    nice -n 10 python bench/bench_evaluate.py quality --kind 1p --source candidates
    nice -n 10 python bench/bench_evaluate.py cnn
    nice -n 10 python bench/bench_evaluate.py speed --dims 512 512 --frames 1000 --K 500
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cellextract.cnmf.estimates import Estimates
from cellextract.evaluate import evaluate_components

RESULTS = Path(__file__).resolve().parent / "RESULTS_evaluate.md"

QUALITY = {
    "1p": dict(min_SNR=3.0, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1.0, use_cnn=False,
               min_cnn_thr=0.9, cnn_lowest=0.1),
    "2p": dict(min_SNR=2.0, SNR_lowest=0.5, rval_thr=0.85, rval_lowest=-1.0, use_cnn=True,
               min_cnn_thr=0.9, cnn_lowest=0.1),
}


def _append(title: str, lines: list[str]) -> None:
    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    txt = [f"\n## {title} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
           f"`{cmd}`", ""] + [f"- {x}" for x in lines]
    with open(RESULTS, "a") as fh:
        if fh.tell() == 0:
            fh.write("# cellextract.evaluate benchmarks\n")
        fh.write("\n".join(txt) + "\n")
    print("\n".join(txt))


def _movie(sim) -> np.ndarray:
    return _movie_frames(sim.frames())


def _movie_frames(fr) -> np.ndarray:
    T, H, W = fr.shape
    return np.ascontiguousarray(fr.transpose(2, 1, 0).reshape(H * W, T), dtype=np.float32)


def _junk(rng, dims, n, gsig):
    H, W = dims
    yy, xx = np.mgrid[:H, :W]
    cols = []
    for i in range(n):
        cy, cx = rng.uniform(3 * gsig, H - 3 * gsig), rng.uniform(3 * gsig, W - 3 * gsig)
        kind = i % 3
        if kind == 0:        # speckle in a disc
            img = rng.random((H, W)) * (np.hypot(yy - cy, xx - cx) < 2.5 * gsig)
            img *= rng.random((H, W)) < 0.5
        elif kind == 1:      # broad smooth blob
            s = gsig * rng.uniform(4, 7)
            img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            img[img < 0.2] = 0
        else:                # speck
            img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.4 ** 2))
            img[img < 0.05] = 0
        cols.append(img.ravel(order="F"))
    return np.stack(cols, axis=1)


def _candidates(sim, Yr, rng, junk_frac, nb=3):
    """True footprints + junk, with a rank-``nb`` background fitted to the true background."""
    tr = sim.truth
    A = tr.A.toarray().astype(np.float64)
    A[A < 0.05 * A.max(axis=0, keepdims=True)] = 0
    J = _junk(rng, tr.dims, int(round(junk_frac * A.shape[1])), float(np.sqrt(
        (A > 0).sum(axis=0).mean() / np.pi) / 2))
    Aall = np.concatenate([A, J], axis=1)
    Aall /= np.linalg.norm(Aall, axis=0, keepdims=True)
    bg = _movie_frames(sim.frames(noise=False, motion=False, neurons=False)).astype(np.float64)
    u, sv, vt = np.linalg.svd(bg, full_matrices=False)
    b, f = u[:, :nb] * sv[:nb], vt[:nb]
    AtA = Aall.T @ Aall
    raw = np.linalg.solve(AtA + 1e-6 * np.eye(len(AtA)), Aall.T @ (Yr - b @ f))
    C = np.clip(raw, 0, None).astype(np.float32)
    K = A.shape[1]
    C[:K] = tr.C / np.maximum(tr.C.max(axis=1, keepdims=True), 1e-9) * raw[:K].max(axis=1, keepdims=True)
    return Estimates(A=sp.csc_matrix(Aall), C=C, YrA=(raw - C).astype(np.float32), dims=tr.dims,
                     b=b.astype(np.float32), f=f.astype(np.float32))


def cmd_quality(a) -> None:
    from cellextract.simulate import score, simulate

    q = dict(QUALITY[a.kind])
    if a.use_cnn is not None:
        q["use_cnn"] = a.use_cnn == "yes"
    tot = {"before": np.zeros(3, int), "after": np.zeros(3, int)}     # TP, FP, FN
    per_seed, n_comp, t_fit, t_eval = [], 0, 0.0, 0.0
    for seed in a.seeds:
        sim = simulate(kind=a.kind, dims=tuple(a.dims), frames=a.frames,
                       n_neurons=a.n_neurons, seed=seed)
        tr = sim.truth
        Yr = _movie(sim)
        t0 = time.perf_counter()
        if a.source == "engine":
            from cellextract.cnmf.fit import fit_cnmf_array
            from cellextract.evaluate.engine_crops import engine_options
            opts = engine_options(a.kind, int(a.gSig), tr.fr, tr.decay_time)
            est = fit_cnmf_array(Yr, tr.dims, **opts)
        else:
            est = _candidates(sim, Yr, np.random.default_rng(seed), a.junk_frac)
        t_fit += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = evaluate_components(est, Yr, fr=tr.fr, decay_time=tr.decay_time, gSig=a.gSig, **q)
        t_eval += time.perf_counter() - t0
        n_comp += est.n_components
        sc = {"before": score(est.A, tr.dims, tr),
              "after": score(est.A[:, out.idx_components], tr.dims, tr)}
        for key in tot:
            tot[key] += [sc[key]["TP"], sc[key]["FP"], sc[key]["FN"]]
        per_seed.append(f"seed {seed}: P {sc['before']['precision']:.3f}->{sc['after']['precision']:.3f}"
                        f", R {sc['before']['recall']:.3f}->{sc['after']['recall']:.3f}")

    def pr(c):
        return c[0] / max(c[0] + c[1], 1), c[0] / max(c[0] + c[2], 1)

    (p0, r0), (p1, r1) = pr(tot["before"]), pr(tot["after"])
    lines = [f"{a.kind} {tuple(a.dims)} x {a.frames} frames, {a.n_neurons} neurons, seeds "
             f"{list(a.seeds)}, source {a.source} ({n_comp} components, built in {t_fit:.0f} s)",
             f"quality params: {q}",
             f"before evaluation (pooled): precision {p0:.3f}, recall {r0:.3f} "
             f"(TP {tot['before'][0]}, FP {tot['before'][1]})",
             f"after evaluation (pooled): precision {p1:.3f}, recall {r1:.3f} "
             f"(TP {tot['after'][0]}, FP {tot['after'][1]})",
             f"recall loss {r0 - r1:.3f}; evaluation time {t_eval:.1f} s in total",
             "per seed: " + "; ".join(per_seed)]
    _append(f"quality {a.kind} / {a.source}", lines)


def cmd_cnn(a) -> None:
    from cellextract.evaluate.cnn import load_weights, predict
    from cellextract.evaluate.synth_crops import make_dataset
    from cellextract.evaluate.train import roc_auc

    X, y, kinds = make_dataset(a.n, seed=a.seed)
    t0 = time.perf_counter()
    p = predict(X, params=load_weights())
    dt = time.perf_counter() - t0
    lines = [f"held-out synthetic crops (seed {a.seed}, never used in training): n={a.n}, "
             f"ROC AUC {roc_auc(p, y):.4f}; inference {1e3 * dt / a.n:.2f} ms/crop"]
    for kd in np.unique(kinds):
        s = kinds == kd
        lines.append(f"{kd}: n={s.sum()}, fraction scored >= 0.5: {np.mean(p[s] >= 0.5):.3f}")
    if a.engine_val:
        # made with: python -m cellextract.evaluate.engine_crops --out FILE --seeds 101 102 103 104
        with np.load(a.engine_val) as z:
            pe, ye, ke = predict(z["crops"]), z["labels"], z["kind"]
        for kd in ["all"] + sorted(set(ke.tolist())):
            s = np.ones(len(ye), bool) if kd == "all" else ke == kd
            lines.append(f"engine components on held-out seeds ({kd}): n={s.sum()} "
                         f"({int(ye[s].sum())} true), ROC AUC {roc_auc(pe[s], ye[s]):.4f}, "
                         f"true scored <= 0.1: {np.mean(pe[s][ye[s] == 1] <= 0.1):.3f}, "
                         f"false scored <= 0.1: {np.mean(pe[s][ye[s] == 0] <= 0.1):.3f}")
    _append("CNN held-out AUC", lines)


def _gauss_A(rng, dims, K, gsig):
    H, W = dims
    h = int(np.ceil(3 * gsig))
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1]
    rows, cols, vals = [], [], []
    cent = np.stack([rng.uniform(h, H - h - 1, K), rng.uniform(h, W - h - 1, K)], axis=1)
    for k, (cy, cx) in enumerate(cent):
        iy, ix = int(cy), int(cx)
        img = np.exp(-((yy + iy - cy) ** 2 + (xx + ix - cx) ** 2) / (2 * gsig ** 2))
        r, c = (yy + iy).ravel(), (xx + ix).ravel()
        v = img.ravel()
        rows.append(r + c * H)
        cols.append(np.full(v.size, k))
        vals.append(v / np.linalg.norm(v))
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(H * W, K))


def cmd_speed(a) -> None:
    from cellextract.io.memmap import MemmapWriter, memmap_name, open_memmap

    H, W = a.dims
    T, K = a.frames, a.K
    rng = np.random.default_rng(0)
    A = _gauss_A(rng, (H, W), K, a.gSig)
    C = np.zeros((K, T), np.float32)
    spikes = rng.random((K, T)) < 0.01
    g = np.exp(-1 / 12)
    for t in range(T):
        C[:, t] = (C[:, t - 1] * g if t else 0) + spikes[:, t] * 50
    tmp = Path(tempfile.mkdtemp(dir=a.tmp))
    path = memmap_name(tmp / "bench", (H, W), T)
    t0 = time.perf_counter()
    with MemmapWriter(path, (H, W), T) as wr:
        for s in range(0, T, 200):
            e = min(T, s + 200)
            blk = (A @ C[:, s:e]) + 10 + rng.standard_normal((H * W, e - s)).astype(np.float32)
            wr.write(s, np.asarray(blk, np.float32).reshape(W, H, e - s).transpose(2, 1, 0))
    t_write = time.perf_counter() - t0
    Yr, dims, _ = open_memmap(path)
    YrA = rng.standard_normal((K, T)).astype(np.float32)
    est = Estimates(A=A, C=C, YrA=YrA, dims=(H, W))
    if a.ring:
        # a CNMF-E-like ring model on the ssub_B=2 grid (uniform weights on each ring)
        from cellextract.cnmf.background import ds_dims, ring_indices
        dd = ds_dims((H, W), 2)
        idx = ring_indices(dd, int(round(1.4 * (4 * a.gSig + 1) / 2)))
        rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
        ok = idx.ravel() >= 0
        n = np.maximum((idx >= 0).sum(axis=1), 1)
        est.W = sp.csr_matrix(((1.0 / n)[rows[ok]], (rows[ok], idx.ravel()[ok])),
                              shape=(idx.shape[0],) * 2)
        est.b0 = np.full(H * W, 10.0, np.float32)
        est.extra["ssub_B"] = 2
    q = dict(QUALITY["1p"])
    lines = [f"{H}x{W}x{T} memmap ({Yr.nbytes / 2**30:.2f} GiB, written in {t_write:.0f} s, "
             f"likely still in page cache), K={K}, gSig={a.gSig}, n_processes={a.n_processes}, "
             f"background {'ring model (ssub_B=2)' if a.ring else 'none (local mean)'}"]
    for use_cnn in (False, True):
        q["use_cnn"] = use_cnn
        t0 = time.perf_counter()
        out = evaluate_components(est, Yr, fr=30.0, decay_time=0.4, gSig=a.gSig,
                                  n_processes=a.n_processes, **q)
        lines.append(f"use_cnn={use_cnn}: {time.perf_counter() - t0:.1f} s "
                     f"(accepted {out.idx_components.size}/{K})")
    del Yr
    Path(path).unlink()
    tmp.rmdir()
    _append("speed", lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--kind", choices=("1p", "2p"), default="1p")
    q.add_argument("--source", choices=("engine", "candidates"), default="candidates")
    q.add_argument("--dims", type=int, nargs=2, default=(128, 128))
    q.add_argument("--frames", type=int, default=1000)
    q.add_argument("--n-neurons", type=int, default=40)
    q.add_argument("--junk-frac", type=float, default=0.3)
    q.add_argument("--gSig", type=int, default=4)
    q.add_argument("--seeds", type=int, nargs="+", default=[0])
    q.add_argument("--use-cnn", choices=("yes", "no"), default=None,
                   help="override the kind's default use_cnn")
    c = sub.add_parser("cnn")
    c.add_argument("--n", type=int, default=6000)
    c.add_argument("--seed", type=int, default=123456)
    c.add_argument("--engine-val", default=None,
                   help="npz of labelled engine crops on held-out seeds (engine_crops.py)")
    s = sub.add_parser("speed")
    s.add_argument("--dims", type=int, nargs=2, default=(256, 256))
    s.add_argument("--frames", type=int, default=1000)
    s.add_argument("--K", type=int, default=200)
    s.add_argument("--gSig", type=float, default=4.0)
    s.add_argument("--n-processes", type=int, default=2)
    s.add_argument("--tmp", default=None)
    s.add_argument("--ring", action="store_true", help="give the Estimates a ring background model")
    a = ap.parse_args(argv)
    {"quality": cmd_quality, "cnn": cmd_cnn, "speed": cmd_speed}[a.cmd](a)


if __name__ == "__main__":
    main()
