"""Labelled crops of the engine's own components on simulated movies (CNN training data).

For each seed a movie is simulated (:func:`cellextract.simulate.simulate`), the project's CNMF
(:func:`cellextract.cnmf.fit.fit_cnmf_array`) is run on it, and every found component is labelled
by matching to ground truth (:func:`cellextract.simulate.score`): matched = 1, unmatched = 0.
Crops are cut at the fit's ``gSig`` exactly as at inference.

Usage::

    nice -n 10 python -m cellextract.evaluate.engine_crops --out engine_crops.npz \\
        --kinds 1p 2p --seeds 1 2 3 4 5 6

The file holds ``crops`` (n, 32, 32) float32, ``labels`` (n,) int8, ``kind`` (n,) str and
``seed`` (n,) int, and can be passed to ``train.py --extra``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .cnn import crops_from_A

__all__ = ["engine_options", "harvest", "main"]


def engine_options(kind: str, gsig: int, fr: float, decay_time: float) -> dict:
    """CNMF options used for harvesting (CaImAn-like 1P / 2P settings)."""
    o = dict(fr=fr, decay_time=decay_time, gSig=(gsig, gsig))
    if kind == "1p":
        o.update(gSiz=(4 * gsig + 1,) * 2, method_init="corr_pnr", min_corr=0.8, min_pnr=10,
                 nb=0, rf=None)
    else:
        o.update(gSiz=(2 * gsig + 1,) * 2, method_init="greedy_roi", nb=2, K=8, rf=20,
                 stride=10, center_psf=False, low_rank_background=True)
    return o


def _movie(sim) -> np.ndarray:
    fr = sim.frames()
    T, H, W = fr.shape
    return np.ascontiguousarray(fr.transpose(2, 1, 0).reshape(H * W, T), dtype=np.float32)


def harvest(kind: str, seed: int, *, dims=(96, 96), frames: int = 1000, n_neurons: int = 40,
            gsig: int | None = None):
    """Engine components of one simulated movie with their labels.

    Returns
    -------
    crops : ndarray, shape (K, 32, 32), float32
    labels : ndarray, shape (K,), int8
    est : Estimates
        The engine's fit (for inspection).
    """
    from cellextract.cnmf.fit import fit_cnmf_array
    from cellextract.simulate import score, simulate

    sim = simulate(kind=kind, dims=tuple(dims), frames=frames, n_neurons=n_neurons, seed=seed)
    tr = sim.truth
    g = int(gsig or (3 if kind == "1p" else 4))
    est = fit_cnmf_array(_movie(sim), tr.dims, **engine_options(kind, g, tr.fr, tr.decay_time))
    s = score(est.A, tr.dims, tr)
    labels = np.zeros(est.n_components, np.int8)
    for _, f in s["matches"]:
        labels[int(f)] = 1
    return crops_from_A(est.A, est.dims, gSig=g), labels, est


def main(argv: list[str] | None = None) -> None:
    """Command line: harvest labelled engine crops into an npz file."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", nargs="+", default=["1p", "2p"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--dims", type=int, nargs=2, default=(96, 96))
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--n-neurons", type=int, default=40)
    a = ap.parse_args(argv)
    X, y, kinds, seeds = [], [], [], []
    for kind in a.kinds:
        for seed in a.seeds:
            t0 = time.perf_counter()
            c, lab, _ = harvest(kind, seed, dims=a.dims, frames=a.frames, n_neurons=a.n_neurons)
            X.append(c)
            y.append(lab)
            kinds += [kind] * len(lab)
            seeds += [seed] * len(lab)
            print(f"{kind} seed {seed}: {len(lab)} components, {int(lab.sum())} true "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    np.savez_compressed(a.out, crops=np.concatenate(X), labels=np.concatenate(y),
                        kind=np.array(kinds), seed=np.array(seeds))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
