"""Train the footprint classifier of :mod:`cellextract.evaluate.cnn` (numpy only).

Usage (wired as ``cellextract train-classifier``)::

    nice -n 10 python -m cellextract.evaluate.train --epochs 8 --n-train 40000 \\
        --out src/cellextract/data/cnn_weights.npz

Data: synthetic labelled crops from :mod:`cellextract.evaluate.synth_crops` (training and
held-out sets from different seeds), optionally extended with crops of engine components
labelled against simulator ground truth (``--extra file.npz`` holding ``crops`` (n, 32, 32) and
``labels`` (n,)). Every epoch the crops are randomly rotated by multiples of 90 degrees and
flipped. Loss: binary cross-entropy on the logit; optimiser: Adam with cosine learning-rate
decay and a small L2 penalty. Gradients are written out by hand (:func:`backward`).

The held-out ROC AUC (Mann-Whitney) is printed, stored in the weights file (``meta_auc``, and
``meta_auc_engine`` for ``--extra-val`` crops) and returned by :func:`run`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cellextract.log import get_logger

from .cnn import CONV, LAYERS, forward, im2col, init_weights, predict, sigmoid

__all__ = ["backward", "loss_and_grads", "roc_auc", "train", "run", "main"]

log = get_logger(__name__)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count 1/2)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    ss = s[order]
    # average ranks of ties
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1
        i = j + 1
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _unpool(dp: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    da = np.zeros_like(a)
    for i in (0, 1):
        for j in (0, 1):
            da[:, i::2, j::2] = dp * (a[:, i::2, j::2] == p)
    return da


def _col2im(dcols: np.ndarray, shape, stride: int) -> np.ndarray:
    B, H, W, C = shape
    Ho, Wo = H // stride, W // stride
    dcols = dcols.reshape(B, Ho, Wo, 3, 3, C)
    dxp = np.zeros((B, H + 2, W + 2, C), dcols.dtype)
    for dy in range(3):
        for dx in range(3):
            dxp[:, dy:dy + H:stride, dx:dx + W:stride, :] += dcols[:, :, :, dy, dx, :]
    return dxp[:, 1:-1, 1:-1, :]


def backward(params: dict, cache: list, dlogits: np.ndarray) -> dict:
    """Gradients of a scalar loss w.r.t. all parameters, given ``dloss/dlogits`` (B,)."""
    g = {}
    flat, h = cache[-1]
    dl = dlogits.astype(np.float32)[:, None]
    g["d2_w"] = h.T @ dl
    g["d2_b"] = dl.sum(axis=0)
    dh = (dl @ params["d2_w"].T) * (h > 0)
    g["d1_w"] = flat.T @ dh
    g["d1_b"] = dh.sum(axis=0)
    dx = (dh @ params["d1_w"].T).reshape(cache[-2][2].shape)
    for li in range(len(CONV) - 1, -1, -1):
        name, stride, pool = CONV[li]
        x, a, p = cache[li]
        da = _unpool(dx, a, p) if pool else dx
        dz = (da * (a > 0)).reshape(-1, a.shape[-1])
        w = params[f"{name}_w"]
        g[f"{name}_w"] = (im2col(x, stride).T @ dz).reshape(w.shape)
        g[f"{name}_b"] = dz.sum(axis=0)
        if li > 0:
            dx = _col2im(dz @ w.reshape(-1, w.shape[-1]).T, x.shape, stride)
    return g


def loss_and_grads(params: dict, crops: np.ndarray, labels: np.ndarray, *, l2: float = 0.0):
    """Mean binary cross-entropy (+ ``l2`` * sum of squared weights) and its gradients."""
    logits, cache = forward(params, crops, return_cache=True)
    y = labels.astype(np.float64)
    z = logits.astype(np.float64)
    loss = float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))
    grads = backward(params, cache, (sigmoid(z) - y) / len(y))
    if l2:
        for name, _, _ in LAYERS:
            w = params[f"{name}_w"]
            loss += l2 * float((w.astype(np.float64) ** 2).sum())
            grads[f"{name}_w"] = grads[f"{name}_w"] + 2 * l2 * w
    return loss, grads


def _augment(rng: np.random.Generator, X: np.ndarray) -> np.ndarray:
    out = np.empty_like(X)
    k = rng.integers(0, 4, len(X))
    flip = rng.random(len(X)) < 0.5
    for r in range(4):
        for f in (False, True):
            m = (k == r) & (flip == f)
            v = np.rot90(X[m], r, axes=(1, 2))
            out[m] = v[:, :, ::-1] if f else v
    return out


def train(X: np.ndarray, y: np.ndarray, *, epochs: int = 8, batch: int = 64, lr: float = 3e-3,
          l2: float = 1e-5, seed: int = 0, X_val=None, y_val=None) -> dict:
    """Fit the network with Adam; returns the parameters (float32 dict)."""
    rng = np.random.default_rng(seed)
    params = init_weights(rng)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v2 = {k: np.zeros_like(v) for k, v in params.items()}
    b1, b2, eps = 0.9, 0.999, 1e-8
    steps = epochs * int(np.ceil(len(X) / batch))
    step = 0
    for ep in range(epochs):
        t0 = time.perf_counter()
        Xa = _augment(rng, X)
        perm = rng.permutation(len(X))
        tot = 0.0
        for i in range(0, len(X), batch):
            idx = perm[i:i + batch]
            loss, grads = loss_and_grads(params, Xa[idx], y[idx], l2=l2)
            tot += loss * len(idx)
            step += 1
            rate = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
            for k in params:
                gk = grads[k].astype(np.float32)
                m[k] = b1 * m[k] + (1 - b1) * gk
                v2[k] = b2 * v2[k] + (1 - b2) * gk * gk
                mh = m[k] / (1 - b1 ** step)
                vh = v2[k] / (1 - b2 ** step)
                params[k] = (params[k] - rate * mh / (np.sqrt(vh) + eps)).astype(np.float32)
        msg = f"epoch {ep + 1}/{epochs}: loss {tot / len(X):.4f} ({time.perf_counter() - t0:.0f} s)"
        if X_val is not None:
            msg += f", held-out AUC {roc_auc(predict(X_val, params=params), y_val):.4f}"
        log.info(msg)
        print(msg, flush=True)
    return params


def main(argv: list[str] | None = None) -> int:
    """Command line (``cellextract train-classifier``); returns the exit status 0."""
    run(argv)
    return 0


def run(argv: list[str] | None = None) -> float:
    """Train on synthetic (+ ``--extra``) crops, write the weights; returns the held-out AUC."""
    ap = argparse.ArgumentParser(prog="cellextract train-classifier", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "cnn_weights.npz"),
                    help="weights file to write (default: the package's cnn_weights.npz)")
    ap.add_argument("--n-train", type=int, default=40000)
    ap.add_argument("--n-val", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", action="append", default=[],
                    help="npz with extra labelled 'crops' (n, 32, 32) and 'labels' (n,), e.g. "
                         "from cellextract.evaluate.engine_crops")
    ap.add_argument("--extra-repeat", type=int, default=10,
                    help="how many times the --extra crops enter each epoch (randomly rotated)")
    ap.add_argument("--extra-val", action="append", default=[],
                    help="npz of held-out labelled crops (e.g. engine components on other seeds)")
    ap.add_argument("--fixture", default=None,
                    help="also write a few held-out crops and their predictions (test fixture)")
    a = ap.parse_args(argv)
    from .synth_crops import make_dataset

    t0 = time.perf_counter()
    X, y, _ = make_dataset(a.n_train, seed=1000 + a.seed)
    Xv, yv, kv = make_dataset(a.n_val, seed=9_000_000 + a.seed)
    for path in a.extra:
        with np.load(path) as z:
            X = np.concatenate([X] + [z["crops"].astype(np.float32)] * a.extra_repeat)
            y = np.concatenate([y] + [z["labels"].astype(np.int8)] * a.extra_repeat)
    print(f"data: {len(X)} training / {len(Xv)} held-out crops in "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    params = train(X, y, epochs=a.epochs, batch=a.batch, lr=a.lr, seed=a.seed, X_val=Xv, y_val=yv)
    pv = predict(Xv, params=params)
    auc = roc_auc(pv, yv)
    for kind in np.unique(kv):
        sel = kv == kind
        what = "accepted at 0.5" if kind == "cell" else "scored >= 0.5"
        print(f"  {kind:10s} n={sel.sum():5d} {what}: {np.mean(pv[sel] >= 0.5):.3f}")
    print(f"held-out ROC AUC {auc:.4f}", flush=True)
    meta = {}
    for path in a.extra_val:
        with np.load(path) as z:
            pe, ye = predict(z["crops"], params=params), z["labels"]
        meta["meta_auc_engine"] = np.float64(roc_auc(pe, ye))
        print(f"held-out engine crops {path}: n={len(ye)}, ROC AUC {meta['meta_auc_engine']:.4f}, "
              f"true scored <= 0.1: {np.mean(pe[ye == 1] <= 0.1):.3f}, "
              f"false scored >= 0.9: {np.mean(pe[ye == 0] >= 0.9):.3f}", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **params, meta_auc=np.float64(auc), meta_n_train=np.int64(len(X)),
                        meta_epochs=np.int64(a.epochs), meta_seed=np.int64(a.seed), **meta)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    if a.fixture:
        pick = np.concatenate([np.nonzero(yv == 1)[0][:4], np.nonzero(yv == 0)[0][:4]])
        np.savez_compressed(a.fixture, crops=Xv[pick], labels=yv[pick],
                            expected=predict(Xv[pick], params=params))
        print(f"wrote {a.fixture}")
    return auc


if __name__ == "__main__":
    raise SystemExit(main())
